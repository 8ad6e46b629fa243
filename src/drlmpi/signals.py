"""Pre-emption signals: SIGTERM, SIGUSR1 and SIGINT ask the job to checkpoint and stop.

A module of its own, outside runtime/ (whose package imports mpi4py.MPI, which starts MPI): the CLI installs these
handlers before MPI starts.

A handler only records the signal; roles look at `asked()` at their safe points. A rank that is not
the lead learner tells the lead (Tag.SIGNAL on the control channel, comm.checkpoint), which then
checkpoints and stops every rank. The job exits with REQUEUE_EXIT, which a batch script reads as
"requeue me" (slurm/). The CLI installs the handlers before MPI starts, so a signal in the job's first
instant is a request too (the learner checkpoints at its first safe point).

A second signal within GRACE_S of the first is the same request (a scheduler sends TERM to every task while
the batch script forwards its own signal; a Ctrl-C reaches every rank of a terminal's process group). A
second signal later stops the rank at once (exit 1 through the abort path), for a user who does not want
to wait for the checkpoint.
"""

import signal
import time

REQUEUE_EXIT = 75  # EX_TEMPFAIL: the run stopped early with a complete checkpoint; resume it
SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)
GRACE_S = 5.0  # seconds after the first signal in which another is the same request

_asked = 0  # the first signal number received, 0 if none
_first_at = 0.0  # time.monotonic() of the first signal
stopping = False  # the job is stopping because of a signal (set on every rank by the final checkpoint)


def _handler(signum, frame):
    global _asked, _first_at
    if not _asked:
        _asked, _first_at = signum, time.monotonic()
    elif time.monotonic() - _first_at >= GRACE_S:
        raise KeyboardInterrupt(f"second signal ({signal.Signals(signum).name}): stopping without a checkpoint")


def install() -> None:
    """Route the pre-emption signals to the handler (main thread only)."""
    for s in SIGNALS:
        signal.signal(s, _handler)


def asked() -> int:
    """The signal number that asked this rank to stop, or 0."""
    return _asked


def settle() -> None:
    """The rank is leaving with REQUEUE_EXIT: ignore TERM and USR1 from here on.

    Under `srun -K1` the first rank to exit 75 makes SLURM TERM the others, which may be in MPI_Finalize by then;
    Python has put SIGTERM back to its default there, so the TERM would kill them and the step's exit code would no
    longer say "requeue me". The outcome is decided and on disk: no signal can change it now."""
    for s in (signal.SIGTERM, signal.SIGUSR1):
        signal.signal(s, signal.SIG_IGN)


def reset() -> None:
    global _asked
    _asked = 0
