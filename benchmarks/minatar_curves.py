"""MinAtar learning curves: drlmpi's algorithms with their MinAtar presets beside a single-process peer
(stable-baselines3's DQN and PPO, the `bench` extra) on the same games, frames and cores, one run at a time.

Every run writes a run directory under --out: drlmpi's own, and the peer's in the same format (config.json with
its algorithm, metrics.csv with time, env_steps, env_frames and recent_return, the mean of the last 100 training
episodes, logged every 10 s), so `drlmpi report --seeds DIR/*` draws them all, seeds shaded. At the end a markdown
table: per game and algorithm, the final recent return (mean +- std over seeds) at the frames run, the greedy
evaluation's where drlmpi logged it, the return each run had reached at the peer's wall time, and the wall time.

The peers play the same envs (drlmpi.envs.make_one: sticky actions 0.1, channel-first grids, the 27,000-step cap)
through the same network (the MinAtar paper's: a 3x3 convolution of 16 channels, then 128 units) with the MinAtar
paper's DQN settings (replay 100K, batch 32, target every 1,000 steps, 5,000 steps before learning, epsilon 1 ->
0.1 over the first 100K frames, one update a step; Adam at 2.5e-4) and a PPO with cleanrl's Atari settings
(8 envs, 128 steps, 4 epochs, 4 minibatches, clip 0.1, lr 2.5e-4 annealed).

Usage: python benchmarks/minatar_curves.py --algos apex,impala,sb3-dqn --games Breakout,SpaceInvaders --seeds 0,1,2
                                    --frames 1000000 --out runs/minatar
"""

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from collections import deque
from pathlib import Path

import numpy as np
from _timing import machine

BIN = os.path.dirname(sys.executable)
RANKS = {"dqn": 1, "apex": 4, "gorila": 4, "r2d2": 4, "a2c": 4, "a3c": 4, "impala": 4, "ga3c": 4, "seed": 4, "ppo": 4,
         "appo": 4}
LOG_EVERY = 10.0


def drlmpi_run(algo: str, env_id: str, seed: int, frames: int, run_dir: Path) -> None:
    cmd = [os.path.join(BIN, "mpiexec"), "-n", str(RANKS[algo]), os.path.join(BIN, "drlmpi"), "--algo", algo,
           "--env", env_id, "--seed", str(seed), "--total-env-steps", str(frames), "--run-dir", str(run_dir)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")


def minatar_extractor():
    """The MinAtar paper's network as an SB3 features extractor (drlmpi.nets.MinAtarCNN)."""
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    from drlmpi.nets import MinAtarCNN

    class MinAtar(BaseFeaturesExtractor):
        def __init__(self, observation_space):
            super().__init__(observation_space, features_dim=128)
            self.cnn = MinAtarCNN(observation_space.shape)

        def forward(self, obs):
            return self.cnn(obs)

    return MinAtar


def sb3_run(algo: str, env_id: str, seed: int, frames: int, run_dir: Path) -> None:
    """Train SB3's DQN or PPO (one process, one torch thread) and log in drlmpi's metrics format."""
    import torch
    from stable_baselines3 import DQN, PPO
    from stable_baselines3.common.env_util import make_vec_env

    from drlmpi.envs import check_env_id, make_one

    torch.set_num_threads(1)
    check_env_id(env_id)  # (registers MinAtar)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": algo, "env": env_id, "seed": seed,
                                                     "total_env_steps": frames}))
    policy_kwargs = {"features_extractor_class": minatar_extractor(), "net_arch": []}
    if algo == "sb3-dqn":
        model = DQN("MlpPolicy", make_vec_env(lambda: make_one(env_id), n_envs=1, seed=seed), learning_rate=2.5e-4,
                    buffer_size=100_000, learning_starts=5_000, batch_size=32, gamma=0.99, train_freq=1,
                    target_update_interval=1_000, exploration_fraction=100_000 / frames,
                    exploration_final_eps=0.1, policy_kwargs=policy_kwargs, seed=seed, device="cpu")
    else:
        model = PPO("MlpPolicy", make_vec_env(lambda: make_one(env_id), n_envs=8, seed=seed),
                    learning_rate=lambda f: 2.5e-4 * f, n_steps=128, batch_size=256, n_epochs=4, gamma=0.99,
                    gae_lambda=0.95, clip_range=0.1, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5,
                    policy_kwargs={**policy_kwargs, "net_arch": {"pi": [], "vf": []}}, seed=seed, device="cpu")
    model.learn(frames, callback=log_callback(run_dir))


