"""Gradient allreduce between learners: MPI against torch.distributed gloo, on this host's CPUs.

Launches `mpiexec -n 2`. For each vector size (Ape-X CartPole MLP, Nature CNN) it times, in one run:
  memcpy        np.copyto of the same bytes (the physical floor of moving them once);
  mpi-blocking  comm.Allreduce(IN_PLACE) on a numpy buffer;
  mpi-polite    comm.Iallreduce + drlmpi's polite wait (sleeps between the algorithm's rounds);
  mpi-meet      a polite Ibarrier, then the blocking Allreduce (what GradAllreduce's `mpi` backend does:
                an idle learner sleeps, and once all are there the transfer runs at full speed);
  gloo          torch.distributed.all_reduce with the gloo backend;
  grad-mpi / grad-gloo  a whole GradAllreduce call (pack .grad, reduce, unpack the mean) per backend.
Prints ms per call and each against gloo.

Usage: python benchmarks/allreduce.py [--sizes 68000,1690000] [--calls 200]
"""

import argparse
import os
import subprocess
import sys
import time

from _timing import machine


def timed(fn, calls: int, barrier) -> float:
    for _ in range(5):
        fn()
    barrier()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def rank_main(sizes: list[int], calls: int) -> None:
    import numpy as np
    import torch
    import torch.distributed as dist
    from mpi4py import MPI

    from drlmpi.comm.allreduce import GradAllreduce, init_torch_group
    from drlmpi.runtime import barrier, wait

    torch.set_num_threads(1)
    world = MPI.COMM_WORLD
    init_torch_group(world, "gloo")

    def sync():
        barrier(world)

    rows = []
    for n in sizes:
        a = np.random.default_rng(world.rank).random(n, dtype=np.float32)
        b = np.empty_like(a)
        t = torch.from_numpy(a.copy())
        r = {
            "memcpy": timed(lambda a=a, b=b: np.copyto(b, a), calls, sync),
            "mpi-blocking": timed(lambda b=b: world.Allreduce(MPI.IN_PLACE, b), calls, sync),
            "mpi-polite": timed(lambda b=b: wait(world.Iallreduce(MPI.IN_PLACE, b)), calls, sync),
            "mpi-meet": timed(lambda b=b: (wait(world.Ibarrier()), world.Allreduce(MPI.IN_PLACE, b)), calls, sync),
            "gloo": timed(lambda t=t: dist.all_reduce(t), calls, sync),
        }
        param = torch.nn.Parameter(torch.zeros(n))
        param.grad = torch.from_numpy(a.copy())
        for backend in ("mpi", "gloo"):
            ar = GradAllreduce(world, [param], backend)
            r[f"grad-{backend}"] = timed(ar, calls, sync)
        times = np.array(list(r.values()))
        world.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)  # the slower rank's time
        rows.append((n, dict(zip(r, times))))
    if world.rank == 0:
        print(f"gradient allreduce, 2 ranks, {machine()}, {calls} calls each")
        for n, r in rows:
            print(f"  {n:>9,} floats ({4 * n / 1e6:.2f} MB)")
            for k, v in r.items():
                print(f"    {k:<13} {v * 1e3:8.3f} ms   gloo / this = {r['gloo'] / v:5.2f}x")
    dist.destroy_process_group()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="68000,1690000")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--rank", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    if a.rank:
        rank_main(sizes, a.calls)
        return
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [mpiexec, "-n", "2", sys.executable, __file__, "--rank", "--sizes", a.sizes, "--calls", str(a.calls)]
    sys.exit(subprocess.run(cmd, timeout=900).returncode)


if __name__ == "__main__":
    main()
