"""DQN end to end in a subprocess under mpiexec: run directory, checkpoint, eval, bad checkpoints."""

import csv
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import DRLMPI, mpirun, run

from drlmpi import algos, checkpoint, config
from drlmpi.envs import make_vec
from drlmpi.evaluate import episode_returns

pytestmark = pytest.mark.mpi


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("dqn") / "run"
    r = mpirun(1, [DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "4000", "--seed", "3",
                   "--run-dir", str(d), "--set", "log_every=0.5", "--set", "learning_starts=500"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return d, r


def test_run_dir_has_config_metrics_tensorboard_checkpoint(cartpole_run):
    d, r = cartpole_run
    assert "done: 4000 env steps" in r.stdout
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["algo"] == "dqn" and cfg["seed"] == 3 and cfg["total_env_steps"] == 4000
    rows = list(csv.DictReader((d / "metrics.csv").open()))
    assert len(rows) >= 2
    assert int(rows[-1]["env_steps"]) == 4000 and float(rows[-1]["updates"]) > 0
    assert {"frames_per_s", "updates_per_s", "recent_return", "loss", "epsilon"} <= set(rows[0])
    evals = {(r["eval_env_steps"], r["eval_return"]) for r in rows if r["eval_return"] not in ("", "nan")}
    assert evals and all(0 < float(s) <= 4000 and float(v) >= 1 for s, v in evals), evals  # greedy, on the lead
    assert list((d / "tb").glob("events.out.tfevents.*"))
    assert sorted(p.name for p in (d / "checkpoints").iterdir()) == ["ckpt-000000004000-000001.h5", "parts-000001"]


def test_eval_json(cartpole_run):
    d, _ = cartpole_run
    r = run([DRLMPI, "eval", str(d), "--episodes", "5", "--json"], timeout=120)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["episodes"] == 5 and out["env_steps"] == 4000
    # the same five episodes (eval's seed) of the checkpoint's greedy policy, played here through the library
    ck = checkpoint.load(d)
    module = algos.get("dqn")
    cfg = config.from_dict(module.Config, ck.config)
    env = make_vec(cfg.env, 5, seed=12345)
    ref = episode_returns(env, module.load_policy(cfg, ck.weights, env), 5)
    assert (out["mean_return"], out["min_return"], out["max_return"]) == (np.mean(ref), min(ref), max(ref)), ref
    r = run([sys.executable, "-m", "drlmpi", "eval", str(d / "checkpoints" / "ckpt-000000004000-000001.h5"),
             "--episodes", "2"], timeout=120)
    assert r.returncode == 0 and "mean return" in r.stdout, r.stderr


def _one_line_exit_2(r, fragment):
    assert r.returncode == 2, r.stdout + r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, r.stderr


def test_eval_rejects_corrupt_and_mismatched_checkpoints(cartpole_run, tmp_path):
    d, _ = cartpole_run
    good = checkpoint.newest(d)
    cut = tmp_path / "cut.h5"
    cut.write_bytes(good.read_bytes()[:5000])
    _one_line_exit_2(run([DRLMPI, "eval", str(cut)], timeout=60), "truncated")
    edited = tmp_path / "edited.h5"
    edited.write_bytes(good.read_bytes())
    with h5py.File(edited, "r+") as f:  # an edit outside drlmpi breaks the checksum
        f.attrs["env"] = "Acrobot-v1"
    _one_line_exit_2(run([DRLMPI, "eval", str(edited)], timeout=60), "damaged checkpoint")
    st = checkpoint.load(good, parts=False)  # a valid file whose config says another env
    st.config["env"] = "Acrobot-v1"
    st.parts = {}
    other = checkpoint.save(tmp_path / "other.h5", st)
    _one_line_exit_2(run([DRLMPI, "eval", str(other)], timeout=60), "weights do not match Acrobot-v1")


def test_same_seed_same_run(tmp_path):
    outs = []
    for name in ("a", "b"):
        d = tmp_path / name
        r = mpirun(1, [DRLMPI, "--algo", "dqn", "--env", "CartPole-v1", "--total-env-steps", "1500", "--seed", "5",
                       "--run-dir", str(d), "--set", "learning_starts=500", "--set", "torch_threads=1"], timeout=300)
        assert r.returncode == 0, r.stderr
        with h5py.File(checkpoint.newest(d)) as f:
            outs.append(f["nets/online/advantage.weight"][()])
    assert (outs[0] == outs[1]).all()


def test_atari_pong_short_run_and_eval(tmp_path):
    d = tmp_path / "pong"
    r = mpirun(1, [DRLMPI, "--algo", "dqn", "--env", "ALE/Pong-v5", "--total-env-steps", "1200", "--run-dir", str(d),
                   "--set", "learning_starts=800", "--set", "batch_size=32", "--set", "buffer_size=2000"], timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    with h5py.File(checkpoint.newest(d)) as f:
        assert f["nets/online/torso.net.0.weight"].shape == (32, 4, 8, 8)  # Nature CNN on 4 stacked frames
    r = run([DRLMPI, "eval", str(d), "--episodes", "1", "--json"], timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["env"] == "ALE/Pong-v5" and out["episodes"] == 1
    # a whole game of an agent trained for 1200 steps: points are whole and it loses by far (a game ends at 21)
    assert out["mean_return"] == int(out["mean_return"]) and -21 <= out["mean_return"] <= -15, out


def test_env_from_module_import_form(tmp_path):
    d = tmp_path / "chain"
    env = {"PYTHONPATH": str(Path(__file__).parent)}
    r = mpirun(1, [DRLMPI, "--algo", "dqn", "--env", "chain_env:DrlmpiChain-v0", "--total-env-steps", "600",
                   "--run-dir", str(d), "--set", "learning_starts=200"], timeout=120, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json"], timeout=120, env=env)
    assert e.returncode == 2 and "pass --env chain_env:DrlmpiChain-v0 to import it, or --trust" in e.stderr
    e = run([DRLMPI, "eval", str(d), "--episodes", "3", "--json", "--env", "chain_env:DrlmpiChain-v0"], timeout=120,
            env=env)  # (files are data: the user names the module again)
    assert e.returncode == 0 and json.loads(e.stdout)["env"] == "chain_env:DrlmpiChain-v0", e.stderr
