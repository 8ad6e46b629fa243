"""Multi-rank runtime tests, each launched under the venv's mpiexec with a timeout."""

import sys
import time

import pytest
from helpers import mpirun, script

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n,per_node", [(2, 0), (4, 0), (4, 2), (4, 3)])
def test_runtime_layout_nodes_seeds_waits(n, per_node):
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(n, [sys.executable, script("runtime_checks.py")], timeout=90, env=env)
    assert r.returncode == 0 and f"PASS {n} ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("mode", ["polite", "blocking"])
def test_exception_on_one_rank_ends_job_with_its_traceback(mode):
    t0 = time.monotonic()
    r = mpirun(4, [sys.executable, script("raise_on_rank.py"), "2", mode], timeout=60)
    elapsed = time.monotonic() - t0
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert elapsed < 15, f"took {elapsed:.1f} s"
    assert "rank 2 (actor) failed:" in out, f"exit {r.returncode}, {elapsed:.1f} s: {out!r}"
    assert "Traceback" in out and "ValueError: boom from rank 2" in out, out


def test_a_probe_on_one_plane_never_takes_another_planes_message():
    r = mpirun(4, [sys.executable, script("channels.py")], timeout=90)
    assert r.returncode == 0 and "PASS 4 ranks" in r.stdout, r.stdout + r.stderr
