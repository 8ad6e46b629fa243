"""Compact frames through the replay plane on 4 ranks: rank 0 learns and writes, shards 1 and 2, rank 3 writes.

Writers send env-major n-step transitions of stacked frames (each row's `ret` is its id) through ReplayWriter with
stacked fields; the shards keep frame replays; every row the learner samples (shared memory, or block replies
from a pretend other host) equals the row written, stacks included, and the shards hold about one frame a row.
"""

import numpy as np
from _report import report
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.envs import Step
from drlmpi.replay import NStepBuilder, transition_fields
from drlmpi.replay.client import ReplaySampler, ReplayWriter
from drlmpi.replay.frames import FrameReplay, pool_frames
from drlmpi.replay.shard import node_segments, serve

world = MPI.COMM_WORLD
assert world.size == 4
SHARDS, LEARNER, WRITERS = [1, 2], 0, [0, 3]
C, H, W, E, ROWS = 4, 84, 84, 2, 64
STACKS = ("obs", "next_obs")


class Space:
    shape, dtype = (C, H, W), np.dtype(np.uint8)


FIELDS = transition_fields(Space())
failures = []


def check(cond, what):
    if not cond:
        failures.append(f"rank {world.rank}: {what}")


def transitions(seed: int, steps: int) -> dict:
    """E envs of stacked random frames, episodes ending at random: their n-step transitions, env-major."""
    rng = np.random.default_rng(seed)
    stacks = rng.integers(0, 256, (E, 1, H, W), dtype=np.uint8).repeat(C, axis=1)
    builder, out = NStepBuilder(E, 3, 0.99, batch=64, env_major=True), []
    for _ in range(steps):
        after = np.concatenate([stacks[:, 1:], rng.integers(0, 256, (E, 1, H, W), dtype=np.uint8)], axis=1)
        term = rng.random(E) < 0.01
        nxt = after.copy()
        nxt[term] = rng.integers(0, 256, (int(term.sum()), 1, H, W), dtype=np.uint8).repeat(C, axis=1)
        rows = builder.push(stacks, rng.integers(0, 6, E), Step(nxt, np.ones(E, np.float32), term, ~term & False,
                                                                  after))
        if rows is not None:
            out.append(rows)
        stacks = nxt
    return {k: np.concatenate([r[k] for r in out]) for k in FIELDS}


clients = world.Split(0 if world.rank in WRITERS else 1, world.rank)
node = runtime.context.node_comm(world)
rcomm = world.Dup()
outbox, inbox = node_segments(world, node, FIELDS, ROWS, 96, writer=world.rank in WRITERS,
                              learner=world.rank == LEARNER, stacks=STACKS)
if world.rank in SHARDS:
    storage = FrameReplay(1000, FIELDS, STACKS, 0.6, np.random.default_rng(world.rank), pool_frames(
        1000, ROWS, FIELDS, STACKS))
    counts = serve(rcomm, storage, FIELDS, ROWS, 96, len(WRITERS) + 1, outbox, inbox, stacks=STACKS)
    check(storage.dropped == 0, f"{storage.dropped} rows dropped")
    used = (storage.pool.count > 0).sum() / storage.size
    check(used < 1.2, f"{used:.2f} frames a row")
    world.gather((counts, used), root=0)
else:
    writer = ReplayWriter(rcomm, SHARDS, FIELDS, ROWS, outbox, first=world.rank, stacks=STACKS)
    rows = transitions(world.rank, 320)  # 2 envs x 256 starts: 8 blocks of one env's 64
    ids = np.arange(len(rows["ret"])) + 10_000 * world.rank
    rows["ret"] = ids.astype(np.float32)
    writer.add(rows, np.ones(len(ids)))
    writer.drain()
    truth = {int(i): j for j, i in enumerate(ids)}
    everything = clients.allgather((rows, truth))
    runtime.barrier(clients)
    if world.rank == LEARNER:
        sampler = ReplaySampler(rcomm, SHARDS, FIELDS, max_batch=96, rng=np.random.default_rng(5), inbox=inbox)
        seen = 0
        for _ in range(20):
            b = sampler.sample(96, 0.5)
            for i, r in enumerate(b.data["ret"]):
                src, j = next((rw, t[int(r)]) for rw, t in everything if int(r) in t)
                for k in FIELDS:
                    check(np.array_equal(b.data[k][i], src[k][j]), f"row {int(r)}: {k} differs from the row written")
                seen += 1
        check(seen == 20 * 96, "batches")
        sampler.close()
    writer.close()
    out = world.gather(None, root=0)
    if world.rank == 0:
        shard = [o for o in out if o]
        check(sum(c["inserted"] for c, _ in shard) == 2 * 512, f"inserted {[c['inserted'] for c, _ in shard]}")
        sent = writer.frames_sent / writer.sent_rows
        check(sent < 1.2, f"{sent:.2f} frames a row sent")
        print(f"frames a row: sent {sent:.3f}, stored {[round(u, 3) for _, u in shard]}", flush=True)
report(failures)
