"""Every actor loop survives a failing environment and counts it: A2C's and ES's workers (summed over workers in
their allreduce or allgather), SEED RL's model-less actors (central inference) and R2D2's sequence actors, each on
CartPole whose every env instance raises once every 300 of its steps (tests/envs/flaky.py); metrics.csv's last
`env_restarts` is the job's total: the restart lines every rank printed."""

import csv

import pytest
from helpers import DRLMPI, ROOT, mpirun

pytestmark = pytest.mark.mpi
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "DRLMPI_TEST_FLAKY_EVERY": "300"}


@pytest.mark.parametrize("algo,ranks,steps", [("a2c", 2, 12_000), ("es", 2, 12_000), ("seed", 3, 12_000),
                                              ("r2d2", 4, 3_000)])
def test_every_actor_loop_survives_and_counts_env_failures(algo, ranks, steps, tmp_path):
    d = tmp_path / "run"
    r = mpirun(ranks, [DRLMPI, "--algo", algo, "--env", "flaky:FlakyCartPole-v1", "--total-env-steps", str(steps),
                       "--run-dir", str(d), "--set", "log_every=0.5"], timeout=180, env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    printed = sum("flaky simulator" in x and "rebuilt" in x for x in r.stderr.splitlines())
    with open(d / "metrics.csv") as f:
        counted = int(float(list(csv.DictReader(f))[-1]["env_restarts"]))
    assert printed >= 4 and counted == printed, (printed, counted)
