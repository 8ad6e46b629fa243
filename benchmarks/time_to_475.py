"""Time to a greedy return of 475 on CartPole-v1: DQN (1 rank), Ape-X and GORILA (4 ranks), on this machine.

Each run trains with a checkpoint every `--every` seconds; afterwards each checkpoint, in order, is
evaluated greedily over 20 episodes (`drlmpi.evaluate`, the code behind `drlmpi eval`). Time-to-475 is
the training wall time (from the checkpoint's counters: seconds since the learner started) and env
steps of the first checkpoint whose mean return is >= 475; "-" if none reached it. Only one run
trains at a time, so runs do not share the CPU.

Usage: python benchmarks/time_to_475.py [--algos dqn,apex,gorila] [--seeds 0,1,2] [--every 10]
"""

import argparse
import glob
import os
import subprocess
import sys
import tempfile

from _timing import machine

from drlmpi import checkpoint
from drlmpi.evaluate import evaluate

BIN = os.path.dirname(sys.executable)
RUNS = {"dqn": (1, 100_000), "apex": (4, 150_000), "gorila": (4, 150_000)}  # ranks, env steps (the learning tests)


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
    ap.add_argument("--algos", default="dqn,apex,gorila")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--every", type=float, default=10.0)
    a = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for algo in a.algos.split(","):
            ranks, steps = RUNS[algo]
            for seed in (int(s) for s in a.seeds.split(",")):
                run_dir = os.path.join(d, f"{algo}-{seed}")
                cmd = [os.path.join(BIN, "mpiexec"), "-n", str(ranks), os.path.join(BIN, "drlmpi"), "--algo", algo,
                       "--env", "CartPole-v1", "--total-env-steps", str(steps), "--seed", str(seed),
                       "--run-dir", run_dir, "--set", f"checkpoint_every={a.every}"]
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
                if r.returncode:
                    sys.exit(f"{algo} seed {seed} failed:\n{r.stdout}\n{r.stderr}")
                hit = first_reach(run_dir)
                final = evaluate(sorted(glob.glob(os.path.join(run_dir, "checkpoints", "ckpt-*.h5")))[-1], 20)
                rows.append((algo, ranks, seed, hit, final["mean_return"]))
                print(f"{algo} seed {seed}: {hit}, final {final['mean_return']:.1f}", flush=True)
    print(f"time to a 20-episode greedy mean >= 475, CartPole-v1, {machine()}, checkpoints every {a.every:g} s")
    print(f"{'algo':<8}{'ranks':>6}{'seed':>6}{'seconds':>10}{'env steps':>11}{'return':>8}{'final':>8}")
    for algo, ranks, seed, hit, final in rows:
        sec, steps, ret = (f"{hit[0]:.0f}", f"{hit[1]:,}", f"{hit[2]:.1f}") if hit else ("-", "-", "-")
        print(f"{algo:<8}{ranks:>6}{seed:>6}{sec:>10}{steps:>11}{ret:>8}{final:>8.1f}")


if __name__ == "__main__":
    main()
