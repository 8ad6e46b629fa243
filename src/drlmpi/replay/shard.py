"""A replay shard (role `replay`): prioritized storage serving actors and learners over buffer messages.

Every message is a preallocated numpy buffer (`comm.blocks.BlockLayout`), never pickled. The shard
waits politely for the next message from anyone (`Iprobe` + sleep back-off), then receives it with a
blocking `Recv` (the data is already on its way; the receiver drives the copy):

  TRANSITIONS     actor -> shard    block [rows]: header (n, 0), the fields, "priority" float64 (|td| + eps)
  SAMPLE_REQUEST  learner -> shard  float64 [2]: (n, 0); n = 0 asks for statistics only
  SAMPLE_REPLY    shard -> learner  block [max_batch]: header (n, size, total, min) with total and min
                                    (of p^alpha) as float64 bits; the n sampled rows, "slot", "gen", "p"
  PRIORITIES      learner -> shard  block [max_batch]: header (n, 0); "slot", "gen", "priority" (|td| + eps)
  STOP            client -> shard   empty; the shard returns once all `clients` have sent it
"""

import numpy as np
from mpi4py import MPI

from drlmpi.comm.blocks import BlockLayout
from drlmpi.comm.tags import Tag
from drlmpi.replay.storage import PrioritizedReplay
from drlmpi.runtime import probe, wait

Fields = dict[str, tuple[tuple[int, ...], np.dtype]]


def transition_layout(fields: Fields, rows: int) -> BlockLayout:
    return BlockLayout.of({**fields, "priority": ((), np.float64)}, rows)


def reply_layout(fields: Fields, max_batch: int) -> BlockLayout:
    return BlockLayout.of({**fields, "slot": ((), np.int64), "gen": ((), np.int64), "p": ((), np.float64)},
                          max_batch, header_words=4)


def priority_layout(max_batch: int) -> BlockLayout:
    return BlockLayout.of({"slot": ((), np.int64), "gen": ((), np.int64), "priority": ((), np.float64)}, max_batch)


def serve(comm: MPI.Intracomm, storage: PrioritizedReplay, fields: Fields, block_rows: int, max_batch: int,
          clients: int) -> dict:
    """Serve until `clients` STOP messages arrived. Returns counters."""
    t_layout, r_layout, p_layout = (transition_layout(fields, block_rows), reply_layout(fields, max_batch),
                                    priority_layout(max_batch))
    t_buf, p_buf = t_layout.new(), p_layout.new()
    t_head, t_fields = t_layout.views(t_buf)
    p_head, p_fields = p_layout.views(p_buf)
    replies = [r_layout.new(), r_layout.new()]  # double-buffered: reuse one only once its Isend completed
    reply_reqs = [MPI.REQUEST_NULL, MPI.REQUEST_NULL]
    request = np.zeros(2, np.float64)
    stopped = 0
    counts = {"inserted": 0, "sampled": 0, "priority_updates": 0, "stale_dropped": 0}
    turn = 0
    while stopped < clients:
        st = probe(comm)
        src, tag = st.source, st.tag
        if tag == Tag.TRANSITIONS:
            comm.Recv(t_buf, source=src, tag=tag)
            n = int(t_head[0])
            storage.add({k: t_fields[k][:n] for k in fields}, t_fields["priority"][:n])
            counts["inserted"] += n
        elif tag == Tag.SAMPLE_REQUEST:
            comm.Recv(request, source=src, tag=tag)
            n = int(request[0])
            wait(reply_reqs[turn], what="previous sample reply")
            buf = replies[turn]
            head, out = r_layout.views(buf)
            if n and storage.size:
                slot, p = storage.sample_slots(n)
                for k in fields:
                    np.take(storage.data[k], slot, axis=0, out=out[k][:n])
                out["slot"][:n], out["gen"][:n], out["p"][:n] = slot, storage.gen[slot], p
            else:
                n = 0
            head[0], head[1] = n, storage.size
            head[2:4].view(np.float64)[:] = (storage.tree.total(), storage.tree.min())
            reply_reqs[turn] = comm.Isend(buf, dest=src, tag=Tag.SAMPLE_REPLY)
            turn ^= 1
            counts["sampled"] += n
        elif tag == Tag.PRIORITIES:
            comm.Recv(p_buf, source=src, tag=tag)
            n = int(p_head[0])
            applied = storage.update_priorities(p_fields["slot"][:n], p_fields["priority"][:n], p_fields["gen"][:n])
            counts["priority_updates"] += applied
            counts["stale_dropped"] += n - applied
        elif tag == Tag.STOP:
            comm.Recv(np.zeros(0, np.uint8), source=src, tag=tag)
            stopped += 1
        else:
            raise RuntimeError(f"replay shard: unexpected message tag {tag} from rank {src}")
    for r in reply_reqs:
        wait(r, what="last sample reply")
    return counts
