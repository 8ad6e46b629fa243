"""Replay-plane benchmark: insert and sample through MPI against the same shard in-process and against pickle.

Atari-sized n-step transitions (obs and next_obs uint8 [4, 84, 84], action, return, discount: 56 KB each).
Launches `mpiexec -n 2`: rank 0 is the shard, rank 1 the client. In one run, per transition:
  in-process: PrioritizedReplay.add of the same blocks / .sample of the same batch size, on the client;
  MPI:        ReplayWriter -> replay.shard.serve / ReplaySampler.sample: on one node the bulk data goes
              through the node's shared segments and MPI carries doorbells (set DRLMPI_RANKS_PER_NODE=1
              to measure buffer messages between pretend hosts instead);
  pickle:     the same exchanges with mpi4py's pickling send/recv of dicts of arrays.
Every contender first fills the storage once (first-touch page faults excluded: steady state).
Prints transitions/s and ratios (target: MPI >= 0.5x in-process, >= 5x pickle).

Usage: python benchmarks/replay.py [--block 64] [--blocks 32] [--batch 256] [--batches 64]
"""

import argparse
import os
import subprocess
import sys
import time

from _timing import machine

FRAME = (4, 84, 84)


def fields():
    import numpy as np

    return {"obs": (FRAME, np.uint8), "next_obs": (FRAME, np.uint8), "action": ((), np.int64),
            "ret": ((), np.float32), "discount": ((), np.float32)}


def make_block(rows, rng):
    import numpy as np

    return {"obs": rng.integers(0, 255, (rows, *FRAME), dtype=np.uint8),
            "next_obs": rng.integers(0, 255, (rows, *FRAME), dtype=np.uint8),
            "action": rng.integers(0, 6, rows), "ret": rng.random(rows, dtype=np.float32),
            "discount": np.full(rows, 0.97, np.float32)}


def pickled_shard(comm, storage):
    """The same service as replay.shard.serve, with pickled messages (for comparison only)."""
    from mpi4py import MPI

    while True:
        msg = comm.recv(source=MPI.ANY_SOURCE)
        if msg[0] == "add":
            storage.add(msg[1], msg[2])
        elif msg[0] == "sample":
            data, idx, w = storage.sample(msg[1], msg[2])
            comm.send((data, idx, storage.gen[idx], w), dest=1)
        elif msg[0] == "stats":
            comm.send(storage.size, dest=1)
        else:
            return


