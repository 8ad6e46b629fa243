"""EnvPool (the `envpool` package) against drlmpi's environments, on one core: frames/s and equivalence.

speed     frames/s of E envs stepped with random actions on one core (everything pinned to the core this runs on;
          EnvPool with num_threads=1), for drlmpi's `make_vec` (gymnasium's MuJoCo envs in a SyncVectorEnv; Atari
          through ale-py's AtariVectorEnv) and for EnvPool's vector env with the same preprocessing (Atari: frame
          skip 4 with max-pool, 84x84 grayscale, a stack of 4, sticky actions 0.25, up to 30 no-ops, fire on reset,
          full episodes, unclipped rewards).
same      whether the two give the same observations: MuJoCo from the noise-free initial state
          (reset_noise_scale=0 in both) under the same action sequence, the largest absolute difference of
          observations and rewards and the step of the first termination in each; Atari with sticky actions and
          no-ops off (their draws come from each library's own generator), the same actions, frame by frame.

Usage: python benchmarks/envpool_compare.py [--envs Hopper-v5,HalfCheetah-v5,Walker2d-v5,ALE/Pong-v5] [--num-envs 8]
                                            [--seconds 5] [--steps 3000]
"""

import argparse
import os
import time

import numpy as np
from _timing import machine

ATARI = {"img_height": 84, "img_width": 84, "stack_num": 4, "gray_scale": True, "frame_skip": 4,
         "episodic_life": False, "reward_clip": False, "use_fire_reset": True, "max_episode_steps": 27_000}


def envpool_env(env_id: str, num_envs: int, seed: int, sticky: float = 0.25, noop_max: int = 30, **kw):
    import envpool

    if env_id.startswith("ALE/"):
        name = env_id.removeprefix("ALE/")
        return envpool.make(name, env_type="gymnasium", num_envs=num_envs, num_threads=1, seed=seed,
                            repeat_action_probability=sticky, noop_max=noop_max, **ATARI, **kw)
    return envpool.make(env_id, env_type="gymnasium", num_envs=num_envs, num_threads=1, seed=seed, **kw)


def speed(env_id: str, num_envs: int, seconds: float) -> dict:
    """frames/s of drlmpi's make_vec and of EnvPool, random actions, one core."""
    from drlmpi.envs import make_vec

    out = {}
    for name in ("drlmpi", "envpool"):
        env = make_vec(env_id, num_envs, seed=0) if name == "drlmpi" else envpool_env(env_id, num_envs, 0)
        env.action_space.seed(0)
        actions = [np.stack([env.action_space.sample() for _ in range(num_envs)]) for _ in range(64)]
        env.reset()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            env.step(actions[n % 64])
            n += 1
        out[name] = n * num_envs / (time.perf_counter() - t0)
        env.close()
    return out


def mujoco_same(env_id: str, steps: int) -> dict:
    """From the noise-free initial state, the same actions (uniform in [-0.3, 0.3], so the robot stays up a while):
    the largest |obs| and |reward| differences in the first 20 steps and over the episode, the first step they
    pass 1e-6 (chaotic dynamics amplify rounding), and the step each first terminates (-1: not within `steps`)."""
    import gymnasium as gym

    g = gym.make(env_id, reset_noise_scale=0.0)
    e = envpool_env(env_id, 1, 0, reset_noise_scale=0.0)
    og, _ = g.reset(seed=0)
    oe, _ = e.reset()
    rng = np.random.default_rng(1)
    diffs, ends = [float(np.abs(og - oe[0]).max())], [-1, -1]
    for t in range(steps):
        a = rng.uniform(-0.3, 0.3, g.action_space.shape)
        og, rg, tg, _, _ = g.step(a)
        oe, re, te, _, _ = e.step(a[None].astype(np.float64))
        diffs.append(max(float(np.abs(og - oe[0]).max()), abs(float(rg) - float(re[0]))))
        for i, done in enumerate((tg, te[0])):
            if ends[i] < 0 and done:
                ends[i] = t
        if tg or te[0]:
            break
    g.close()
    e.close()
    over = [i for i, d in enumerate(diffs) if d > 1e-6]
    return {"steps": len(diffs) - 1, "max diff, 20 steps": f"{max(diffs[:21]):.1e}", "max diff": f"{max(diffs):.1e}",
            "first > 1e-6": over[0] if over else None, "terminates at (gymnasium, envpool)": tuple(ends)}


def atari_same(env_id: str, steps: int) -> dict:
    """Sticky actions and no-ops off, the same actions, one episode: the steps whose newest frame differs, and those
    whose whole stack differs from the 4th on (the first stacks differ by design: drlmpi pads an episode's first
    stack with zeros, EnvPool repeats the first frame); at the episode's end drlmpi's `final_obs` against
    EnvPool's observation (EnvPool resets on the next step)."""
    from drlmpi.envs import make_vec

    d = make_vec(env_id, 1, seed=0, sticky=0.0, noop_max=0)
    e = envpool_env(env_id, 1, 0, sticky=0.0, noop_max=1)
    od, oe = d.reset(), e.reset()[0]
    rng = np.random.default_rng(1)
    newest, stacks, rewards = int(not np.array_equal(od[:, -1], oe[:, -1])), 0, 0
    for t in range(steps):
        a = rng.integers(0, d.action_space.n, 1)
        s = d.step(a)
        oe, re, te, tr, _ = e.step(a)
        od = s.final_obs if s.terminated[0] or s.truncated[0] else s.obs
        newest += int(not np.array_equal(od[:, -1], oe[:, -1]))
        stacks += int(t >= 2 and not np.array_equal(od, oe))
        rewards += int(s.reward[0] != re[0])
        if s.terminated[0] or s.truncated[0] or te[0] or tr[0]:
            break
    d.close()
    e.close()
    ends = (t if s.terminated[0] or s.truncated[0] else -1, t if te[0] or tr[0] else -1)
    return {"steps": t + 1, "newest frames that differ": newest, "stacks that differ from the 4th": stacks,
            "rewards that differ": rewards, "ends at (drlmpi, envpool)": ends}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", default="Hopper-v5,HalfCheetah-v5,Walker2d-v5,ALE/Pong-v5")
    ap.add_argument("--num-envs", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--steps", type=int, default=3000)
    a = ap.parse_args()
    import envpool
    import torch

    torch.set_num_threads(1)
    print(f"EnvPool {envpool.__version__} against drlmpi's envs, {machine()}, on core(s) "
          f"{sorted(os.sched_getaffinity(0))}, {a.num_envs} envs")
    for env_id in a.envs.split(","):
        s = speed(env_id, a.num_envs, a.seconds)
        same = atari_same(env_id, a.steps) if env_id.startswith("ALE/") else mujoco_same(env_id, a.steps)
        print(f"  {env_id}: drlmpi {s['drlmpi']:,.0f} steps/s, EnvPool {s['envpool']:,.0f} "
              f"({s['envpool'] / s['drlmpi']:.2f}x); same: {same}", flush=True)


if __name__ == "__main__":
    main()
