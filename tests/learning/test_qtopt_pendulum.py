"""QT-Opt learns Pendulum-v1 with its defaults: `mpiexec -n 4 drlmpi --algo qtopt --env Pendulum-v1 --seed S`
(learner, replay, bellman, actor) reaches a greedy mean return >= -200 over 20 episodes within 15 minutes of wall
time in 2 of 3 seeds; and from offline data alone (`offline_ratio=1`, no actors, episodes recorded by `drlmpi record`
from a trained checkpoint with half its actions random) it beats a random policy by far. Run by
`make test-learning`."""

import json

import gymnasium as gym
import numpy as np
import pytest
from _seeds import train_and_eval
from helpers import DRLMPI, mpirun, run

pytestmark = pytest.mark.learning


@pytest.mark.timeout(3600)
def test_qtopt_pendulum_2_of_3_seeds_within_15_minutes(tmp_path):
    results = train_and_eval(tmp_path, "qtopt", 4, env_id="Pendulum-v1")
    assert sum(ret >= -200 and wall <= 900 for ret, wall in results.values()) >= 2, results


def random_policy_return(episodes: int = 20) -> float:
    env = gym.make("Pendulum-v1")
    rng, total = np.random.default_rng(0), 0.0
    for k in range(episodes):
        env.reset(seed=12345 + k)
        done = False
        while not done:
            _, r, term, trunc, _ = env.step(rng.uniform(-2, 2, (1,)).astype(np.float32))
            total += float(r)
            done = term or trunc
    return total / episodes


@pytest.mark.timeout(1800)
def test_qtopt_offline_only_from_recorded_episodes_beats_a_random_policy(tmp_path):
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
