"""The learning table covers every registered algorithm, each with its own test file (test_<algo>_learns.py:
basenames unique across tests/, as pytest's default import mode needs)."""

from pathlib import Path

from _table import TABLE

from drlmpi import algos


def test_every_algorithm_has_a_row_and_a_test_file():
    assert sorted(row[0] for row in TABLE) == sorted(algos.ALGOS)
    assert all((Path(__file__).parent / f"test_{algo}_learns.py").exists() for algo in algos.ALGOS)
