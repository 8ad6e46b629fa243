"""Cross-node weight push: drlmpi's WeightsPush (Ibcast + relay into the node window) against pickled `send`.

Launches `mpiexec -n 2` with DRLMPI_RANKS_PER_NODE=1 (two pretend hosts). Rank 0 sends K versions of a
--params float32 vector; rank 1 counts the time until its side holds version K in a usable buffer:
  push:   WeightsPush.push on rank 0; rank 1 polls its node window until the version reaches K;
  pickle: comm.send(vec) on rank 0; rank 1 comm.recv()s each (the object path: pickled);
  buffer: comm.Send / comm.Recv of the same numpy buffer (reference: the raw MPI transfer);
  put:    one-sided Put into rank 1's window (passive target, Lock/Put/Unlock), rank 1 polling politely
          in Python for the last version: the alternative to broadcasting that was measured and not chosen.
Prints ms per version and the speed-up of push over pickle.

Usage: python benchmarks/weights_push.py [--params 1690000] [--versions 30]
"""

import argparse
import os
import subprocess
import sys
import time

from _timing import machine


def busy_python(seconds: float) -> None:
    """Pure-Python work holding the GIL, no MPI calls: a node leader stepping its envs."""
    end = time.perf_counter() + seconds
    x = 0
    while time.perf_counter() < end:
        x += 1


def busy_native(seconds: float) -> None:
    """Native work that releases the GIL, no MPI calls: a learner inside a long torch op (matrix products)."""
    import numpy as np

    a = np.ones((256, 256), np.float32)
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        a = (a @ a) * np.float32(1e-3)


BUSY = {"idle": lambda: time.sleep(0.0001), "python": lambda: busy_python(0.001), "native": lambda: busy_native(0.02)}


def rank_main(params: int, versions: int, busy: str) -> None:
    import numpy as np
    from mpi4py import MPI

    from drlmpi.comm.weights import NodeWeights, WeightsPush
    from drlmpi.runtime import barrier, context

    world = MPI.COMM_WORLD
    node = context.node_comm(world)
    vec = np.random.default_rng(0).random(params, dtype=np.float32)
    w = NodeWeights(node, params)
    push = WeightsPush(world, node, w, writer=0)
    out = np.empty(params, np.float32)
    landing = np.zeros(params + 16, np.float32)  # [weights | version as float]
    rma = MPI.Win.Create(landing if world.rank == 1 else None, comm=world)
    results = {}
    for mode in ("push", "pickle", "buffer", "put", "push", "pickle", "buffer", "put"):
        barrier(world)
        t0 = time.perf_counter()
        if world.rank == 0:
            for v in range(1, versions + 1):
                if mode == "push":
                    push.publish(vec, v + 1000 * len(results))
                elif mode == "put":
                    rma.Lock(1, MPI.LOCK_EXCLUSIVE)
                    rma.Put(vec, 1)
                    rma.Put(np.full(16, v + 1000 * len(results), np.float32), 1, target=params * 4)
                    rma.Unlock(1)
                elif mode == "pickle":
                    world.send(vec, dest=1, tag=5)
                else:
                    world.Send(vec, dest=1, tag=6)
        else:
            if mode == "push":
                target = versions + 1000 * len(results)
                while w.version < target:  # the relay thread publishes; reading the version is no MPI call
                    BUSY[busy]()
                w.read(out)
            elif mode == "put":
                want = versions + 1000 * len(results)
                while landing[params] < want:
                    rma.Lock(1, MPI.LOCK_SHARED)  # an MPI call per check: progress for the Puts, and visibility
                    rma.Unlock(1)
                    BUSY[busy]()
                np.copyto(out, landing[:params])
            else:
                for _ in range(versions):
                    if mode == "pickle":
                        out = world.recv(source=0, tag=5)
                    else:
                        world.Recv(out, source=0, tag=6)
        barrier(world)
        dt = (time.perf_counter() - t0) / versions
        results[mode] = min(dt, results.get(mode, float("inf")))
    barrier(world)
    push.close()
    rma.Free()
    if world.rank == 1:
        print(results["push"], results["pickle"], results["buffer"], results["put"], flush=True)
    w.free()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", type=int, default=1_690_000)
    ap.add_argument("--versions", type=int, default=30)
    ap.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--busy", default="idle", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_main:
        return rank_main(args.params, args.versions, args.busy)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    print(f"cross-node weight push, {args.params} float32 ({args.params * 4 / 1e6:.1f} MB), 2 pretend hosts "
          f"on one machine; {machine()}")
    what = {"idle": "idle, polling every 0.1 ms", "python": "busy in Python between checks (1 ms slices)",
            "native": "busy in native code that releases the GIL (20 ms slices of matrix products)"}
    for busy in ("idle", "python", "native"):
        out = subprocess.run(
            [mpiexec, "-n", "2", sys.executable, __file__, "--rank-main", "--params", str(args.params),
             "--versions", str(args.versions), "--busy", busy],
            capture_output=True, text=True, timeout=600, check=True,
            env={**os.environ, "DRLMPI_RANKS_PER_NODE": "1"},
        ).stdout
        push, pickle, buffer, put = map(float, out.split())
        print(f"receiving leader {what[busy]}")
        print(f"  WeightsPush (Ibcast + relay)  {push * 1e3:7.2f} ms per version")
        print(f"  pickled send/recv             {pickle * 1e3:7.2f} ms per version")
        print(f"  buffer Send/Recv (reference)  {buffer * 1e3:7.2f} ms per version")
        print(f"  one-sided Put (not chosen)    {put * 1e3:7.2f} ms per version")
        print(f"  push speed-up over pickle: {pickle / push:.2f}x; over Put: {put / push:.2f}x; "
              f"push / raw buffer transfer: {buffer / push:.2f}x")


if __name__ == "__main__":
    main()
