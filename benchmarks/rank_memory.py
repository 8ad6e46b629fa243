"""Memory per rank, by role: each algorithm's `mpiexec -n 4` job on CartPole-v1 (its default layout and settings,
a short run), the peak RSS of each role (the largest of its ranks) and its mean proportional set size at the end
(private anon + share of files + share of shared memory), as drlmpi prints them when a job ends.

What a rank costs before it does anything decides how many ranks fit on a node.

Usage: python benchmarks/rank_memory.py --algos apex,impala,seed,ga3c,a3c,ppo --steps 5000
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

from _timing import machine

BIN = os.path.dirname(sys.executable)
PEAK = re.compile(r"(\w+) (\d+)(?: \(max of (\d+), mean \d+\))?")
PSS = re.compile(r"(\w+) (\d+) = (\d+) \+ (\d+) \+ (\d+)")


def job(algo: str, steps: int, ranks: int) -> dict[str, dict]:
    """{role: {"ranks", "peak", "pss", "anon", "file", "shmem"}} (MiB) from one job's closing lines."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [os.path.join(BIN, "mpiexec"), "-n", str(ranks), os.path.join(BIN, "drlmpi"), "--algo", algo, "--env",
               "CartPole-v1", "--total-env-steps", str(steps), "--run-dir", os.path.join(d, "run")]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    peak_line = next(x for x in r.stdout.splitlines() if x.startswith("peak memory per rank"))
    pss_line = next(x for x in r.stdout.splitlines() if x.startswith("memory at the end"))
    roles = {role: {"ranks": int(n or 1), "peak": float(p)} for role, p, n in PEAK.findall(peak_line.split(": ")[1])}
    for role, pss, anon, file, shmem in PSS.findall(pss_line.split("): ")[1]):
        roles[role].update(pss=float(pss), anon=float(anon), file=float(file), shmem=float(shmem))
    return roles


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--algos", default="apex,impala,seed,ga3c,a3c,ppo")
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--ranks", type=int, default=4)
    a = ap.parse_args()
    print(f"Memory per rank, `mpiexec -n {a.ranks}` on CartPole-v1, {a.steps:,} env steps, {machine()}\n")
    print("| algo | role | ranks | peak RSS (MiB, the largest) | PSS at the end (MiB, mean) = anon + file + shmem |")
    print("|---|---|---|---|---|")
    for algo in a.algos.split(","):
        for role, m in job(algo, a.steps, a.ranks).items():
            print(f"| {algo} | {role} | {m['ranks']} | {m['peak']:.0f} | {m['pss']:.0f} = {m['anon']:.0f} + "
                  f"{m['file']:.0f} + {m['shmem']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
