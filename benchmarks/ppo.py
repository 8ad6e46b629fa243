"""PPO (DD-PPO) on N ranks against its physical limit, and its preemption threshold against a straggler.

  raw          every rank steps the same envs (`num_envs` of CartPole-v1) with the same network (a forward and a
               sampled action a step) and no learning: frames/s summed over the ranks, the most acting can give
  job          the PPO job with its defaults: frames/s, and the gradient allreduce's share of the update (the
               time in GradAllreduce calls over the time in `learn`, each rank's, the mean over the ranks)
  preempt-on   the job on slow:SlowCartPole-v1 (tests/envs/slow.py) where rank 1's env sleeps twice the raw
  preempt-off  acting step (its steps take 3x the others'), with preempt_fraction 0.6 (DD-PPO's) and 1 (off):
               frames/s each, and the rounds in which a worker was preempted

Each part is one `mpiexec -n N` job, one after the other. Usage: python benchmarks/ppo.py [--ranks 4]
[--steps 200000] [--parts raw,job,preempt-on,preempt-off]
"""

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _timing import machine

BIN = os.path.dirname(sys.executable)
ROOT = Path(__file__).resolve().parents[1]


def raw(seconds: float) -> dict:
    """This rank's frames/s and seconds per vector step, acting only (make_vec + forward + sample)."""
    import torch

    from drlmpi import config
    from drlmpi.actor_critic import build_net
    from drlmpi.algos import ppo
    from drlmpi.envs import make_vec
    from drlmpi.ops import policy as pi

    torch.set_num_threads(1)
    cfg = config.build(ppo.Config, env="CartPole-v1")
    env = make_vec(cfg.env, cfg.num_envs, seed=0)
    net = build_net(cfg, env.observation_space, env.action_space)
    obs, steps, t0 = env.reset(), 0, time.perf_counter()
    with torch.no_grad():
        while time.perf_counter() - t0 < seconds:
            head, _, _ = net(torch.as_tensor(obs)[None])
            obs = env.step(pi.sample(head[0]).numpy()).obs
            steps += 1
    wall = time.perf_counter() - t0
    return {"frames_per_s": steps * cfg.num_envs / wall, "step_s": wall / steps}


def job(part: str, run_dir: str, steps: int, slow_s: float) -> dict:
    """Run the PPO job in this process (every rank); this rank's seconds in learn and in the allreduce."""
    from mpi4py import MPI

    from drlmpi import algos, config, runtime
    from drlmpi.algos import ppo
    from drlmpi.comm import allreduce

    spent = {"learn": 0.0, "allreduce": 0.0}

    def timed(fn, key):
        def wrapper(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                spent[key] += time.perf_counter() - t0
        return wrapper

    ppo.learn = timed(ppo.learn, "learn")
    allreduce.GradAllreduce.__call__ = timed(allreduce.GradAllreduce.__call__, "allreduce")
    env_id, sets = "CartPole-v1", [f"total_env_steps={steps}", "log_every=1", "eval_episodes=0"]
    if part.startswith("preempt"):
        sys.path.insert(0, str(ROOT / "tests" / "envs"))
        os.environ.update({"DRLMPI_TEST_SLOW_RANKS": "1", "DRLMPI_TEST_SLOW_S": str(slow_s)})
        env_id = "slow:SlowCartPole-v1"
        sets.append(f"preempt_fraction={0.6 if part == 'preempt-on' else 1.0}")
    cfg = config.build(ppo.Config, None, sets, env=env_id, run_dir=run_dir)
    rt = runtime.start(ppo.LAYOUT, "ppo", cfg.seed, MPI.COMM_WORLD)
    runtime.install_thread_hook()
    try:
        algos.run(ppo, rt, cfg)
    except BaseException as e:  # noqa: BLE001
        runtime.report_and_abort(e)
    return spent


def worker(part: str, run_dir: str, steps: int, seconds: float, slow_s: float) -> None:
    """One rank of one part; rank 0 prints the part's JSON line."""
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    mine = raw(seconds) if part == "raw" else job(part, run_dir, steps, slow_s)
    every = world.gather(mine, root=0)
    if world.rank:
        return
    if part == "raw":
        out = {"frames_per_s": sum(m["frames_per_s"] for m in every), "step_s": float(np.mean([m["step_s"]
                                                                                             for m in every]))}
    else:
        with open(Path(run_dir) / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        out = {"frames_per_s": float(rows[-1]["env_steps"]) / float(rows[-1]["time"]),
               "allreduce_share": float(np.mean([m["allreduce"] / m["learn"] for m in every])),
               "rounds_preempted": sum(float(r["preempted"]) > 0 for r in rows), "rows": len(rows)}
    print("RESULT " + json.dumps(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--parts", default="raw,job,preempt-on,preempt-off")
    ap.add_argument("--worker", default="")
    ap.add_argument("--run-dir", default="")
    ap.add_argument("--slow-s", type=float, default=0.0)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker, a.run_dir, a.steps, a.seconds, a.slow_s)
        return
    results, slow_s = {}, 0.0
    with tempfile.TemporaryDirectory() as d:
        for part in a.parts.split(","):
            if part.startswith("preempt") and not slow_s:
                sys.exit("the preempt parts need the raw part first (the straggler sleeps twice its acting step)")
            cmd = [os.path.join(BIN, "mpiexec"), "-n", str(a.ranks), sys.executable, __file__, "--worker", part,
                   "--run-dir", os.path.join(d, part), "--steps", str(a.steps), "--seconds", str(a.seconds),
                   "--slow-s", str(slow_s)]
            r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
            line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
            if r.returncode or line is None:
                sys.exit(f"{part} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
            results[part] = json.loads(line[len("RESULT "):])
            if part == "raw":
                slow_s = 2 * results["raw"]["step_s"]  # rank 1's steps take 3x the raw acting step
            print(part, results[part], flush=True)
    print(f"PPO, {a.ranks} ranks, CartPole-v1, defaults, {a.steps:,} env steps a job, {machine()}")
    for part, res in results.items():
        print(f"{part:<12} " + ", ".join(f"{k} {v:,.3f}" if isinstance(v, float) else f"{k} {v}"
                                        for k, v in res.items()))
    if "raw" in results and "job" in results:
        print(f"job / raw frames/s: {results['job']['frames_per_s'] / results['raw']['frames_per_s']:.2f}")
    if "preempt-on" in results and "preempt-off" in results:
        print(f"preemption on / off frames/s: "
              f"{results['preempt-on']['frames_per_s'] / results['preempt-off']['frames_per_s']:.2f}")


if __name__ == "__main__":
    main()
