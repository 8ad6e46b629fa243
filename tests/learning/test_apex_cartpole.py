"""Ape-X (4 ranks) learns CartPole-v1: greedy mean return >= 475 over 20 episodes within 5 minutes of wall time,
in 2 of 3 seeds, measured through `drlmpi eval --json`. 150K env steps take about 200 s here. Run by
`make test-learning`."""

import json
import time

import pytest
from helpers import DRLMPI, mpirun, run

pytestmark = pytest.mark.learning


@pytest.mark.timeout(1800)  # three full training runs
def test_apex_cartpole_2_of_3_seeds(tmp_path):
    results = {}
    for seed in (0, 1, 2):
        d = tmp_path / f"seed{seed}"
        t0 = time.monotonic()
        r = mpirun(4, [DRLMPI, "--algo", "apex", "--env", "CartPole-v1", "--total-env-steps", "150000",
                       "--seed", str(seed), "--run-dir", str(d)], timeout=900)
        wall = time.monotonic() - t0
        assert r.returncode == 0, r.stdout + r.stderr
        e = run([DRLMPI, "eval", str(d), "--episodes", "20", "--json"], timeout=300)
        assert e.returncode == 0, e.stderr
        results[seed] = (json.loads(e.stdout)["mean_return"], wall)
        print(f"seed {seed}: greedy mean return {results[seed][0]:.1f} over 20 episodes, {wall:.0f} s wall", flush=True)
    passed = sum(ret >= 475 and wall <= 300 for ret, wall in results.values())
    assert passed >= 2, results