def rank_main(args) -> None:
    import numpy as np
    from mpi4py import MPI

    from drlmpi.replay import PrioritizedReplay
    from drlmpi.replay.client import ReplaySampler, ReplayWriter
    from drlmpi.replay.shard import node_segments, serve
    from drlmpi.runtime import barrier, context

    world = MPI.COMM_WORLD
    node = context.node_comm(world)
    outbox, inbox = node_segments(world, node, fields(), args.block, args.batch, writer=world.rank == 1,
                                  learner=world.rank == 1)
    comm = world.Dup()
    capacity = args.block * args.blocks
    rng = np.random.default_rng(0)
    if comm.rank == 0:
        serve(comm, PrioritizedReplay(capacity, fields(), 0.6, rng), fields(), args.block, args.batch, 2, outbox,
              inbox)
        barrier(comm)
        pickled_shard(comm, PrioritizedReplay(capacity, fields(), 0.6, rng))
        barrier(comm)
        return
    blocks = [make_block(args.block, rng) for _ in range(8)]
    prios = [rng.random(args.block) + 0.1 for _ in range(8)]
    n_ins = args.block * args.blocks
    # in-process
    local = PrioritizedReplay(capacity, fields(), 0.6, rng)
    for i in range(args.blocks):  # warm-up: touch every page once, as a long run has
        local.add(blocks[i % 8], prios[i % 8])
    t0 = time.perf_counter()
    for i in range(args.blocks):
        local.add(blocks[i % 8], prios[i % 8])
    ins_local = (time.perf_counter() - t0) / n_ins
    t0 = time.perf_counter()
    for _ in range(args.batches):
        local.sample(args.batch, 0.4)
    smp_local = (time.perf_counter() - t0) / (args.batches * args.batch)
    # MPI, buffer messages
    writer = ReplayWriter(comm, [0], fields(), args.block, outbox)
    sampler = ReplaySampler(comm, [0], fields(), args.batch, rng, inbox)
    for i in range(args.blocks):  # warm-up
        writer.add(blocks[i % 8], prios[i % 8])
    writer.drain()
    t0 = time.perf_counter()
    for i in range(args.blocks):
        writer.add(blocks[i % 8], prios[i % 8])
    writer.drain()  # the shard has stored every block
    ins_mpi = (time.perf_counter() - t0) / n_ins
    t0 = time.perf_counter()
    for _ in range(args.batches):
        sampler.sample(args.batch, 0.4)
    smp_mpi = (time.perf_counter() - t0) / (args.batches * args.batch)
    writer.close()
    sampler.close()
    barrier(comm)
    # MPI, pickled
    for i in range(args.blocks):  # warm-up
        comm.send(("add", blocks[i % 8], prios[i % 8]), dest=0)
    comm.send(("stats",), dest=0)
    comm.recv(source=0)
    t0 = time.perf_counter()
    for i in range(args.blocks):
        comm.send(("add", blocks[i % 8], prios[i % 8]), dest=0)
    comm.send(("stats",), dest=0)
    comm.recv(source=0)
    ins_pickle = (time.perf_counter() - t0) / n_ins
    t0 = time.perf_counter()
    for _ in range(args.batches):
        comm.send(("stats",), dest=0)  # the same two round trips as the global sampler
        comm.recv(source=0)
        comm.send(("sample", args.batch, 0.4), dest=0)
        comm.recv(source=0)
    smp_pickle = (time.perf_counter() - t0) / (args.batches * args.batch)
    comm.send(("stop",), dest=0)
    barrier(comm)
    print(ins_local, ins_mpi, ins_pickle, smp_local, smp_mpi, smp_pickle, flush=True)


def pickle_mode(inband: bool) -> None:
    """mpi4py >= 4 pickles with protocol 5 and sends arrays >= 256 KB out of band (no copy into the pickle);
    in-band is the classic pickle, every byte serialized."""
    from mpi4py import MPI

    if inband:
        MPI.pickle.THRESHOLD = 1 << 62


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=64)
    ap.add_argument("--blocks", type=int, default=32)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--batches", type=int, default=64)
    ap.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inband", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.rank_main:
        pickle_mode(args.inband)
        return rank_main(args)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    runs = {}
    for inband in (False, True):
        cmd = [mpiexec, "-n", "2", sys.executable, __file__, "--rank-main", "--block", str(args.block),
               "--blocks", str(args.blocks), "--batch", str(args.batch), "--batches", str(args.batches)]
        out = subprocess.run(cmd + (["--inband"] if inband else []), capture_output=True, text=True, timeout=600,
                             check=True).stdout
        runs[inband] = list(map(float, out.split()))
    il, im, ip, sl, sm, sp = runs[False]
    ipb, spb = runs[True][2], runs[True][5]
    print(f"replay plane, Atari-sized transitions (56 KB), blocks of {args.block}, batches of {args.batch}, "
          f"1 shard + 1 client; {machine()}")
    print(f"{'':<26} {'insert tr/s':>12} {'sample tr/s':>12}")
    for name, i, s in (("in-process", il, sl), ("MPI, drlmpi (no pickle)", im, sm),
                       ("MPI, pickle (out-of-band)", ip, sp), ("MPI, pickle (in-band)", ipb, spb)):
        print(f"{name:<26} {1 / i:>12,.0f} {1 / s:>12,.0f}")
    print(f"drlmpi / in-process: insert {il / im:.2f}x, sample {sl / sm:.2f}x (target >= 0.5)")
    print(f"drlmpi / pickle out-of-band (mpi4py default): insert {ip / im:.2f}x, sample {sp / sm:.2f}x")
    print(f"drlmpi / pickle in-band: insert {ipb / im:.2f}x, sample {spb / sm:.2f}x (target >= 5)")


if __name__ == "__main__":
    main()
