"""Ape-X ranks against their physical limits, each as a ratio from one run of this script.

actor:   an actor rank's frames/s inside a real `mpiexec -n 3 drlmpi --algo apex` job (learner, replay shard,
         one actor; learning_starts above the run's steps so the learner only listens and the actor runs
         free), read from the actor's own reports (metrics.csv actor_fps_mean, median over rows), against
         the same vector of envs and the same network stepped raw in this process (greedy forward +
         epsilon + env.step, nothing else).
learner: the learner's updates/s in a real job whose replay shard was filled first (learning_starts) and
         whose replay ratio is so high that the actor stays paused (the learner never waits for data),
         read from metrics.csv updates_per_s (median over rows after the fill), against a bare torch loop
         on preloaded batches of the same size: the same network, double-DQN loss, Adam, clipping; timed
         before and after the job (mean of the two), since this VM's speed drifts by 10-30% over minutes.
Both sides use one torch thread (what an Ape-X rank gets on this host with 3 ranks on 2 cores).

Usage: python benchmarks/apex.py [--env CartPole-v1] [--num-envs 4] [--batch 128] [--seconds 20]
"""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from _timing import machine

from drlmpi.algos import apex
from drlmpi.envs import is_atari, make_vec, spaces
from drlmpi.nets import greedy
from drlmpi.ops.qlearning import double_dqn_td, weighted_huber

BIN = os.path.dirname(sys.executable)


def raw_actor_fps(env_id: str, num_envs: int, seconds: float) -> float:
    cfg = apex.Config(env=env_id, num_envs=num_envs)
    env = make_vec(env_id, num_envs, seed=0)
    net = apex.build_net(cfg, env.observation_space, env.action_space).requires_grad_(False)
    rng = np.random.default_rng(0)
    obs = env.reset()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        actions = greedy(net, obs, torch.device("cpu"))
        explore = rng.random(num_envs) < 0.1
        actions[explore] = rng.integers(0, env.action_space.n, explore.sum())
        obs = env.step(actions).obs
        steps += num_envs
    env.close()
    return steps * (4 if is_atari(env_id) else 1) / (time.perf_counter() - t0)


def bare_updates_per_s(env_id: str, batch: int, seconds: float) -> float:
    cfg = apex.Config(env=env_id)
    obs_space, act_space = spaces(env_id)
    net = apex.build_net(cfg, obs_space, act_space)
    target = apex.build_net(cfg, obs_space, act_space).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1e-5)
    rng = np.random.default_rng(0)

    def fake(shape, dtype):
        if np.issubdtype(dtype, np.integer):
            return rng.integers(0, 255, (batch, *shape)).astype(dtype)
        return rng.normal(size=(batch, *shape)).astype(dtype)

    batches = [{"obs": torch.as_tensor(fake(obs_space.shape, obs_space.dtype)),
                "next_obs": torch.as_tensor(fake(obs_space.shape, obs_space.dtype)),
                "action": torch.as_tensor(rng.integers(0, act_space.n, batch)),
                "ret": torch.as_tensor(rng.normal(size=batch).astype(np.float32)),
                "discount": torch.full((batch,), 0.97), "w": torch.ones(batch)} for _ in range(8)]
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = batches[n % len(batches)]
        td = double_dqn_td(net, target, b["obs"], b["action"], b["ret"], b["next_obs"], b["discount"])
        loss = weighted_huber(td, b["w"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        opt.step()
        n += 1
    return n / (time.perf_counter() - t0)


def job(run_dir: str, env_id: str, steps: int, sets: list[str], timeout: float) -> list[dict]:
    cmd = [os.path.join(BIN, "mpiexec"), "-n", "3", os.path.join(BIN, "drlmpi"), "--algo", "apex", "--env", env_id,
           "--total-env-steps", str(steps), "--run-dir", run_dir, "--set", "log_every=1"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        sys.exit(f"job failed:\n{r.stdout}\n{r.stderr}")
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=20.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    frames = 4 if is_atari(a.env) else 1
    raw = raw_actor_fps(a.env, a.num_envs, a.seconds)
    with tempfile.TemporaryDirectory() as d:
        steps = int(raw / frames * a.seconds)  # about `seconds` of free running
        rows = job(os.path.join(d, "actor"), a.env, steps,
                   [f"num_envs={a.num_envs}", f"learning_starts={10 * steps}"], timeout=60 + 4 * a.seconds)
        actor = float(np.median([float(r["actor_fps_mean"]) for r in rows[1:-1]]))
        bare_before = bare_updates_per_s(a.env, a.batch, a.seconds / 2)
        fill = 20_000 if not is_atari(a.env) else 5_000
        # the actor runs free for the steps its n-step builder holds back (apex.run_actor's in_flight), then
        # pauses; with 64 updates per env step after that, the run lasts about `seconds`
        free = a.num_envs * (apex.Config().n_step + apex.ACTOR_BATCH)
        extra = free + int(bare_before * a.seconds / 64)
        rows = job(os.path.join(d, "learner"), a.env, fill + extra,
                   [f"num_envs={a.num_envs}", f"batch_size={a.batch}", f"learning_starts={fill}",
                    "replay_ratio=64"], timeout=300 + 4 * a.seconds)
        trained = [float(r["updates_per_s"]) for r in rows if int(r["updates"]) > 0][1:-1]
        learner = float(np.median(trained))
        bare_after = bare_updates_per_s(a.env, a.batch, a.seconds / 2)  # this VM's speed drifts: bracket the job
        bare = (bare_before + bare_after) / 2
    print(f"Ape-X ranks vs raw, {a.env}, {a.num_envs} envs per actor, batch {a.batch}, 1 torch thread, {machine()}")
    print(f"  actor   {actor:9.0f} frames/s in the job   raw envs + net {raw:9.0f} frames/s   ratio {actor / raw:.2f}")
    print(f"  learner {learner:9.1f} updates/s in the job  bare torch loop {bare:8.1f} updates/s  "
          f"ratio {learner / bare:.2f}  (bare {bare_before:.1f} before the job, {bare_after:.1f} after)")


if __name__ == "__main__":
    main()
