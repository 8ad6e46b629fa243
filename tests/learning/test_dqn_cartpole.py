"""DQN learns CartPole-v1 with its defaults: `drlmpi --algo dqn --env CartPole-v1 --seed S` (one rank: DQN is the
single-process baseline) reaches a greedy mean return >= 475 over 20 episodes (`drlmpi eval --json`) within its
100K env steps, in 2 of 3 seeds. Run by `make test-learning` (about 14 minutes on 2 cores: 50K updates per seed).
"""

import pytest
from _seeds import train_and_eval

pytestmark = pytest.mark.learning


@pytest.mark.timeout(1800)  # three full training runs
def test_dqn_cartpole_2_of_3_seeds(tmp_path):
    results = train_and_eval(tmp_path, "dqn", 1)
    assert sum(ret >= 475 for ret, _ in results.values()) >= 2, results
