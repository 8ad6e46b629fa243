"""Weights-plane benchmark: pulling weights from the node window against a plain memcpy of the same bytes.

Launches `mpiexec -n 2`: rank 0 publishes a vector of --params float32 (default 1.69M, the Nature CNN),
rank 1 times `NodeWeights.read` into its own buffer and, in the same process, `np.copyto` between two
private buffers of the same size. Prints both and the ratio (memcpy time / pull time; 1.0 = as fast as memcpy).

Usage: python benchmarks/weights.py [--params 1690000]
"""

import argparse
import os
import subprocess
import sys

from _timing import best_of, machine


def rank_main(params: int) -> None:
    import numpy as np
    from mpi4py import MPI

    from drlmpi.comm.weights import NodeWeights
    from drlmpi.runtime import barrier

    world = MPI.COMM_WORLD
    w = NodeWeights(world, params)
    if world.rank == 0:
        w.publish(np.random.default_rng(0).random(params, dtype=np.float32), 1)
    barrier(world)
    if world.rank == 1:
        out = np.empty(params, np.float32)
        src, dst = np.random.default_rng(1).random(params, dtype=np.float32), np.empty(params, np.float32)
        pull = best_of(lambda: w.read(out), number=50)
        memcpy = best_of(lambda: np.copyto(dst, src), number=50)
        print(f"{pull} {memcpy}", flush=True)
    barrier(world)
    w.free()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=1_690_000)
    ap.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_main:
        return rank_main(args.params)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    out = subprocess.run([mpiexec, "-n", "2", sys.executable, __file__, "--rank-main", "--params", str(args.params)],
                         capture_output=True, text=True, timeout=600, check=True).stdout
    pull, memcpy = map(float, out.split())
    mb = args.params * 4 / 1e6
    print(f"weights pull on a node, {args.params} float32 ({mb:.1f} MB); {machine()}")
    print(f"memcpy (np.copyto)     {memcpy * 1e3:7.3f} ms  {mb / 1e3 / memcpy:6.1f} GB/s")
    print(f"NodeWeights.read       {pull * 1e3:7.3f} ms  {mb / 1e3 / pull:6.1f} GB/s")
    print(f"pull / memcpy speed: {memcpy / pull:.2f}x (target >= 0.8)")


if __name__ == "__main__":
    main()
