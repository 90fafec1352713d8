"""Errors serbench raises for bad input: the CLI prints them without a traceback."""


class SerbenchError(Exception):
    """Bad input from the user (a wrong folder, an unknown entry, a malformed file)."""
