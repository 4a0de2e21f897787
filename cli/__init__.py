"""Helpers behind `starter.py` verbs."""


class CliError(Exception):
    """An operational failure with a one-line message (exit 1)."""
