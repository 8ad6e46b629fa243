"""Weights plane tests under mpiexec."""

import sys

import pytest
from helpers import mpirun, script

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("n", [2, 4])
def test_node_window_seqlock_and_hogwild(n):
    r = mpirun(n, [sys.executable, script("weights_node.py")], timeout=120)
    assert r.returncode == 0 and f"PASS {n} ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("n,per_node", [(2, 1), (4, 2), (4, 1), (4, 0)])
def test_cross_node_push_reaches_every_node(n, per_node):
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(n, [sys.executable, script("weights_push.py")], timeout=120, env=env)
    assert r.returncode == 0 and f"PASS {n} ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("optimizer,per_node", [("adagrad", 2), ("rmsprop", 1), ("rmsprop", 0)])
def test_sharded_ps_applies_every_gradient_once(optimizer, per_node):
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    r = mpirun(4, [sys.executable, script("sharded_ps.py"), optimizer], timeout=120, env=env)
    assert r.returncode == 0 and "PASS 4 ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("algo,backend", [("apex", "mpi"), ("r2d2", "gloo"), ("impala", "mpi"), ("seed", "mpi")])
def test_two_learners_keep_identical_weights(tmp_path, algo, backend):
    r = mpirun(5, [sys.executable, script("learners.py"), algo, str(tmp_path / "run"), backend], timeout=300)
    assert r.returncode == 0 and "PASS 5 ranks" in r.stdout, r.stdout + r.stderr
    print(next(line for line in r.stdout.splitlines() if line.startswith("learners:")))


def test_a3c_workers_update_one_shared_vector_with_no_lock():
    r = mpirun(4, [sys.executable, script("a3c_hogwild.py")], timeout=120)
    assert r.returncode == 0 and "PASS 4 ranks" in r.stdout, r.stdout + r.stderr
    print(next(line for line in r.stdout.splitlines() if line.startswith("A3C Hogwild!")))


@pytest.mark.parametrize("n", [4, 6])
def test_pbt_exploit_copies_a_members_state_exactly(n):
    r = mpirun(n, [sys.executable, script("pbt_exploit.py")], timeout=120)
    assert r.returncode == 0 and f"PASS {n} ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("per_node", [0, 2])
def test_every_algorithms_planes_free_the_windows_they_allocate(per_node):
    env = {"DRLMPI_RANKS_PER_NODE": str(per_node)} if per_node else {}
    from drlmpi import algos

    with_planes = [a for a in algos.ALGOS if hasattr(algos.get(a), "setup") and a not in ("r2d3", "appo")]
    assert len(with_planes) == 8, with_planes  # (r2d3: r2d2's planes; appo: impala's)
    r = mpirun(4, [sys.executable, script("planes_freed.py"), *with_planes], timeout=180, env=env)
    assert r.returncode == 0 and "PASS 4 ranks" in r.stdout, r.stdout + r.stderr
