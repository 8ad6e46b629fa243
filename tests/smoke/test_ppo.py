"""PPO end to end under mpiexec: 4 workers run and their checkpoint evaluates, one rank runs serially, a signal
stops them with a complete checkpoint and exit 75 from which `--resume auto` continues on 3 ranks; on Pendulum
(Gaussian actions, the continuous preset: observations and rewards normalised) the running statistics and Adam's
state are in the checkpoint and a resume on another number of workers continues them."""

import json

import numpy as np
import pytest
from helpers import (
    DRLMPI,
    check_four_ranks_run_and_evaluate,
    check_one_rank_runs_serially,
    check_sigterm_then_resume_on_3_ranks,
    mpirun,
    run,
)

pytestmark = pytest.mark.mpi


# (4 epochs, not CartPole's 20: each epoch's allreduce costs these tests more than the mechanisms they check)
EPOCHS = ("--set", "epochs=4")


def test_ppo_four_ranks_run_and_evaluate(tmp_path):
    check_four_ranks_run_and_evaluate("ppo", ["actor"] * 4, tmp_path / "ppo", *EPOCHS)


def test_ppo_one_rank_runs_serially(tmp_path):
    check_one_rank_runs_serially("ppo", tmp_path / "run")


def test_ppo_sigterm_checkpoints_then_resume_auto_finishes_on_3_ranks(tmp_path):
    check_sigterm_then_resume_on_3_ranks("ppo", tmp_path / "run", unroll=2 * 32, extra=EPOCHS)


def pendulum(d, steps: int, *extra: str) -> list[str]:
    return [DRLMPI, "--algo", "ppo", "--env", "Pendulum-v1", "--total-env-steps", str(steps), "--run-dir", str(d),
            "--set", "n_steps=128", "--set", "minibatches=4", *EPOCHS, *extra]


def test_ppo_gaussian_policy_resumes_its_statistics_on_2_workers(tmp_path):
    from drlmpi import checkpoint

    d = tmp_path / "run"
    r = mpirun(4, pendulum(d, 2000), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    first = checkpoint.load(d)
    obs_count = float(first.nets["obs_norm"]["count"])
    assert obs_count == first.env_steps and first.nets["ret_norm"]["count"] == first.env_steps, \
        "every observation acted on and every discounted return is counted once, on every worker"
    assert first.nets["online"]["log_std"].shape == (1,) and "adam" in first.optim
    r = mpirun(2, pendulum(d, first.env_steps + 1000, "--resume", "auto"), timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    end = checkpoint.load(d)
    assert float(end.nets["obs_norm"]["count"]) == end.env_steps > first.env_steps, \
        "the resumed run merged its observations into the checkpoint's statistics"
    assert not np.allclose(end.nets["obs_norm"]["mean"], first.nets["obs_norm"]["mean"])
    e = run([DRLMPI, "eval", str(d), "--episodes", "2", "--json"], timeout=120)
    assert e.returncode == 0, e.stderr
    assert json.loads(e.stdout)["episodes"] == 2 and -2000 < json.loads(e.stdout)["mean_return"] <= 0
