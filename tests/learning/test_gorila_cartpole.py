"""GORILA learns CartPole-v1 with its defaults: `mpiexec -n 4 drlmpi --algo gorila --env CartPole-v1 --seed S`
(learner, parameter server, replay shard, actor) reaches a greedy mean return >= 475 over 20 episodes
(`drlmpi eval --json`) within 5 minutes of wall time, in 2 of 3 seeds. The defaults train 150K env steps (about
130-210 s here). Run by `make test-learning`."""

import pytest
from _seeds import train_and_eval

pytestmark = pytest.mark.learning


@pytest.mark.timeout(1800)  # three full training runs
def test_gorila_cartpole_2_of_3_seeds(tmp_path):
    results = train_and_eval(tmp_path, "gorila", 4)
    assert sum(ret >= 475 and wall <= 300 for ret, wall in results.values()) >= 2, results
