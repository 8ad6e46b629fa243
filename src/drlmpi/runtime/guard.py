"""Abort-on-exception: one failing rank ends the whole job, loudly, within seconds.

MPI has no fault tolerance here (ULFM is not in MPICH), so an uncaught exception on
any rank prints `rank R (role) failed:` with the traceback and calls
`MPI.COMM_WORLD.Abort(1)`; mpiexec or srun then kills every other rank.
"""

import os
import sys
import threading
import traceback

_role = "?"


def set_role(role: str) -> None:
    global _role
    _role = role


def report_and_abort(exc: BaseException, code: int = 1) -> None:
    """Print this rank's traceback with its rank and role, then abort every rank."""
    from mpi4py import MPI

    rank = MPI.COMM_WORLD.rank
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(f"rank {rank} ({_role}) failed:\n{text}")
    sys.stderr.flush()
    if MPI.COMM_WORLD.size > 1:
        MPI.COMM_WORLD.Abort(code)
    os._exit(code)


def install_thread_hook() -> None:
    """Helper threads that raise end the job too."""

    def hook(args):
        if args.exc_type is not SystemExit:
            report_and_abort(args.exc_value)

    threading.excepthook = hook
