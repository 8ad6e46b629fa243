"""R2D2 learns the memory task: `mpiexec -n 4 drlmpi --algo r2d2 --env masked_cartpole:CartPoleNoVel-v1 --seed S`
(CartPole-v1 without its two velocities, tests/envs) reaches a greedy mean return >= 450 over 20 episodes within
20 minutes of wall time, in 2 of 3 seeds. The defaults train 300K env steps (about 10 minutes here). Run by
`make test-learning`."""

import pytest
from _seeds import train_and_eval
from helpers import ROOT

pytestmark = pytest.mark.learning
ENV = {"PYTHONPATH": str(ROOT / "tests" / "envs")}


@pytest.mark.timeout(3600)  # three full training runs
def test_r2d2_cartpole_without_velocities_2_of_3_seeds(tmp_path):
    results = train_and_eval(tmp_path, "r2d2", 4, env_id="masked_cartpole:CartPoleNoVel-v1", env=ENV)
    assert sum(ret >= 450 and wall <= 1200 for ret, wall in results.values()) >= 2, results
