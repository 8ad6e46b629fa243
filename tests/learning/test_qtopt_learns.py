"""QT-Opt learns Pendulum-v1 with its defaults, in 2 of 3 seeds: its row of the learning table (_table.py)."""

import json

import pytest
from _seeds import train_and_eval
from _table import learns, random_policy_return, timeout
from helpers import DRLMPI, mpirun, run

pytestmark = pytest.mark.learning


@pytest.mark.timeout(timeout("qtopt"))
def test_qtopt_learns_with_its_defaults_in_2_of_3_seeds(tmp_path):
    learns("qtopt", tmp_path)


@pytest.mark.timeout(1800)
def test_qtopt_offline_only_from_recorded_episodes_beats_a_random_policy(tmp_path):
    """From offline data alone (`offline_ratio=1`, no actors, episodes recorded by `drlmpi record` from a trained
    checkpoint with half its actions random) QT-Opt beats a random policy by far."""
    (expert,) = train_and_eval(tmp_path, "qtopt", 4, seeds=(0,), env_id="Pendulum-v1").values()
    demos = tmp_path / "pendulum.h5"
    (ckpt_dir,) = (tmp_path / "seed0" / "runs").iterdir()
    r = run([DRLMPI, "record", "--env", "Pendulum-v1", "--checkpoint", str(ckpt_dir), "--episodes", "20",
             "--epsilon", "0.5", "--out", str(demos)], timeout=300)
    assert r.returncode == 0, r.stderr
    print(r.stdout.strip(), flush=True)
    d = tmp_path / "offline"
    r = mpirun(3, [DRLMPI, "--algo", "qtopt", "--env", "Pendulum-v1", "--run-dir", str(d), "--set",
                   f"offline={demos}", "--set", "offline_ratio=1", "--set", "updates=6000"], timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    e = run([DRLMPI, "eval", str(d), "--episodes", "20", "--json"], timeout=300)
    assert e.returncode == 0, e.stderr
    offline, rand = json.loads(e.stdout)["mean_return"], random_policy_return()
    print(f"offline only: greedy mean return {offline:.1f}; random policy {rand:.1f}; the checkpoint that recorded "
          f"the episodes {expert[0]:.1f}", flush=True)
    assert offline >= rand + 300, (offline, rand)
