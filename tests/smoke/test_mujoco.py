"""MuJoCo (the mujoco extra): PPO on Hopper-v5 runs with the continuous preset (64x64 tanh, a separate value torso,
observations and rewards normalised) and its checkpoint evaluates; without the package, `--env Hopper-v5` is one
line and exit 2 before the job starts."""

import json

import pytest
from helpers import DRLMPI, ROOT, mpirun, run

from drlmpi import checkpoint

pytestmark = pytest.mark.mpi


def test_ppo_runs_hopper_with_the_continuous_preset_and_evaluates(tmp_path):
    d = tmp_path / "run"
    r = mpirun(2, [DRLMPI, "--algo", "ppo", "--env", "Hopper-v5", "--total-env-steps", "2048", "--run-dir", str(d)],
               timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    cfg = json.loads((d / "config.json").read_text())
    assert (cfg["activation"], cfg["separate_value"], cfg["normalize_obs"], cfg["n_steps"]) == ("tanh", True, True,
                                                                                                512), cfg
    st = checkpoint.load(d)
    assert st.nets["online"]["log_std"].shape == (3,) and st.nets["obs_norm"]["mean"].shape == (11,)
    e = run([DRLMPI, "eval", str(d), "--episodes", "2", "--json"], timeout=120)
    assert e.returncode == 0 and json.loads(e.stdout)["episodes"] == 2, e.stderr


def test_without_mujoco_a_mujoco_env_is_one_line_and_exit_2(tmp_path):
    r = run([DRLMPI, "--algo", "ppo", "--env", "Hopper-v5", "--run-dir", str(tmp_path / "run")], timeout=120,
            env={"PYTHONPATH": str(ROOT / "tests" / "envs" / "no_mujoco")})
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "drlmpi: error: --env Hopper-v5 needs MuJoCo: pip install 'drlmpi[mujoco]'"], r.stderr
    assert not (tmp_path / "run" / "config.json").exists()
