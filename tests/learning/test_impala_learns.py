"""IMPALA learns CartPole-v1 with its defaults, in 2 of 3 seeds: its row of the learning table (_table.py)."""

import pytest
from _table import learns, timeout

pytestmark = pytest.mark.learning


@pytest.mark.timeout(timeout("impala"))
def test_impala_learns_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("impala", tmp_path)
