"""SEED RL end to end under mpiexec: a learner serving 3 model-less actors runs and the checkpoint evaluates; a signal
stops them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks; two learners on
pretend hosts of one rank, each serving its own actors through buffer messages with an LSTM core, allreduce."""

import pytest
from helpers import (
    ac_cmd,
    check_four_ranks_run_and_evaluate,
    check_sigterm_then_resume_on_3_ranks,
    layout_table,
    mpirun,
)

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


def test_seed_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("seed", ["learner", "actor", "actor", "actor"], tmp_path / "seed")


def test_seed_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("seed", tmp_path / "run", unroll=16)


def test_seed_two_learners_with_an_lstm_across_pretend_hosts(tmp_path):
    d = tmp_path / "run"
    r = mpirun(4, ac_cmd("seed", d, 20_000, "--set", "lstm=16", "--layout", "learner=2"), timeout=300,
               env={"DRLMPI_RANKS_PER_NODE": "1"})
    assert r.returncode == 0, r.stdout + r.stderr
    rows = layout_table(r.stdout)
    assert [row[1] for row in rows] == ["learner", "learner", "actor", "actor"] and len({row[3] for row in rows}) == 4
    st = checkpoint.load(d)
    assert st.env_steps >= 20_000 and st.counters["updates"] > 0
    assert set(st.metrics["learners"][-1:]) == {2.0}, st.metrics["learners"]
