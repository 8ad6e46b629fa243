"""Replay plane under mpiexec: 4 shards, intact blocks, global sampling like one buffer, stale updates dropped;
compact frames give back the rows written."""

import sys

import pytest
from helpers import mpirun, script

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n,per_node", [(6, 0), (6, 3), (10, 0), (10, 4)])
def test_replay_plane(n, per_node):
    """n = 10: six writers (five plain actors) feeding four shards."""
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(n, [sys.executable, script("replay_plane.py")], timeout=180, env=env)
    assert r.returncode == 0 and f"PASS {n} ranks" in r.stdout, r.stdout + r.stderr


def test_shard_serves_while_its_checkpoint_part_is_written():
    r = mpirun(3, [sys.executable, script("shard_checkpoint.py")], timeout=120)
    assert r.returncode == 0 and "PASS 3 ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("per_node", [0, 2])
def test_compact_frames_plane_returns_the_rows_written(per_node):
    """per_node 2: rank 3 writes to shard 1 and the learner samples shard 2 across pretend hosts (buffer messages)."""
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(4, [sys.executable, script("frames_plane.py")], timeout=120, env=env)
    assert r.returncode == 0 and "PASS 4 ranks" in r.stdout, r.stdout + r.stderr
