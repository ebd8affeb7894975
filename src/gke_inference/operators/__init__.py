"""Idempotent operators: each looks first, creates only what is missing, and waits for it."""
