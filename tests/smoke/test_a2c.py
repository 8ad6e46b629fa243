"""A2C end to end under mpiexec: 4 workers run and their checkpoint evaluates, one rank runs serially, and a signal
stops them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks."""

import pytest
from helpers import (
    check_four_ranks_run_and_evaluate,
    check_one_rank_runs_serially,
    check_sigterm_then_resume_on_3_ranks,
)

pytestmark = pytest.mark.mpi


def test_a2c_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("a2c", ["actor"] * 4, tmp_path / "a2c")


def test_a2c_one_rank_runs_serially(tmp_path):
    check_one_rank_runs_serially("a2c", tmp_path / "run")


def test_a2c_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("a2c", tmp_path / "run", unroll=4 * 5)
