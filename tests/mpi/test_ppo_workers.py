"""PPO's workers under mpiexec: each worker's loss weighted by its samples (tests/mpi/scripts/ppo_weighting.py),
identical after every update (weights and running statistics), and DD-PPO's preemption threshold cutting a
straggler's rollouts short, only when it is on (tests/mpi/scripts/ppo_workers.py)."""

import re
import sys

import pytest
from helpers import ROOT, mpirun, script

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "DRLMPI_TEST_SLOW_RANKS": "1", "DRLMPI_TEST_SLOW_S": "0.002"}


def test_ppo_weights_each_workers_loss_by_its_samples():
    r = mpirun(2, [sys.executable, script("ppo_weighting.py")], timeout=120)
    assert r.returncode == 0 and "PASS 2 ranks" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("fraction,normalize", [("0.6", "1"), ("1", "0")])
def test_ppo_workers_stay_identical_and_a_straggler_is_preempted_only_with_the_threshold(tmp_path, fraction,
                                                                                        normalize):
    r = mpirun(3, [sys.executable, script("ppo_workers.py"), str(tmp_path / "run"), fraction, normalize],
               timeout=180, env=ENV)
    assert r.returncode == 0 and "PASS 3 ranks" in r.stdout, r.stdout + r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("ppo workers:"))
    print(line)
    rows, preempted = map(int, re.search(r"(\d+) rows, (\d+) with a preempted worker", line).groups())
    if fraction == "1":
        assert preempted == 0, line
    else:  # (rank 1 sleeps 2 ms a step: it is never first; ranks 0 and 2 finish, then it stops)
        assert preempted >= rows // 2, line
