"""Async triggers behind the deferrable sensors; they run in the triggerer, so no worker waits."""
