"""Env stepping: what drlmpi's restartable vector env (envs.make_vec: a Restarting wrapper per env, Step assembly,
episode statistics) costs against stepping gymnasium's own vector env, the raw limit an actor can reach.

One run, in one process, alternating contenders; each is the median over `--repeats` runs of `--steps` vector steps
with random actions:
  gymnasium  gym.make_vec(ENV, E, "sync", same-step autoreset): what drlmpi used before the Restarting wrapper
  vecenv     envs.VecEnv over that vector env: drlmpi's Step assembly and episode statistics, no restarts
  drlmpi     envs.make_vec(ENV, E, seed).step(actions) -> Step (a Restarting wrapper per env)
Prints vector steps/s of each and the ratio drlmpi / gymnasium.

Usage: python benchmarks/env_step.py [--env CartPole-v1] [--envs 8] [--steps 5000] [--repeats 5]
"""

import argparse
import time

import numpy as np
from _timing import machine


def raw(env_id: str, n: int):
    import gymnasium as gym
    from gymnasium.vector import AutoresetMode

    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    env.reset(seed=0)
    return env, lambda a: env.step(a)


def vecenv(env_id: str, n: int):
    from drlmpi import envs

    env = envs.VecEnv(raw(env_id, n)[0], n, 0, atari=False)
    env.reset()
    return env, env.step


def ours(env_id: str, n: int):
    from drlmpi import envs

    env = envs.make_vec(env_id, n, seed=0)
    env.reset()
    return env, env.step


def rate(make, env_id: str, n: int, steps: int) -> float:
    env, step = make(env_id, n)
    actions = np.random.default_rng(0).integers(0, env.single_action_space.n if hasattr(env, "single_action_space")
                                               else env.action_space.n, (steps, n))
    t0 = time.perf_counter()
    for a in actions:
        step(a)
    seconds = time.perf_counter() - t0
    env.close()
    return steps / seconds


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--env", default="CartPole-v1")
    p.add_argument("--envs", type=int, default=8)
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    got = {"gymnasium": [], "vecenv": [], "drlmpi": []}
    for _ in range(args.repeats):
        for name, make in (("gymnasium", raw), ("vecenv", vecenv), ("drlmpi", ours)):
            got[name].append(rate(make, args.env, args.envs, args.steps))
    med = {k: float(np.median(v)) for k, v in got.items()}
    print(f"{machine()}; {args.env} x {args.envs} envs, {args.steps} vector steps, median of {args.repeats}")
    for k, v in med.items():
        print(f"  {k:<10} {v:10,.0f} vector steps/s  ({v * args.envs:,.0f} env steps/s; runs: "
              + ", ".join(f"{x:,.0f}" for x in got[k]) + ")")
    print(f"  drlmpi / gymnasium: {med['drlmpi'] / med['gymnasium']:.2f}; vecenv / gymnasium: "
          f"{med['vecenv'] / med['gymnasium']:.2f}; the Restarting wrappers: drlmpi / vecenv "
          f"{med['drlmpi'] / med['vecenv']:.2f}")


if __name__ == "__main__":
    main()