def log_callback(run_dir: Path):
    """An SB3 callback writing drlmpi's metrics.csv (time, env_steps, env_frames, recent_return: the mean of the
    last 100 training episodes' raw returns) every LOG_EVERY seconds and at the end."""
    from stable_baselines3.common.callbacks import BaseCallback

    class Log(BaseCallback):
        def _on_training_start(self):
            self.t0 = self.last = time.monotonic()
            self.returns = deque(maxlen=100)
            self.f = open(run_dir / "metrics.csv", "w", newline="")  # noqa: SIM115 - closed at the end
            self.w = csv.writer(self.f)
            self.w.writerow(["time", "env_steps", "env_frames", "recent_return"])

        def _on_step(self):  # (make_vec_env's Monitor reports each episode's raw return, even under VecNormalize)
            self.returns.extend(info["episode"]["r"] for info in self.locals["infos"] if "episode" in info)
            if time.monotonic() - self.last >= LOG_EVERY:
                self.row()
            return True

        def row(self):
            self.last = time.monotonic()
            ret = float(np.mean(self.returns)) if self.returns else float("nan")
            self.w.writerow([f"{self.last - self.t0:.3f}", self.num_timesteps, self.num_timesteps, ret])
            self.f.flush()

        def _on_training_end(self):
            self.row()
            self.f.close()

    return Log()


def curve(run_dir: Path) -> dict:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) if r.get(k) not in (None, "") else np.nan for r in rows]) for k in rows[0]}


def at_time(c: dict, seconds: float) -> float:
    """The recent return of the last row at or before `seconds` of wall time (NaN if none)."""
    i = np.searchsorted(c["time"], seconds, side="right") - 1
    return float(c["recent_return"][i]) if i >= 0 else float("nan")


def table(runs: dict, frames: int) -> str:
    """Markdown: game, algorithm, final recent return mean +- std over seeds, greedy, at the peers' wall time."""
    peer_time = {}
    for (algo, game), dirs in runs.items():
        if algo.startswith("sb3"):
            peer_time[game] = min(peer_time.get(game, np.inf), min(curve(d)["time"][-1] for d in dirs))
    lines = [f"MinAtar, {frames:,} frames, {machine()}", "",
             "| game | algorithm | seeds | final return | greedy (eval_return) | return at the fastest peer's wall "
             "time | wall time (s) |", "|---|---|---|---|---|---|---|"]
    for (algo, game), dirs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cs = [curve(d) for d in dirs]
        final = [c["recent_return"][-1] for c in cs]
        greedy = [c["eval_return"][np.isfinite(c["eval_return"])][-1] for c in cs
                  if "eval_return" in c and np.isfinite(c["eval_return"]).any()]
        at_peer = [at_time(c, peer_time[game]) for c in cs] if game in peer_time else []
        fmt = lambda xs: f"{np.mean(xs):.1f} ± {np.std(xs):.1f}" if xs else "-"  # noqa: E731
        lines.append(f"| {game} | {algo} | {len(cs)} | {fmt(final)} | {fmt(greedy)} | {fmt(at_peer)} | "
                     f"{np.mean([c['time'][-1] for c in cs]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algos", default="apex,impala,sb3-dqn")
    ap.add_argument("--games", default="Breakout")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--out", default="runs/minatar")
    a = ap.parse_args()
    runs = run_grid(a.games.split(","), a.algos.split(","), a.seeds, a.frames, Path(a.out),
                    lambda game: f"MinAtar/{game}-v1", sb3_run)
    print(table(runs, a.frames))


def run_grid(names: list[str], algos: list[str], seeds: str, steps: int, out: Path, env_of, peer_run) -> dict:
    """Every (name, algo, seed) run, one at a time, into out/<algo>-<name>-<seed> (drlmpi_run, or peer_run for an
    `sb3-` algo); a run with a `finished` marker is skipped, any other redone. Returns {(algo, name): [run dirs]}."""
    runs: dict = {}
    for name in names:
        for algo in algos:
            for seed in (int(s) for s in seeds.split(",")):
                run_dir = out / f"{algo}-{name}-{seed}"
                if not (run_dir / "finished").exists():
                    shutil.rmtree(run_dir, ignore_errors=True)
                    t0 = time.monotonic()
                    (peer_run if algo.startswith("sb3") else drlmpi_run)(algo, env_of(name), seed, steps, run_dir)
                    (run_dir / "finished").write_text(f"{time.monotonic() - t0:.0f} s\n")
                    print(f"{algo} {name} seed {seed}: {time.monotonic() - t0:.0f} s", flush=True)
                runs.setdefault((algo, name), []).append(run_dir)
    return runs


if __name__ == "__main__":
    main()
