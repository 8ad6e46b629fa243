"""Population-based training of 4 DQN members on CartPole-v1 with its defaults: `mpiexec -n 4 drlmpi --algo pbt
--env CartPole-v1 --seed S` (learning rates spread log-uniformly over [1e-6, 1e-2], ready every 10K steps) ends with
its best member (the one `drlmpi eval RUN_DIR` picks: the best score at the last ready point) at a greedy mean return
>= 475 over 20 episodes, within 15 minutes of wall time on 2 cores, in 2 of 3 seeds. Run by `make test-learning`."""

import pytest
from _seeds import train_and_eval

pytestmark = pytest.mark.learning


@pytest.mark.timeout(3600)
def test_pbt_dqn_cartpole_2_of_3_seeds_within_15_minutes(tmp_path):
    results = train_and_eval(tmp_path, "pbt", 4)
    assert sum(ret >= 475 and wall <= 900 for ret, wall in results.values()) >= 2, results
