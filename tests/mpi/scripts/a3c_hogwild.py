"""A3C's lock-free update: every rank applies STEPS gradients to one shared window at once with
`a3c.shared_rmsprop_step`, the step each A3C worker takes, with no lock.

The shared statistic is frozen (alpha = 1, g = 1, eps = 0), so every update is exactly -lr * grad = -1 on every
coordinate and the expected end is -STEPS * ranks everywhere. Each rank, like a worker, copies the weights,
"computes" for a while, then writes: an update is *interleaved* when another rank's update landed between its
copy and its write (the window's atomic counter moved by more than one). Dense read-modify-writes may collide,
so a few updates may be lost per coordinate; Hogwild! allows that, not more: at least half must land, none may
land twice, the counter must count every update, and interleaving must have happened (or nothing was tested).
"""

import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.algos.a3c import shared_rmsprop_step
from drlmpi.comm.weights import NodeWeights

world = MPI.COMM_WORLD
failures = []
N, STEPS = 50_000, 300
node = runtime.context.node_comm(world)
w, g = NodeWeights(node, N), NodeWeights(node, N)
if node.rank == 0:
    w.publish(np.zeros(N, np.float32), 0)
    g.weights[:] = 1.0
runtime.barrier(world)
rng = np.random.default_rng(world.rank)
local, grad = np.empty(N, np.float32), np.ones(N, np.float32)
interleaved = 0
for _ in range(STEPS):
    before = w.version
    np.copyto(local, w.weights)  # what a worker acts and computes its gradient on
    time.sleep(rng.random() * 2e-4)
    after = shared_rmsprop_step(w, g, grad, lr=1.0, alpha=1.0, eps=0.0)
    interleaved += after - before > 1
runtime.barrier(world)
final = w.weights.copy()
expected = STEPS * world.size
landed = -final  # updates that landed on each coordinate
counts = world.gather(interleaved, root=0)
if landed.max() > expected or landed.min() < 0.5 * expected:
    failures.append(f"rank {world.rank}: updates landed per coordinate {landed.min()}..{landed.max()} of {expected}")
if w.version != expected:
    failures.append(f"rank {world.rank}: the counter says {w.version} updates, {expected} were made")
if not np.array_equal(g.weights, np.ones(N, np.float32)):
    failures.append(f"rank {world.rank}: the frozen statistic moved")
if world.rank == 0:
    total = sum(counts)
    if total == 0:
        failures.append("no update was interleaved: the test did not exercise concurrent writers")
    print(f"A3C Hogwild!: {world.size} workers x {STEPS} updates; {total} interleaved "
          f"({100 * total / expected:.1f}%); {100 * landed.mean() / expected:.2f}% of the coordinate updates landed "
          f"(min {100 * landed.min() / expected:.2f}%)", flush=True)
runtime.barrier(world)
report(failures)
