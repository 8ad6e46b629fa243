"""Weights plane tests under mpiexec."""

import sys

import pytest
from helpers import mpirun, script

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [2, 4])
def test_node_window_seqlock_and_hogwild(n):
    r = mpirun(n, [sys.executable, script("weights_node.py")], timeout=120)
    assert r.returncode == 0 and f"PASS {n} ranks" in r.stdout, r.stdout + r.stderr
