"""Every actor loop survives a failing environment and counts it: A2C's, PPO's and ES's workers (summed over workers in
their allreduce or allgather), SEED RL's model-less actors (central inference) and R2D2's sequence actors, each on
CartPole whose every env instance raises on 1 step in 300 (1 in 2,000 for ES, which reruns a failed episode whole:
a 500-step episode must get through; tests/envs/flaky.py); metrics.csv's last `env_restarts` is the job's total:
the restart lines every rank printed."""

import csv

import pytest
from helpers import DRLMPI, ROOT, mpirun

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs")}


@pytest.mark.parametrize("algo,ranks,steps,every", [("a2c", 2, 12_000, 300), ("es", 2, 40_000, 2000),
                                                    ("seed", 3, 12_000, 300), ("r2d2", 4, 3_000, 300),
                                                    ("ppo", 2, 12_000, 300)])
def test_every_actor_loop_survives_and_counts_env_failures(algo, ranks, steps, every, tmp_path):
    d = tmp_path / "run"
    r = mpirun(ranks, [DRLMPI, "--algo", algo, "--env", "flaky:FlakyCartPole-v1", "--total-env-steps", str(steps),
                       "--run-dir", str(d), "--set", "log_every=0.5"], timeout=180,
               env={**ENV, "DRLMPI_TEST_FLAKY_EVERY": str(every)})
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    printed = sum("flaky simulator" in x and "rebuilt" in x for x in r.stderr.splitlines())
    with open(d / "metrics.csv") as f:
        counted = int(float(list(csv.DictReader(f))[-1]["env_restarts"]))
    assert printed >= 4 and counted == printed, (printed, counted)
