"""GA3C learns CartPole-v1 with its defaults: `mpiexec -n 4 drlmpi --algo ga3c --env CartPole-v1 --seed S` reaches
a greedy mean return >= 475 over 20 episodes (`drlmpi eval --json`) within 10 minutes of wall time, in 2 of 3 seeds.
Run by `make test-learning`."""

import pytest
from _seeds import train_and_eval

pytestmark = pytest.mark.learning


@pytest.mark.timeout(2400)  # three full training runs
def test_ga3c_cartpole_2_of_3_seeds(tmp_path):
    results = train_and_eval(tmp_path, "ga3c", 4)
    assert sum(ret >= 475 and wall <= 600 for ret, wall in results.values()) >= 2, results
