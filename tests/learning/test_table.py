"""The learning table covers every registered algorithm, each with its own test file."""

from pathlib import Path

from _table import TABLE

from drlmpi import algos


def test_every_algorithm_has_a_row_and_a_test_file():
    assert sorted(row[0] for row in TABLE) == sorted(algos.ALGOS)
    assert all((Path(__file__).parent / f"test_{algo}.py").exists() for algo in algos.ALGOS)
