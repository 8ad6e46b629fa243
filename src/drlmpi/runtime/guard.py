"""Abort-on-exception: one failing rank ends the whole job, loudly, within seconds.

MPI has no fault tolerance here (ULFM is not in MPICH), so an uncaught exception on
any rank prints `rank R (role) failed:` with the traceback (a UserError: its one line) and calls
`MPI.COMM_WORLD.Abort(1)` (2 for a UserError); mpiexec or srun then kills every other rank. The abort
waits `FORWARD_S` after the traceback is written: Hydra kills its proxies on an abort
without draining their stdio, and a traceback still in the pipe is lost with them.
"""

import os
import sys
import threading
import time
import traceback

_role = "?"
FORWARD_S = 0.5  # time given to the launcher to forward the traceback before the abort


def set_role(role: str) -> None:
    global _role
    _role = role


def report_and_abort(exc: BaseException, code: int = 1) -> None:
    """Print this rank's traceback with its rank and role, then abort every rank. A UserError (bad input found
    only once the job runs, e.g. a replay too large for the host) is one line, and the job's exit code is 2."""
    from mpi4py import MPI

    from drlmpi.errors import UserError

    rank = MPI.COMM_WORLD.rank
    if isinstance(exc, UserError):
        text, code = f"drlmpi: error: {exc} (rank {rank}, {_role})\n", 2
    else:
        text = f"rank {rank} ({_role}) failed:\n" + "".join(
            traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(text)
    sys.stderr.flush()
    sys.stdout.flush()
    unlink_mpi_segments()  # this node's ranks are killed next: nothing of theirs may stay in /dev/shm
    if MPI.COMM_WORLD.size > 1:
        time.sleep(FORWARD_S)
        MPI.COMM_WORLD.Abort(code)
    os._exit(code)


SHM_PREFIX = "/dev/shm/mpich_shm_"  # MPICH's node shared-memory files


def unlink_mpi_segments() -> None:
    """Unlink every MPICH shared-memory file this process has mapped. The mappings stay valid (the memory is freed
    when the last process unmaps it), so once every rank of the node has attached (after a node barrier), nothing
    is left in RAM-backed /dev/shm however the job ends, SIGKILL included; MPI_Finalize does not mind."""
    try:
        with open("/proc/self/maps") as f:
            paths = {p.strip() for line in f if len(x := line.split(maxsplit=5)) == 6 and
                     (p := x[5]).startswith(SHM_PREFIX) and not p.rstrip().endswith("(deleted)")}
    except OSError:
        return
    for path in paths:
        try:
            os.unlink(path)
        except OSError:
            pass


def install_thread_hook() -> None:
    """Helper threads that raise end the job too."""

    def hook(args):
        if args.exc_type is not SystemExit:
            report_and_abort(args.exc_value)

    threading.excepthook = hook
