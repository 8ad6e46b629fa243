"""The learning table, written once: every algorithm learns with its defaults, `mpiexec -n RANKS drlmpi --algo A
--env E --seed S` (plus only the arguments in the table) for S = 0, 1, 2, each in a fresh directory, then
`drlmpi eval --json` of the run's default run directory over 20 greedy episodes; at least 2 of 3 seeds must reach
the score within the wall time. Each algorithm's `test_<algo>_learns.py` runs its row (`learns`). Run by
`make test-learning` (about 3 hours on 2 cores); one algorithm: `pytest -m learning tests/learning/test_apex_learns.py`.

  dqn        one rank, the single-process baseline: 100K env steps (about 14 minutes a seed)
  apex       150K env steps, 160-250 s a seed
  r2d2       the memory task: CartPole-v1 without its two velocities (tests/envs/masked_cartpole.py), 300K steps
  r2d3       MountainCar-v0 from 10 recorded demonstrations of a scripted policy (tests/envs/scripted.py)
  qtopt      Pendulum-v1 (continuous actions); offline-only learning is tested below
  es         8 workers; pbt: the best of 4 DQN members
  ppo        also Pendulum-v1 (row ppo-pendulum: Gaussian actions, the continuous preset)
"""


import gymnasium as gym
import numpy as np
from _seeds import train_and_eval
from helpers import DRLMPI, ROOT, run

ENVS = {"PYTHONPATH": str(ROOT / "tests" / "envs")}

# algo, ranks, env, greedy score to reach, wall seconds a seed may take (None: no limit), test timeout (s)
TABLE = [
    ("dqn", 1, "CartPole-v1", 475, None, 1800),
    ("apex", 4, "CartPole-v1", 475, 300, 1800),
    ("gorila", 4, "CartPole-v1", 475, 300, 1800),
    ("a2c", 4, "CartPole-v1", 475, 600, 2400),
    ("a3c", 4, "CartPole-v1", 475, 600, 2400),
    ("impala", 4, "CartPole-v1", 475, 600, 2400),
    ("ga3c", 4, "CartPole-v1", 475, 600, 2400),
    ("seed", 4, "CartPole-v1", 475, 600, 2400),
    ("r2d2", 4, "masked_cartpole:CartPoleNoVel-v1", 450, 1200, 3600),
    ("r2d3", 4, "MountainCar-v0", -130, None, 3600),
    ("qtopt", 4, "Pendulum-v1", -200, 900, 3600),
    ("es", 8, "CartPole-v1", 475, 300, 1800),
    ("pbt", 4, "CartPole-v1", 475, 900, 3600),
    ("ppo", 4, "CartPole-v1", 475, 600, 2400),
    ("appo", 4, "CartPole-v1", 475, 600, 2400),
]
ROW = {row[0]: row for row in TABLE}
ROW["ppo-pendulum"] = ("ppo", 4, "Pendulum-v1", -200, 900, 3600)  # (a second row of an algorithm, by its name)


def r2d3_demos(tmp_path) -> tuple[str, ...]:
    """10 demonstrations of the scripted MountainCar policy, and R2D3's arguments to use them (100K env steps)."""
    demos = tmp_path / "mountain_car_demos.h5"
    r = run([DRLMPI, "record", "--env", "MountainCar-v0", "--policy", "scripted:mountain_car", "--episodes", "10",
             "--out", str(demos)], timeout=120, env=ENVS)
    assert r.returncode == 0, r.stderr
    print(r.stdout.strip(), flush=True)
    return ("--set", f"demos={demos}", "--total-env-steps", "100000")


def learns(name: str, tmp_path) -> None:
    """The row `name` (an algorithm's, or a second row's name): 2 of 3 seeds reach the score (within the wall time
    where it has one)."""
    algo, ranks, env_id, score, wall, _ = ROW[name]
    extra = r2d3_demos(tmp_path) if algo == "r2d3" else ()
    results = train_and_eval(tmp_path, algo, ranks, env_id=env_id, env=ENVS, extra=extra)
    assert sum(ret >= score and (wall is None or took <= wall) for ret, took in results.values()) >= 2, results


def timeout(algo: str) -> float:
    """The row's test timeout: three full training runs."""
    return ROW[algo][5]


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
