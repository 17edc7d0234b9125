"""Errors the command line shows as one clear line (exit code 2) instead of a traceback."""


class UserError(Exception):
    """An error the user can fix: printed as one clear line, exit code 2."""
