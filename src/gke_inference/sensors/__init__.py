"""Deferrable sensors: each checks once, then hands the wait to a trigger with its own timeout."""
