"""Time to a greedy return of 475 on CartPole-v1: drlmpi's algorithms with their defaults (the learning tests'
runs) and the peers, stable-baselines3's `A2C` and `PPO` (the `bench` extra), on this machine.

Each drlmpi run trains with a checkpoint every `--every` seconds; afterwards each checkpoint, in order, is
evaluated greedily over 20 episodes (`drlmpi.evaluate`, the code behind `drlmpi eval`). Time-to-475 is
the training wall time (from the checkpoint's counters: seconds since the learner started) and env
steps of the first checkpoint whose mean return is >= 475; "-" if none reached it. sb3-a2c and sb3-ppo are SB3's
A2C and PPO with the RL Zoo's CartPole-v1 settings (A2C: 8 envs, ent_coef 0, 500K steps; PPO: 8 envs x 32 steps,
batch 256, 20 epochs, gamma 0.98, GAE 0.8, lr and clip annealed from 1e-3 and 0.2, ent_coef 0, 100K steps), one
process each (SB3 trains in one): the policy is copied every `--every` seconds of training and each copy
evaluated the same way after training (the deterministic action, 20 episodes by
`drlmpi.evaluate.episode_returns`). rllib-impala and rllib-appo are RLlib's (benchmarks/rllib_peer.py, run by
`--rllib-python`, a Python with the `rllib` extra) with as many processes as drlmpi's 4 ranks: 3 env runners and the
learner in the driver, RLlib's tuned CartPole settings, copies evaluated the same way. Only one run trains at a
time, so runs do not share the CPU. frames/s: env steps over training seconds, the whole run.

Usage: python benchmarks/time_to_475.py [--algos dqn,apex,gorila,a2c,a3c,impala,ppo,appo,sb3-a2c,sb3-ppo]
                                        [--seeds 0,1,2] [--every 10] [--rllib-python PATH]
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile

import numpy as np
from _timing import machine

from drlmpi import checkpoint
from drlmpi.evaluate import evaluate

BIN = os.path.dirname(sys.executable)
RUNS = {"dqn": (1, 100_000), "apex": (4, 150_000), "gorila": (4, 150_000), "a2c": (4, 1_000_000),
        "a3c": (4, 1_000_000), "impala": (4, 2_000_000), "ga3c": (4, 1_000_000), "seed": (4, 2_000_000),
        "ppo": (4, 150_000), "appo": (4, 1_000_000), "sb3-a2c": (1, 500_000), "sb3-ppo": (1, 100_000),
        "rllib-impala": (4, 2_000_000), "rllib-appo": (4, 2_000_000)}
# ranks, env steps (defaults)


def sb3_model(algo: str, seed: int):
    """SB3's A2C or PPO with the RL Zoo's CartPole-v1 settings, on CPU."""
    from stable_baselines3 import A2C, PPO
    from stable_baselines3.common.env_util import make_vec_env

    env = make_vec_env("CartPole-v1", n_envs=8, seed=seed)
    if algo == "sb3-a2c":
        return A2C("MlpPolicy", env, ent_coef=0.0, seed=seed, device="cpu")
    return PPO("MlpPolicy", env, n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
               learning_rate=lambda f: 1e-3 * f, clip_range=lambda f: 0.2 * f, seed=seed, device="cpu")


def rllib_run(python: str, algo: str, ranks: int, seed: int, steps: int, every: float
              ) -> tuple[tuple[float, int, float] | None, float, float]:
    """RLlib's IMPALA or APPO (benchmarks/rllib_peer.py): (first copy reaching 475, final return, frames/s)."""
    import json

    r = subprocess.run([python, os.path.join(os.path.dirname(__file__), "rllib_peer.py"), "--algo",
                        algo.removeprefix("rllib-"), "--ranks", str(ranks), "--seed", str(seed), "--every", str(every),
                        "--max-steps", str(steps)], capture_output=True, text=True, timeout=1200)
    if r.returncode:
        sys.exit(f"{algo} seed {seed} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    return (tuple(out["hit"]) if out["hit"] else None), out["final"], out["frames_per_s"]


def sb3_run(algo: str, seed: int, steps: int, every: float) -> tuple[tuple[float, int, float] | None, float, float]:
    """Train SB3's A2C or PPO, copying its policy every `every` s; (first copy reaching 475, final return,
    frames/s)."""
    import copy
    import time

    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from drlmpi.envs import make_vec
    from drlmpi.evaluate import episode_returns

    torch.set_num_threads(1)
    copies = []

    class Every(BaseCallback):
        def _on_training_start(self):
            self.t0 = self.last = time.monotonic()

        def _on_step(self):
            if time.monotonic() - self.last >= every:
                self.last = time.monotonic()
                copies.append((self.last - self.t0, self.num_timesteps, copy.deepcopy(self.model.policy.state_dict())))
            return True

    model = sb3_model(algo, seed)
    cb = Every()
    model.learn(steps, callback=cb)
    copies.append((time.monotonic() - cb.t0, model.num_timesteps, copy.deepcopy(model.policy.state_dict())))

    def greedy(state):
        model.policy.load_state_dict(state)
        return float(np.mean(episode_returns(make_vec("CartPole-v1", 8, seed=12345),
                                             lambda obs: model.predict(obs, deterministic=True)[0], 20)))

    hit = None
    for sec, n, state in copies:
        if (ret := greedy(state)) >= 475:
            hit = (sec, n, ret)
            break
    return hit, greedy(copies[-1][2]), copies[-1][1] / copies[-1][0]


def first_reach(run_dir: str, bar: float = 475.0) -> tuple[float, int, float] | None:
    """(wall seconds, env steps, mean return) of the first checkpoint reaching the bar, or None."""
    for path in sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5"))):
        result = evaluate(path, 20)
        if result["mean_return"] >= bar:
            counters = checkpoint.load(path).counters
            return float(counters["wall_time"]), int(counters["env_steps"]), result["mean_return"]
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algos", default="dqn,apex,gorila,a2c,a3c,impala,ppo,appo,sb3-a2c,sb3-ppo")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--every", type=float, default=10.0)
    ap.add_argument("--set", action="append", default=[], help="key=value for every drlmpi run (not the defaults)")
    ap.add_argument("--rllib-python", default="python", help="a Python with the rllib extra (for rllib-*)")
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for algo in a.algos.split(","):
            ranks, steps = RUNS[algo]
            for seed in (int(s) for s in a.seeds.split(",")):
                if algo.startswith(("sb3-", "rllib-")):
                    hit, final, fps = (sb3_run(algo, seed, steps, a.every) if algo.startswith("sb3-") else
                                       rllib_run(a.rllib_python, algo, ranks, seed, steps, a.every))
                    rows.append((algo, ranks, seed, hit, final, fps))
                    print(f"{algo} seed {seed}: {hit}, final {final:.1f}, {fps:.0f} frames/s", flush=True)
                    continue
                run_dir = os.path.join(d, f"{algo}-{seed}")
                cmd = [os.path.join(BIN, "mpiexec"), "-n", str(ranks), os.path.join(BIN, "drlmpi"), "--algo", algo,
                       "--env", "CartPole-v1", "--total-env-steps", str(steps), "--seed", str(seed),
                       "--run-dir", run_dir, "--set", f"checkpoint_every={a.every}",
                       "--set", "keep_checkpoints=1000000",  # (every checkpoint is evaluated afterwards)
                       *[x for s in a.set for x in ("--set", s)]]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
                if r.returncode:
                    sys.exit(f"{algo} seed {seed} failed:\n{r.stdout}\n{r.stderr}")
                hit = first_reach(run_dir)
                last = sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5")))[-1]
                final, counters = evaluate(last, 20), checkpoint.load(last).counters
                fps = counters["env_steps"] / counters["wall_time"]
                rows.append((algo, ranks, seed, hit, final["mean_return"], fps))
                print(f"{algo} seed {seed}: {hit}, final {final['mean_return']:.1f}, {fps:.0f} frames/s", flush=True)
    print(f"time to a 20-episode greedy mean >= 475, CartPole-v1, {machine()}, checkpoints every {a.every:g} s")
    print(f"{'algo':<13}{'ranks':>6}{'seed':>6}{'seconds':>10}{'env steps':>11}{'return':>8}{'final':>8}"
          f"{'frames/s':>10}")
    for algo, ranks, seed, hit, final, fps in rows:
        sec, steps, ret = (f"{hit[0]:.0f}", f"{hit[1]:,}", f"{hit[2]:.1f}") if hit else ("-", "-", "-")
        print(f"{algo:<13}{ranks:>6}{seed:>6}{sec:>10}{steps:>11}{ret:>8}{final:>8.1f}{fps:>10,.0f}")


if __name__ == "__main__":
    main()
