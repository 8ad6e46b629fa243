"""Errors the user can fix: the CLI prints them as one line and exits with code 2."""


class UserError(Exception):
    """Bad command line, config, environment id or rank count."""


class CheckpointError(UserError):
    """A checkpoint file that is missing, corrupt, incomplete or does not match."""
