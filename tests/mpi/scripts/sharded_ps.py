"""Sharded PS: 2 ps shards (ranks 1 and 2), learners on the other ranks, pretend hosts optional.

Every learner sends K identical gradients; each shard must apply each exactly once: its final slice equals
the optimizer applied (learners * K) times serially, and every rank reads that whole vector from its node window.
"""

import sys
import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.ps import isend_gradient, isend_stop, serve_shard
from drlmpi.comm.weights import NodeWeights, WeightsPush
from drlmpi.ops.optim import OPTIMIZERS

world = MPI.COMM_WORLD
node = runtime.context.node_comm(world)
optimizer = sys.argv[1]
failures = []
N, K = 10_007, 25
ps_ranks = [1, 2]
learners = [r for r in range(world.size) if r not in ps_ranks]
window = NodeWeights(node, N, shards=2)
pushes = [WeightsPush(world, node, window, writer=r, shard=s) for s, r in enumerate(ps_ranks)]
init = np.linspace(-1, 1, N, dtype=np.float32)
grad = (np.sin(np.arange(N)) * 0.1).astype(np.float32)
runtime.barrier(world)

if world.rank in ps_ranks:
    s = ps_ranks.index(world.rank)
    lo, hi = window.bounds[s], window.bounds[s + 1]
    final, updates = serve_shard(world, pushes[s], init[lo:hi], len(learners), optimizer, lr=0.01)
    if updates != K * len(learners):
        failures.append(f"shard {s}: {updates} updates, expected {K * len(learners)}")
else:
    for _ in range(K):
        reqs = isend_gradient(world, grad, ps_ranks, window.bounds)
        runtime.wait_all(reqs)
        time.sleep(0.001)
    isend_stop(world, ps_ranks)
runtime.barrier(world)

expected = init.copy()
state = np.zeros_like(expected)
for _ in range(K * len(learners)):
    OPTIMIZERS[optimizer](expected, grad, state, 0.01)
out = np.empty(N, np.float32)
deadline = time.monotonic() + 20
while window.read(out) < K * len(learners) and time.monotonic() < deadline:
    time.sleep(0.01)
if not np.array_equal(out, expected):
    failures.append(f"rank {world.rank}: assembled vector differs (max diff {np.abs(out - expected).max()})")
runtime.barrier(world)
for p in pushes:
    p.close()
runtime.barrier(world)
window.free()
report(failures)
