"""APPO learns CartPole-v1 with its defaults, in 2 of 3 seeds: its row of the learning table (_table.py)."""

import pytest
from _table import learns, timeout

pytestmark = pytest.mark.learning


@pytest.mark.timeout(timeout("appo"))
def test_appo_learns_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("appo", tmp_path)
