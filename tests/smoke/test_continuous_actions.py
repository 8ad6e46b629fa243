"""Gaussian actions across the actor-critic family: A2C, A3C, IMPALA and APPO run on Pendulum-v1 (a Box of actions;
PPO's: tests/smoke/test_ppo.py), their checkpoints hold the policy's log_std and evaluate with the mean action
clipped to the box; the central-inference algorithms (GA3C, SEED) refuse a Box in one line before the job starts."""

import json

import pytest
from helpers import DRLMPI, mpirun, run

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


@pytest.mark.parametrize("algo", ["a2c", "a3c", "impala", "appo"])
def test_gaussian_policies_train_and_evaluate_on_pendulum(algo, tmp_path):
    d = tmp_path / "run"
    r = mpirun(2, [DRLMPI, "--algo", algo, "--env", "Pendulum-v1", "--total-env-steps", "2000", "--run-dir", str(d),
                   "--set", "log_every=0.2", "--set", "n_steps=50", "--set", "eval_episodes=0"], timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    st = checkpoint.load(d)
    assert st.env_steps >= 2000 and st.nets["online"]["log_std"].shape == (1,)
    rows = (d / "metrics.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert float(last["entropy"]) > 0 and int(last["updates"]) > 0, last
    e = run([DRLMPI, "eval", str(d), "--episodes", "1", "--json"], timeout=120)
    assert e.returncode == 0, e.stderr
    assert -2000 < json.loads(e.stdout)["mean_return"] <= 0


@pytest.mark.parametrize("algo", ["ga3c", "seed"])
def test_central_inference_refuses_a_box_of_actions(algo):
    r = mpirun(2, [DRLMPI, "--algo", algo, "--env", "Pendulum-v1"], timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"drlmpi: error: config: {algo} acts on Discrete actions; Pendulum-v1 has a Box (continuous actions: a2c, "
        "a3c, impala, ppo, appo)"), r.stderr
