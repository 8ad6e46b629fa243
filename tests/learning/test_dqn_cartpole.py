"""DQN learns CartPole-v1: greedy mean return >= 475 over 20 episodes within 100K env steps, in 2 of 3 seeds.

Run by `make test-learning` (about 5 minutes on 2 cores); measured through `drlmpi eval --json`.
"""

import json

import pytest
from helpers import DRLMPI, mpirun, run

pytestmark = pytest.mark.learning


@pytest.mark.timeout(1800)  # three full training runs
def test_dqn_cartpole_2_of_3_seeds(tmp_path):
    results = {}
    for seed in (0, 1, 2):
        d = tmp_path / f"seed{seed}"
        r = mpirun(1, [DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "100000",
                       "--seed", str(seed), "--run-dir", str(d)], timeout=900)
        assert r.returncode == 0, r.stdout + r.stderr
        e = run([DRLMPI, "eval", str(d), "--episodes", "20", "--json"], timeout=300)
        assert e.returncode == 0, e.stderr
        results[seed] = json.loads(e.stdout)["mean_return"]
        print(f"seed {seed}: greedy mean return {results[seed]:.1f} over 20 episodes", flush=True)
    passed = sum(v >= 475 for v in results.values())
    assert passed >= 2, results
