"""Frames/s beside RLlib on images: drlmpi's IMPALA, APPO and SEED RL against RLlib's IMPALA and APPO with the same
number of processes on the same cores, on a MinAtar game and on Pong (acting and learning together, CPU), one job
at a time.

drlmpi: `mpiexec -n R drlmpi --algo A --env E --seed 0 --total-env-steps N` with the env's preset (its network:
the MinAtar paper's, or the Nature CNN on Atari); frames/s = env steps / training seconds (the `done:` line), every
step of which its learner trained on (the actors wait for free unroll slots). RLlib: benchmarks/rllib_peer.py
(`--rllib-python`, a Python with the `rllib` extra) for --seconds of training, R - 1 env runners and the learner in
the driver, the same networks in RLlib's terms; frames/s = env steps its runners sampled / training seconds. Prints a
markdown table.

Usage: python benchmarks/peer_throughput.py [--envs MinAtar/Breakout-v1,ALE/Pong-v5]
                                            [--algos impala,appo,seed,rllib-impala,rllib-appo] [--ranks 4]
                                            [--seconds 60] [--rllib-python PATH] [--rllib-envs 1]
"""

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

from _timing import machine

BIN = os.path.dirname(sys.executable)
STEPS = {"MinAtar/": 1_000_000, "ALE/": 30_000}  # a drlmpi job of about a minute on 2 cores (IMPALA)
DONE = re.compile(r"done: (\d+) env steps, (\d+) updates in ([\d.]+) s")


def drlmpi_run(algo: str, env_id: str, ranks: int) -> dict:
    steps = next(n for prefix, n in STEPS.items() if env_id.startswith(prefix))
    with tempfile.TemporaryDirectory() as run_dir:
        cmd = [os.path.join(BIN, "mpiexec"), "-n", str(ranks), os.path.join(BIN, "drlmpi"), "--algo", algo,
               "--env", env_id, "--seed", "0", "--total-env-steps", str(steps), "--run-dir", run_dir]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    m = DONE.search(r.stdout)
    if r.returncode or not m:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    n, updates, seconds = int(m[1]), int(m[2]), float(m[3])
    return {"steps": n, "seconds": seconds, "frames_per_s": n / seconds, "updates": updates}


def rllib_run(python: str, algo: str, env_id: str, ranks: int, seconds: float, envs: int) -> dict:
    cmd = [python, os.path.join(os.path.dirname(__file__), "rllib_peer.py"), "--algo", algo.removeprefix("rllib-"),
           "--env", env_id, "--ranks", str(ranks), "--max-seconds", str(seconds), "--envs-per-runner", str(envs)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode or not lines:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", default="MinAtar/Breakout-v1,ALE/Pong-v5")
    ap.add_argument("--algos", default="impala,appo,seed,rllib-impala,rllib-appo")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rllib-python", default="python")
    ap.add_argument("--rllib-envs", type=int, default=1, help="envs per RLlib env runner (RLlib's default: 1)")
    a = ap.parse_args()
    rows = []
    for env_id in a.envs.split(","):
        for algo in a.algos.split(","):
            rllib = algo.startswith("rllib-")
            out = (rllib_run(a.rllib_python, algo, env_id, a.ranks, a.seconds, a.rllib_envs) if rllib else
                   drlmpi_run(algo, env_id, a.ranks))
            print(f"{env_id} {algo}: {json.dumps(out)}", flush=True)
            rows.append((env_id, algo, out))
    print(f"\n{a.ranks} processes, {machine()}\n")
    print("| env | framework and algorithm | env steps | seconds | frames/s |\n|---|---|---|---|---|")
    for env_id, algo, out in rows:
        peer = f"RLlib {algo.removeprefix('rllib-').upper()}, {a.rllib_envs} env(s) a runner"
        name = peer if algo.startswith("rllib-") else f"drlmpi {algo}"
        print(f"| {env_id} | {name} | {out['steps']:,} | {out['seconds']:.0f} | {out['frames_per_s']:,.0f} |")


if __name__ == "__main__":
    main()
