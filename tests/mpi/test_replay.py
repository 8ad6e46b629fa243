"""Replay plane under mpiexec: 4 shards, intact blocks, global sampling like one buffer, stale updates dropped."""

import sys

import pytest
from helpers import mpirun, script

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("per_node", [0, 3])
def test_replay_plane_six_ranks(per_node):
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(6, [sys.executable, script("replay_plane.py")], timeout=180, env=env)
    assert r.returncode == 0 and "PASS 6 ranks" in r.stdout, r.stdout + r.stderr
