"""Ape-X ranks against their physical limits, each as a ratio from one run of this script.

actor:   an actor rank's frames/s inside a real `mpiexec -n 3 drlmpi --algo apex` job (learner, replay shard,
         one actor; learning_starts above the run's steps so the learner only listens and the actor runs
         free), read from the actor's own reports (metrics.csv actor_fps_mean, median over rows), against
         the same vector of envs and the actor's own policy stepped raw in this process (its Q-network's
         forward, in numpy on vector observations, + epsilon + env.step, nothing else).
learner: the learner's updates/s in a real job whose replay shard was filled first (learning_starts) and
         whose replay ratio is so high that the actor stays paused (the learner never waits for data),
         read from metrics.csv updates_per_s (median over rows after the fill), against a bare torch loop
         on preloaded batches of the same size: the same network, double-DQN loss, Adam, clipping.
This VM's speed drifts by 10-30% over minutes, so each rank runs `repeats` jobs, each bracketed by runs of its
limit (L J L J L J L); a job's ratio is against the mean of the limits just before and after it, and the
median ratio is reported. Both sides use one torch thread (what an Ape-X rank gets here: 3 ranks, 2 cores).

Usage: python benchmarks/apex.py [--env CartPole-v1] [--num-envs 4] [--batch 128] [--seconds 10] [--repeats 3]
                                [--parts actor,learner]
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

from drlmpi import value_config
from drlmpi.algos import apex
from drlmpi.envs import is_atari, make_vec, spaces
from drlmpi.nets import flat_params
from drlmpi.ops.qlearning import double_dqn_td, weighted_huber

BIN = os.path.dirname(sys.executable)


def raw_actor_fps(env_id: str, num_envs: int, seconds: float) -> float:
    """Env frames/s of the actor's own policy (value_config.transitions: numpy's Q-network on vector observations,
    torch's on images), epsilon 0.1, stepping its envs, nothing stored or sent."""
    cfg = apex.Config(env=env_id, num_envs=num_envs)
    env = make_vec(env_id, num_envs, seed=0)
    rows = value_config.transitions(cfg, env.observation_space, env.action_space)
    if rows.needs_net("actor"):
        rows.build(0)
    policy = rows.actor_policy()
    policy.load(flat_params(apex.build_net(cfg, env.observation_space, env.action_space)))
    rng = np.random.default_rng(0)
    obs = env.reset()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        actions, _ = policy.act(obs, 0.1, rng)
        obs = env.step(actions).obs
        steps += num_envs
    env.close()
    return steps * (4 if is_atari(env_id) else 1) / (time.perf_counter() - t0)


def bare_updates_per_s(env_id: str, batch: int, seconds: float, device: str = "cpu") -> float:
    cfg = apex.Config(env=env_id)
    obs_space, act_space = spaces(env_id)
    net = apex.build_net(cfg, obs_space, act_space).to(device)
    target = apex.build_net(cfg, obs_space, act_space).requires_grad_(False).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, eps=1e-5)
    rng = np.random.default_rng(0)

    def fake(shape, dtype):
        if np.issubdtype(dtype, np.integer):
            return rng.integers(0, 255, (batch, *shape)).astype(dtype)
        return rng.normal(size=(batch, *shape)).astype(dtype)

    batches = [{"obs": torch.as_tensor(fake(obs_space.shape, obs_space.dtype), device=device),
                "next_obs": torch.as_tensor(fake(obs_space.shape, obs_space.dtype), device=device),
                "action": torch.as_tensor(rng.integers(0, act_space.n, batch), device=device),
                "ret": torch.as_tensor(rng.normal(size=batch).astype(np.float32), device=device),
                "discount": torch.full((batch,), 0.97, device=device), "w": torch.ones(batch, device=device)}
               for _ in range(8)]

    def loss_of(n: int) -> torch.Tensor:
        b = batches[n % len(batches)]
        td = double_dqn_td(net, target, b["obs"], b["action"], b["ret"], b["next_obs"], b["discount"])
        return weighted_huber(td, b["w"])

    return bare_loop(loss_of, net, opt, cfg.max_grad_norm, seconds)


def bare_loop(loss_of, net, opt, max_grad_norm: float, seconds: float) -> float:
    """Updates/s of loss_of(n) -> loss, backward, clipping and an optimizer step, for `seconds`: the learner's limit."""
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        loss = loss_of(n)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), max_grad_norm)
        opt.step()
        n += 1
    if torch.cuda.is_available():
        torch.cuda.synchronize()  # (updates queued on a GPU count once they have run)
    return n / (time.perf_counter() - t0)


