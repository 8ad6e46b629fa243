"""Runtime checks on every rank; failures are reduced across ranks and rank 0 exits non-zero on any."""

import os
import time

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime

world = MPI.COMM_WORLD
failures = []


def check(cond, what):
    if not cond:
        failures.append(f"rank {world.rank}: {what}")


spec = runtime.RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=0 if world.size == 2 else 1)
rt = runtime.start(spec, "test", seed=7)
n = world.size

# the same layout on every rank; roles in order
layouts = world.allgather(rt.layout.roles)
check(all(x == layouts[0] for x in layouts), "layout differs between ranks")
check(rt.layout.roles[0] == "learner" and rt.layout.roles[1] == "replay", f"role order {rt.layout.roles}")
check(rt.role_comm.size == rt.layout.roles.count(rt.role), "role communicator size")

# node groups: pretend hosts when DRLMPI_RANKS_PER_NODE is set
per_node = int(os.environ.get("DRLMPI_RANKS_PER_NODE", "0"))
if per_node:
    check(rt.node.size == min(per_node, n - (world.rank // per_node) * per_node), f"node size {rt.node.size}")
    n_leaders = (n + per_node - 1) // per_node
    check(len(set(rt.layout.hosts)) == n_leaders, f"hosts {rt.layout.hosts}")
else:
    check(rt.node.size == n, "one real host")
    n_leaders = 1
check((rt.leaders is not None) == (rt.node.rank == 0), "leader communicator membership")
check(world.allreduce(1 if rt.leaders is not None else 0) == n_leaders, "number of node leaders")

# seeds: distinct per rank, reproducible for the same seed and rank
draws = world.allgather(float(rt.gen.random()))  # the first child: the rank's main generator
check(len(set(draws)) == n, "ranks drew the same random numbers")
again = np.random.default_rng(np.random.SeedSequence(7).spawn(n)[world.rank].spawn(1)[0]).random()
check(again == draws[world.rank], "seed not reproducible from (seed, rank)")

# polite waits: a ring exchange of buffers, wait_any, probe, and a timeout that fires
right, left = (world.rank + 1) % n, (world.rank - 1) % n
out = np.full(1000, world.rank, dtype=np.float64)
inp = np.empty(1000)
reqs = [world.Irecv(inp, source=left, tag=1), world.Isend(out, dest=right, tag=1)]
runtime.wait_all(reqs, timeout=30)
check(np.all(inp == left), "ring exchange payload")
req = world.Irecv(inp, source=left, tag=2)
world.Isend(out, dest=right, tag=2).Free()
idx, _ = runtime.wait_any([req], timeout=30)
check(idx == 0, "wait_any index")
if world.rank == 0:
    world.Send(out, dest=1, tag=3)
if world.rank == 1:
    st = runtime.probe(world, source=0, tag=3, timeout=30)
    check(st.Get_count(MPI.DOUBLE) == 1000, "probe count")
    world.Recv(inp, source=0, tag=3)
t0 = time.monotonic()
try:
    runtime.wait(world.Irecv(inp, source=left, tag=99), timeout=0.3, what="a message that never comes")
    check(False, "wait did not time out")
except TimeoutError as e:
    check("never comes" in str(e) and time.monotonic() - t0 < 5, "timeout message and duration")
runtime.barrier(world, timeout=30)

report(failures)
