"""APPO end to end under mpiexec: a learner and 3 actors run and the checkpoint evaluates, a signal stops them with
a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks, and each batch is learnt from in
epochs x minibatches updates."""

import pytest
from helpers import ac_cmd, check_four_ranks_run_and_evaluate, check_sigterm_then_resume_on_3_ranks, mpirun

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


def test_appo_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("appo", ["learner", "actor", "actor", "actor"], tmp_path / "appo",
                                      torch_free=True)


def test_appo_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("appo", tmp_path / "run", unroll=2 * 5)


def test_appo_makes_epochs_times_minibatches_updates_a_batch(tmp_path):
    """batch_size 1 (8 envs x 20 steps: 8 unrolls a batch), 3 passes of 4 minibatches: 12 updates a 160-step batch."""
    d = tmp_path / "run"
    r = mpirun(2, ac_cmd("appo", d, 1600, "--set", "batch_size=1", "--set", "num_envs=8", "--set", "n_steps=20",
                         "--set", "epochs=3", "--set", "minibatches=4"), timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    st = checkpoint.load(d)
    assert st.env_steps == 1600 and st.counters["updates"] == 12 * 1600 // 160, st.counters