def job(run_dir: str, env_id: str, steps: int, sets: list[str], timeout: float, algo: str = "apex") -> list[dict]:
    """metrics.csv rows of `mpiexec -n 3 drlmpi --algo <algo>` (learner, replay shard, one actor)."""
    cmd = [os.path.join(BIN, "mpiexec"), "-n", "3", os.path.join(BIN, "drlmpi"), "--algo", algo, "--env", env_id,
           "--total-env-steps", str(steps), "--run-dir", run_dir, "--set", "log_every=1"]
    for s in sets:
        cmd += ["--set", s]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode:
        sys.exit(f"job failed:\n{r.stdout}\n{r.stderr}")
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def bracketed(limit, run, repeats: int) -> tuple[list[float], list[float], list[float]]:
    """Alternate limit() and run(last limit) as L J L J ... L: (limits, runs, ratios), ratio i = runs[i] over the
    mean of the limits just before and after it (this VM's speed drifts by 10-30% over minutes)."""
    limits, runs = [limit()], []
    for _ in range(repeats):
        runs.append(run(limits[-1]))
        limits.append(limit())
    return limits, runs, [r / ((lo + hi) / 2) for r, lo, hi in zip(runs, limits, limits[1:])]


def show(name: str, unit: str, limits: list[float], runs: list[float], ratios: list[float]) -> None:
    print(f"  {name:7s} ratio {np.median(ratios):.2f} (median of {len(ratios)}: "
          f"{', '.join(f'{r:.2f}' for r in ratios)})   in the job {', '.join(f'{r:.1f}' for r in runs)} {unit}   "
          f"limit {', '.join(f'{r:.1f}' for r in limits)} {unit}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--num-envs", type=int, default=4)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=10.0, help="length of each job's measured phase")
    ap.add_argument("--repeats", type=int, default=3, help="jobs per rank, each bracketed by limit runs")
    ap.add_argument("--parts", default="actor,learner")
    a = ap.parse_args()
    torch.set_num_threads(1)
    frames = 4 if is_atari(a.env) else 1
    with tempfile.TemporaryDirectory() as d:
        def limit_actor() -> float:
            return raw_actor_fps(a.env, a.num_envs, a.seconds / 2)

        def run_actor(raw: float) -> float:
            steps = int(raw / frames * a.seconds)  # about `seconds` of running
            rows = job(os.path.join(d, f"actor{len(os.listdir(d))}"), a.env, steps,
                       [f"num_envs={a.num_envs}", f"learning_starts={2 * steps}", f"buffer_size={2 * steps}"],
                       timeout=60 + 4 * a.seconds)
            return float(np.median([float(r["actor_fps_mean"]) for r in rows[1:-1]]))

        def limit_learner() -> float:
            return bare_updates_per_s(a.env, a.batch, a.seconds / 2)

        def run_learner(bare: float) -> float:
            fill = 20_000 if not is_atari(a.env) else 5_000
            # the actor runs free for the steps its n-step builder holds back (the throttle's slack), then
            # pauses; with 64 updates per env step after that, the run lasts about `seconds`
            cfg = apex.Config(num_envs=a.num_envs)
            free = value_config.throttle(cfg, 1, value_config.transitions(cfg, *spaces(a.env))).slack
            extra = free + int(bare * a.seconds / 64)
            rows = job(os.path.join(d, f"learner{len(os.listdir(d))}"), a.env, fill + extra,
                       [f"num_envs={a.num_envs}", f"batch_size={a.batch}", f"learning_starts={fill}",
                        "replay_ratio=64"], timeout=300 + 4 * a.seconds)
            trained = [float(r["updates_per_s"]) for r in rows if int(r["updates"]) > 0][1:-1]
            return float(np.median(trained))

        actor = bracketed(limit_actor, run_actor, a.repeats) if "actor" in a.parts else None
        learner = bracketed(limit_learner, run_learner, a.repeats) if "learner" in a.parts else None
    print(f"Ape-X ranks vs raw, {a.env}, {a.num_envs} envs per actor, batch {a.batch}, 1 torch thread, {machine()}")
    if actor:
        show("actor", "frames/s", *actor)
    if learner:
        show("learner", "updates/s", *learner)


if __name__ == "__main__":
    main()
