"""Evolution Strategies learns CartPole-v1 with its defaults: `mpiexec -n 8 drlmpi --algo es --env CartPole-v1
--seed S` reaches a greedy mean return >= 475 over 20 episodes (the mean policy, no noise) within 5 minutes of wall
time in 2 of 3 seeds. Run by `make test-learning`."""

import pytest
from _seeds import train_and_eval

pytestmark = pytest.mark.learning


@pytest.mark.timeout(1800)
def test_es_cartpole_2_of_3_seeds_within_5_minutes(tmp_path):
    results = train_and_eval(tmp_path, "es", 8)
    assert sum(ret >= 475 and wall <= 300 for ret, wall in results.values()) >= 2, results
