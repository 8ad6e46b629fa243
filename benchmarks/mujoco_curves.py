"""MuJoCo learning curves: drlmpi's PPO (4 ranks, its MuJoCo preset) beside stable-baselines3's PPO with the same
settings in one process (the `bench` and `mujoco` extras), on the same envs, env steps and cores, one run at a time.

The peer is SB3's `PPO` configured as cleanrl's ppo_continuous_action (and drlmpi's preset): 2,048 steps a round
(one env), 10 epochs of minibatches of 64, lr 3e-4 annealed to 0, gamma 0.99, GAE 0.95, clip 0.2 (the value's too),
no entropy bonus, separate 64x64 tanh policy and value networks with orthogonal initialisation and a
state-independent log std, observations and rewards normalised by running statistics (VecNormalize, clipped at 10).
Its metrics go to a run directory in drlmpi's format (benchmarks/minatar_curves.py), so `drlmpi report --seeds
DIR/*` draws them all. At the end a markdown table: per env and algorithm, the final training return (the mean of
the last 100 episodes; mean +- std over seeds), the return each run had at the peer's wall time, and the wall time.

Published, for the table beside these (cleanrl's docs/benchmark/ppo_continuous_action.md, Open RL Benchmark tag
pr-424: ppo_continuous_action on gymnasium's v4 envs, 1M steps, 3 seeds, the mean of each seed's last 100 training
episodes, mean +- sample std over seeds): HalfCheetah-v4 1442.64 +- 46.03, Walker2d-v4 2287.95 +- 571.78,
Hopper-v4 2382.86 +- 271.74 (an earlier v4 run of the same script: 2905.85 +- 1129.37, 2890.97 +- 231.40,
2051.80 +- 313.94; with 3 seeds the numbers move a lot).

Usage: python benchmarks/mujoco_curves.py --algos ppo,sb3-ppo --envs Hopper-v5,HalfCheetah-v5 --seeds 0,1,2
                                          --steps 1000000 --out runs/mujoco
"""

import argparse
from pathlib import Path

import numpy as np
from _timing import machine
from minatar_curves import at_time, curve, log_callback, run_grid


def sb3_run(algo: str, env_id: str, seed: int, steps: int, run_dir: Path) -> None:
    """Train SB3's PPO with cleanrl's MuJoCo settings (one process, one torch thread), logging drlmpi's metrics."""
    import json

    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps({"algo": algo, "env": env_id, "seed": seed,
                                                     "total_env_steps": steps}))
    env = VecNormalize(make_vec_env(env_id, n_envs=1, seed=seed), gamma=0.99, clip_obs=10.0, clip_reward=10.0)
    model = PPO("MlpPolicy", env, n_steps=2048, batch_size=64, n_epochs=10, learning_rate=lambda f: 3e-4 * f,
                gamma=0.99, gae_lambda=0.95, clip_range=0.2, clip_range_vf=0.2, ent_coef=0.0, vf_coef=0.5,
                max_grad_norm=0.5, policy_kwargs={"net_arch": {"pi": [64, 64], "vf": [64, 64]},
                                                  "activation_fn": torch.nn.Tanh},
                seed=seed, device="cpu")
    model.learn(steps, callback=log_callback(run_dir))


def table(runs: dict, steps: int) -> str:
    """Markdown: env, algorithm, final training return mean +- std over seeds, at the peer's wall time, wall time."""
    peer_time = {env: min(curve(d)["time"][-1] for d in dirs) for (algo, env), dirs in runs.items()
                 if algo.startswith("sb3")}
    lines = [f"MuJoCo, {steps:,} env steps, {machine()}", "",
             "| env | algorithm | seeds | final return | return at the peer's wall time | wall time (s) |",
             "|---|---|---|---|---|---|"]
    for (algo, env), dirs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        cs = [curve(d) for d in dirs]
        final = [c["recent_return"][-1] for c in cs]
        at_peer = [at_time(c, peer_time[env]) for c in cs] if env in peer_time else []
        fmt = lambda xs: f"{np.mean(xs):.0f} ± {np.std(xs):.0f}" if xs else "-"  # noqa: E731
        lines.append(f"| {env} | {algo} | {len(cs)} | {fmt(final)} | {fmt(at_peer)} | "
                     f"{np.mean([c['time'][-1] for c in cs]):.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algos", default="ppo,sb3-ppo")
    ap.add_argument("--envs", default="Hopper-v5,HalfCheetah-v5")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--out", default="runs/mujoco")
    a = ap.parse_args()
    runs = run_grid(a.envs.split(","), a.algos.split(","), a.seeds, a.steps, Path(a.out), lambda env: env, sb3_run)
    print(table(runs, a.steps))


if __name__ == "__main__":
    main()
