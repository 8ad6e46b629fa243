"""signals.settle: a rank leaving with REQUEUE_EXIT survives the TERM a scheduler sends while it is in its final
teardown (where MPI_Finalize runs, after Python has put its signal handlers back to the default)."""

import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import ctypes, sys
from drlmpi import signals
signals.install()
if sys.argv[1] == "settle":
    signals.settle()
pause = ctypes.cast(ctypes.CDLL(None).pause, ctypes.CFUNCTYPE(None))
ctypes.pythonapi.Py_AtExit(pause)  # stands for MPI_Finalize: runs after Python's own finalization
print("exiting", flush=True)
sys.exit(signals.REQUEUE_EXIT)
"""


def teardown_then_term(mode: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, mode], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "exiting"
    time.sleep(0.3)  # into the Py_AtExit pause
    p.send_signal(signal.SIGTERM)
    return p


@pytest.mark.timeout(60)
def test_term_in_final_teardown_kills_a_rank_without_settle():
    p = teardown_then_term("install")
    assert p.wait(timeout=20) == -signal.SIGTERM  # what srun -K1 turned into a failed step instead of a requeue


@pytest.mark.timeout(60)
def test_settled_rank_ignores_term_in_final_teardown():
    p = teardown_then_term("settle")
    time.sleep(0.5)
    assert p.poll() is None, f"exit {p.returncode}: the TERM was not ignored"
    p.kill()
    assert p.wait(timeout=20) == -signal.SIGKILL


SIGNAL_AT_MPI_START = """
import importlib.abc, os, signal, sys


class SignalAtMpiStart(importlib.abc.MetaPathFinder):
    '''Sends this rank the signals in DRLMPI_TEST_SIGNALS as mpi4py.MPI starts being imported (MPI start-up).'''

    def find_spec(self, name, path=None, target=None):
        if name == "mpi4py.MPI" and os.environ.get("PMI_RANK", "0") == os.environ["DRLMPI_TEST_RANK"]:
            sys.meta_path.remove(self)
            for s in os.environ["DRLMPI_TEST_SIGNALS"].split(","):
                os.kill(os.getpid(), getattr(signal, s))
        return None


sys.meta_path.insert(0, SignalAtMpiStart())
"""


def signalled_at_start(tmp_path, n: int, rank: int, signals: str, algo: str = "apex"):
    """A run of `algo` on n ranks whose rank `rank` gets `signals` (comma-separated names) at MPI start-up."""
    from helpers import DRLMPI, mpirun, run

    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SIGNAL_AT_MPI_START)
    env = {"PYTHONPATH": str(hook), "DRLMPI_TEST_RANK": str(rank), "DRLMPI_TEST_SIGNALS": signals}
    cmd = [DRLMPI, "--algo", algo, "--env", "CartPole-v1", "--run-dir", str(tmp_path / "run"), "--seed", "1"]
    return mpirun(n, cmd, timeout=120, env=env) if n > 1 else run(cmd, timeout=120, env=env)


@pytest.mark.timeout(150)
def test_a_signal_as_mpi_starts_is_a_checkpoint_and_a_requeue(tmp_path):
    """The handlers are installed before MPI starts: a TERM in the job's first instant (here as mpi4py.MPI is
    imported on a serial run) gives a complete checkpoint and exit 75, not a death by signal (exit -15)."""
    from drlmpi import checkpoint
    from drlmpi.signals import REQUEUE_EXIT

    r = signalled_at_start(tmp_path, 1, 0, "SIGTERM", algo="dqn")
    assert r.returncode == REQUEUE_EXIT, (r.returncode, r.stdout, r.stderr)
    assert checkpoint.load(tmp_path / "run").env_steps < 100_000


@pytest.mark.mpi
@pytest.mark.timeout(150)
def test_two_signals_at_once_on_an_actor_are_one_request(tmp_path):
    """A scheduler TERMs every task while the batch script forwards USR1: an actor that gets both at MPI start-up
    asks the lead for one checkpoint and the job requeues (a second signal used to stop that rank at once)."""
    from drlmpi import checkpoint
    from drlmpi.signals import REQUEUE_EXIT

    r = signalled_at_start(tmp_path, 4, 3, "SIGTERM,SIGUSR1")
    assert r.returncode == REQUEUE_EXIT, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and len(checkpoint.load(tmp_path / "run").rng) == 4


def test_a_second_signal_after_the_grace_stops_at_once():
    from drlmpi import signals

    try:
        signals._handler(signal.SIGINT, None)
        signals._handler(signal.SIGTERM, None)  # within GRACE_S: the same request
        assert signals.asked() == signal.SIGINT
        signals._first_at -= signals.GRACE_S
        with pytest.raises(KeyboardInterrupt, match="second signal"):
            signals._handler(signal.SIGINT, None)
    finally:
        signals.reset()
