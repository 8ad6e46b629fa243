"""Node weights window: torn-read freedom under a concurrent writer, and Hogwild! updates from several ranks."""

import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.weights import NodeWeights

world = MPI.COMM_WORLD
failures = []
node = world  # one real host
N = 1 << 18
w = NodeWeights(node, N)

# 1) rank 0 publishes constant vectors v, v, ... (value == version); the others read concurrently. The writer
# pauses 50 us between publishes: a writer publishing back to back leaves a seqlock reader no consistent moment
# (on 2 cores, 5 runs in 15 saw fewer than 10 reads in 2 s); every learner publishes at intervals.
out = np.empty(N, np.float32)
if world.rank == 0:
    t_end = time.monotonic() + 2.0
    v = 0
    while time.monotonic() < t_end:
        v += 1
        w.publish(np.full(N, v, np.float32), v)
        time.sleep(50e-6)
    stop = np.array([v], np.int64)
else:
    reads = torn = 0
    last = 0
    t_end = time.monotonic() + 2.0
    while time.monotonic() < t_end:
        version = w.read(out)
        reads += 1
        if not (out[0] == out[-1] == version and (out == version).all()):
            torn += 1
        if version < last:
            failures.append(f"rank {world.rank}: version went back {last} -> {version}")
        last = version
    if torn:
        failures.append(f"rank {world.rank}: {torn} torn reads of {reads}")
    if reads < 10 or last < 2:
        failures.append(f"rank {world.rank}: too few reads ({reads}) or versions ({last}) to test anything")
runtime.barrier(world)

# 2) Hogwild!, sparse: every rank adds 1 to its own interleaved coordinates only: every update lands
if world.rank == 0:
    w.publish(np.zeros(N, np.float32), 0)
runtime.barrier(world)
mine = np.arange(world.rank, N, world.size)
ones = np.ones(len(mine), np.float32)
steps = 200
for _ in range(steps):
    w.hogwild_add(ones, idx=mine)
runtime.barrier(world)
final = np.empty(N, np.float32)
version = w.read(final)
if not (final == steps).all():
    failures.append(f"rank {world.rank}: lost sparse Hogwild updates: min {final.min()} max {final.max()}")
if version != steps * world.size:
    failures.append(f"rank {world.rank}: version {version}, expected {steps * world.size}")
runtime.barrier(world)

# 3) Hogwild!, dense: every rank adds 1 everywhere; collisions may drop some, most must land
if world.rank == 0:
    w.publish(np.zeros(N, np.float32), 0)
runtime.barrier(world)
dense = np.ones(N, np.float32)
for _ in range(steps):
    w.hogwild_add(dense)
runtime.barrier(world)
w.read(final)
expected = steps * world.size
if not (final.max() <= expected and final.mean() >= 0.5 * expected):
    failures.append(f"rank {world.rank}: dense Hogwild: mean {final.mean()} max {final.max()} of {expected}")
if world.rank == 0:
    print(f"dense Hogwild: {100 * final.mean() / expected:.1f}% of updates landed")
runtime.barrier(world)
w.free()

report(failures)
