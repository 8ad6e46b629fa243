"""Cross-node weight push (run with DRLMPI_RANKS_PER_NODE for pretend hosts): every node sees every version.

Part 1: one writer (rank 1, not a node leader) pushes versions 1..V of constant vectors (value == version), each
with the progress version / V, which every node reads with the last version.
Part 2: two shards, written by ranks 0 and size-1, each pushing its slice.
Every rank polls its node window until the last version arrives, checking slices are never torn.
"""

import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.weights import NodeWeights, WeightsPush

world = MPI.COMM_WORLD
node = runtime.context.node_comm(world)
failures = []
N, V = 100_003, 30


def follow(window, last_version, out, label):
    """Poll until every shard shows last_version; each read slice must be constant and equal its shard's version."""
    deadline = time.monotonic() + 20
    seen = 0
    while time.monotonic() < deadline:
        version = window.read(out)  # smallest version among the slices copied
        for s in range(window.shards):
            lo, hi = window.bounds[s], window.bounds[s + 1]
            sl = out[lo:hi]
            if not (sl == sl[0]).all():
                failures.append(f"rank {world.rank} {label}: torn slice {s}")
                return
        seen += 1
        if version == last_version:
            if not (out == last_version).all():
                failures.append(f"rank {world.rank} {label}: version {last_version}, values {out.min()}..{out.max()}")
            if window.progress != last_version / V:
                failures.append(f"rank {world.rank} {label}: progress {window.progress} with version {last_version}")
            return seen
        time.sleep(0.001)
    failures.append(f"rank {world.rank} {label}: never saw version {last_version}, at {window.versions()}")


out = np.empty(N, np.float32)
# part 1
w = NodeWeights(node, N)
push = WeightsPush(world, node, w, writer=1)
runtime.barrier(world)
if world.rank == 1:
    for v in range(1, V + 1):
        push.publish(np.full(N, v, np.float32), v, v / V)
        time.sleep(0.01)
follow(w, V, out, "single writer")
runtime.barrier(world)
push.close()
runtime.barrier(world)

# part 2: two shards
w2 = NodeWeights(node, N, shards=2)
writers = (0, world.size - 1)
pushes = [WeightsPush(world, node, w2, writer=writers[s], shard=s) for s in range(2)]
runtime.barrier(world)
for s, r in enumerate(writers):
    if world.rank == r:
        lo, hi = w2.bounds[s], w2.bounds[s + 1]
        for v in range(1, V + 1):
            pushes[s].publish(np.full(hi - lo, v, np.float32), v, v / V)
follow(w2, V, out, "two shards")
runtime.barrier(world)
for p in pushes:
    p.close()
runtime.barrier(world)
w.free()
w2.free()

report(failures)
