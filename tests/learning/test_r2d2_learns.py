"""R2D2 learns the memory task (CartPole-v1 without its velocities) with its defaults,
in 2 of 3 seeds: its row of the learning table (_table.py)."""

import pytest
from _table import learns, timeout

pytestmark = pytest.mark.learning


@pytest.mark.timeout(timeout("r2d2"))
def test_r2d2_learns_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("r2d2", tmp_path)
