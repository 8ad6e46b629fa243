"""signals.settle: a rank leaving with REQUEUE_EXIT survives the TERM a scheduler sends while it is in its final
teardown (where MPI_Finalize runs, after Python has put its signal handlers back to the default)."""

import signal
import subprocess
import sys
import time

import pytest

CHILD = """
import ctypes, sys
from drlmpi.runtime import signals
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
