"""A crashing environment is not a crashing job: Ape-X and IMPALA (4 ranks, their defaults) on CartPole-v1 whose
simulator raises every 2,000 env steps of each process (tests/envs/flaky.py) finish, report the restarts in
metrics.csv, and reach their usual score (one seed each)."""

import csv
import json

import pytest
from helpers import DRLMPI, ROOT, mpirun, run

pytestmark = pytest.mark.learning
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs"), "DRLMPI_TEST_FLAKY_EVERY": "2000"}
FLAKY = "flaky:FlakyCartPole-v1"


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("algo", ["apex", "impala"])
def test_learns_with_a_flaky_environment(algo, tmp_path):
    d = tmp_path / "run"
    r = mpirun(4, [DRLMPI, "--algo", algo, "--env", FLAKY, "--seed", "0", "--run-dir", str(d)], timeout=1500,
               env=ENV)
    assert r.returncode == 0, r.stdout + r.stderr[-3000:]
    warnings = [x for x in r.stderr.splitlines() if "flaky simulator" in x and "rebuilt" in x]
    with open(d / "metrics.csv") as f:
        restarts = float(list(csv.DictReader(f))[-1]["env_restarts"])
    e = run([DRLMPI, "eval", str(d), "--episodes", "20", "--json", "--env", FLAKY], timeout=300, env=ENV)
    assert e.returncode == 0, e.stderr
    score = json.loads(e.stdout)["mean_return"]
    print(f"{algo} on {FLAKY}: {len(warnings)} restarts printed, env_restarts {restarts:.0f}, greedy {score:.1f}")
    assert restarts >= 50 and len(warnings) >= restarts, (restarts, len(warnings))
    assert score >= 475
