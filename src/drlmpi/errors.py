"""Errors the user can fix (the CLI prints them as one line and exits with code 2), and broken protocol
invariants (a bug: the rank fails with its traceback and the job ends)."""


class UserError(Exception):
    """Bad command line, config, environment id or rank count."""


class CheckpointError(UserError):
    """A checkpoint file that is missing, corrupt, incomplete or does not match."""


class ProtocolError(RuntimeError):
    """A message, buffer or call that breaks a protocol's invariant."""


def invariant(ok, message: str) -> None:
    """Raise ProtocolError(message) unless ok: a protocol's invariant, checked also under `python -O` (which strips
    `assert`). Shape contracts of pure math stay `assert`s."""
    if not ok:
        raise ProtocolError(message)
