"""SEED RL end to end under mpiexec: a learner serving 3 model-less actors runs and the checkpoint evaluates; a signal
stops them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks, on 4 pretend hosts
of one rank (every request a buffer message). Two learners: tests/mpi/test_weights.py."""

import pytest
from helpers import (
    check_four_ranks_run_and_evaluate,
    check_sigterm_then_resume_on_3_ranks,
)

pytestmark = pytest.mark.mpi


def test_seed_four_ranks_run_and_evaluate_with_torch_free_actors(tmp_path):
    check_four_ranks_run_and_evaluate("seed", ["learner", "actor", "actor", "actor"], tmp_path / "seed",
                                      torch_free=True)


def test_seed_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks_across_pretend_hosts(tmp_path):
    check_sigterm_then_resume_on_3_ranks("seed", tmp_path / "run", unroll=4, env={"DRLMPI_RANKS_PER_NODE": "1"})
