"""Idle-wait benchmark: does a rank waiting in drlmpi's wait primitive steal CPU from a computing rank?

One run, three measurements of the same single-threaded workload (a small torch MLP training loop):
  alone:    in this process, no other rank running;
  polite:   rank 0 of an 8-rank job while ranks 1..7 wait in drlmpi.runtime.barrier;
  blocking: rank 0 of an 8-rank job while ranks 1..7 wait in MPI's blocking Barrier (MPICH busy-polls).
Prints each time and the slowdown against `alone`.

Usage: python benchmarks/idle_wait.py [--ranks 8] [--iters 300]
"""

import argparse
import os
import subprocess
import sys
import time

from _timing import machine


def workload(iters: int) -> float:
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 64))
    opt = torch.optim.SGD(net.parameters(), lr=1e-3)
    x = torch.randn(128, 64)
    t0 = time.perf_counter()
    for _ in range(iters):
        opt.zero_grad()
        net(x).square().mean().backward()
        opt.step()
    return time.perf_counter() - t0


def rank_main(mode: str, iters: int) -> None:
    from mpi4py import MPI

    from drlmpi.runtime import barrier

    comm = MPI.COMM_WORLD
    barrier(comm)
    if comm.rank == 0:
        workload(iters // 10)  # warm-up
        print(f"{workload(iters):.6f}", flush=True)
    if mode == "polite":
        barrier(comm)
    else:
        comm.Barrier()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=8)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--rank-mode", choices=["polite", "blocking"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_mode:
        return rank_main(args.rank_mode, args.iters)
    workload(args.iters // 10)
    alone = min(workload(args.iters) for _ in range(3))
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    times = {}
    for mode in ("polite", "blocking"):
        runs = []
        for _ in range(3):
            out = subprocess.run(
                [mpiexec, "-n", str(args.ranks), sys.executable, __file__, "--rank-mode", mode,
                 "--iters", str(args.iters)],
                capture_output=True, text=True, timeout=600, check=True,
            ).stdout
            runs.append(float(out.split()[-1]))
        times[mode] = min(runs)
    print(f"idle wait, {args.ranks} ranks ({args.ranks - 1} waiting); {machine()}")
    print(f"alone     {alone * 1e3:8.1f} ms")
    for mode, t in times.items():
        print(f"{mode:<9} {t * 1e3:8.1f} ms   slowdown {t / alone:.2f}x")


if __name__ == "__main__":
    main()
