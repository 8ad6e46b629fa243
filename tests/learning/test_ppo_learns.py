"""PPO learns CartPole-v1 and Pendulum-v1 with its defaults (the continuous preset on Pendulum), each in 2 of 3
seeds: its rows of the learning table (_table.py)."""

import pytest
from _table import learns, timeout

pytestmark = pytest.mark.learning


@pytest.mark.timeout(timeout("ppo"))
def test_ppo_learns_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("ppo", tmp_path)


@pytest.mark.timeout(timeout("ppo-pendulum"))
def test_ppo_learns_pendulum_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("ppo-pendulum", tmp_path)
