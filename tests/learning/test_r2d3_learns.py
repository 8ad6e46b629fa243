"""R2D3 learns MountainCar-v0 from 10 demonstrations with its defaults,
in 2 of 3 seeds: its row of the learning table (_table.py)."""

import pytest
from _table import learns, timeout

pytestmark = pytest.mark.learning


@pytest.mark.timeout(timeout("r2d3"))
def test_r2d3_learns_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("r2d3", tmp_path)
