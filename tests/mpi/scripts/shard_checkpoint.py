"""A replay shard keeps serving while a thread writes its checkpoint part (3 ranks: lead learner 0, shard 1, writer 2).

The shard's part write is slowed to WRITE_S seconds. While it runs, the learner samples and the writer inserts
more rows: every sample is answered within a fraction of WRITE_S and the checkpoint stays incomplete; then the
reply arrives, and the part holds exactly the rows stored when the request came (a consistent copy), with the
shard's RNG state of that moment. The final (LAST) request is answered after the clients' STOPs, as in a job.
"""

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import checkpoint, runtime
from drlmpi.comm.checkpoint import LAST, CheckpointClient, CheckpointCollector
from drlmpi.replay.plane import ReplayPlane, run_shard
from drlmpi.runtime.guard import report_and_abort
from drlmpi.runtime.wait import poll

sys.excepthook = lambda t, e, tb: report_and_abort(e)  # a failing rank ends the test at once
world = MPI.COMM_WORLD
assert world.size == 3, "run with 3 ranks"
FIELDS = {"id": ((), np.int64)}
WRITE_S = 3.0
GO = 99  # this test's own tag, on world
failures = []


def check(cond, what):
    if not cond:
        failures.append(f"rank {world.rank}: {what}")


def go(dest):
    world.Send(np.zeros(1), dest=dest, tag=GO)


def wait_go(source):
    runtime.probe(world, source, GO, timeout=60, what="the test's go")
    world.Recv(np.zeros(1), source=source, tag=GO)


control, rcomm = world.Dup(), world.Dup()
node = runtime.context.node_comm(world)
plane = ReplayPlane.create(rcomm, node, [1], FIELDS, 50, 64, writer=world.rank == 2, learner=world.rank == 0)
run_dir = world.bcast(tempfile.mkdtemp() if world.rank == 0 else None, root=0)

if world.rank == 1:
    real = checkpoint.save_part
    slowed = []

    def slow_save_part(*args):
        if not slowed:  # the first (periodic) part only
            slowed.append(time.sleep(WRITE_S))
        return real(*args)

    checkpoint.save_part = slow_save_part
    gen = np.random.default_rng(5)
    ckpt = CheckpointClient(control, 0, "replay-0", gen, requests=rcomm)
    run_shard(plane, 1000, 0.6, gen, clients=2, ckpt=ckpt, run_dir=run_dir)
elif world.rank == 2:
    writer = plane.writer()
    writer.add({"id": np.arange(500)}, np.ones(500))
    writer.drain()
    go(0)
    wait_go(0)  # the checkpoint was asked for: insert while the part is being written
    writer.add({"id": np.arange(500, 600)}, np.ones(100))
    writer.drain()
    go(0)
    writer.close()
else:
    collector = CheckpointCollector(control, {"replay-0": (1, rcomm)})
    sampler = plane.sampler(np.random.default_rng(0))
    wait_go(2)
    collector.request(1, 500, 0)
    sampler.stats()  # the request is in the shard's hands before this answer
    go(2)
    t0, slowest = time.monotonic(), 0.0
    while time.monotonic() - t0 < WRITE_S / 2:
        t = time.monotonic()
        b = sampler.sample(32, 0.4)
        slowest = max(slowest, time.monotonic() - t)
        collector.poll()
        check(not collector.complete(1), "the checkpoint answered before its part was written")
    check(slowest < WRITE_S / 4, f"a sample took {slowest:.2f} s while the part was written")
    wait_go(2)
    check(sampler.stats()[0].sum() == 600, "the rows inserted during the write are not stored")
    poll(lambda: collector.poll() or (True if collector.complete(1) else None), 30, "the reply")
    check(time.monotonic() - t0 >= WRITE_S * 0.9, "the reply came before the slowed write could end")
    reply = collector.take(1)["replay-0"]
    part = reply["parts"]["replay-0"]
    with checkpoint.open_verified(Path(run_dir) / "checkpoints" / part["file"], part["sha256"]) as f:
        ids = f["id"][()]
    check(np.array_equal(np.sort(ids), np.arange(500)), f"the part holds {len(ids)} rows, not the 500 of the request")
    collector.request(2, 600, LAST)
    sampler.close()
    poll(lambda: collector.poll() or (True if collector.complete(2) else None), 30, "the last reply")
    last = collector.take(2)["replay-0"]["parts"]["replay-0"]
    with checkpoint.open_verified(Path(run_dir) / "checkpoints" / last["file"], last["sha256"]) as f:
        check(len(f["id"][()]) == 600, "the last part misses rows")
    collector.finish()
report(failures)
sys.exit(0)
