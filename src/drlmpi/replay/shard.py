"""A replay shard (role `replay`): prioritized storage serving actors and learners, never pickled.

Bulk data between ranks of one node goes through shared memory (`comm.mailbox.NodeSegments`):
an actor packs a block into a slot of its outbox, and the shard copies it from there into storage;
a learner owns an inbox of batch slots, and the shard gathers its sampled rows straight into the
learner's slot at the offset the learner chose. MPI carries only small doorbells then. Ranks on
other nodes get the same content as buffer messages. The shard waits politely for the next message
from anyone (`Iprobe` + sleep back-off), then receives it with a blocking `Recv`:

  TRANSITIONS        actor -> shard  block [rows]: header (n, F), the fields, "priority" float64 (|td| + eps); with
                                     compact frames (replay.frames), refs for the stacked fields, then F frames
  TRANSITIONS_SHM    actor -> shard  int64 (outbox slot, n): the same block, in the actor's outbox
  SAMPLE_REQUEST     learner -> shard  int64 (n, offset, inbox slot, d): n rows of the agent replay and d of the
                                       demo replay (R2D3; 0 without one); n = d = 0 asks for statistics only
  SAMPLE_REPLY       shard -> learner  int64 [8]: (n, size, total, min) of the agent replay, then (d, size, total,
                                       min) of the demo replay (0, 0, 0, inf without one), total and min (of
                                       p^alpha) as float64 bits; the rows are in the learner's inbox slot at
                                       [offset, offset + n + d), the d demo rows last, with slots -1 - slot
  SAMPLE_REPLY_BLOCK shard -> learner  block [n + d]: that header, then the rows of the fields, slot, gen, p
  PRIORITIES         learner -> shard  block [max_batch]: header (n, 0); "slot", "gen", "priority" (|td| + eps);
                                       a negative slot -1 - j is slot j of the demo replay
  STOP               client -> shard   empty; the shard returns once all `clients` have sent it
  CHECKPOINT         lead learner -> shard  see comm.checkpoint: the shard copies its contents, a thread writes
                                          the part file while it serves, and the answer follows the write
"""

from functools import lru_cache

import numpy as np
from mpi4py import MPI

from drlmpi._core import fence
from drlmpi.comm.blocks import BlockLayout
from drlmpi.comm.mailbox import NodeSegments
from drlmpi.comm.tags import Tag
from drlmpi.replay.frames import FRAMES, block_frames, row_fields
from drlmpi.replay.storage import PrioritizedReplay
from drlmpi.runtime import wait
from drlmpi.runtime.wait import PEER_TIMEOUT, poll

Fields = dict[str, tuple[tuple[int, ...], np.dtype]]
OUTBOX_SLOTS, INBOX_SLOTS = 4, 3
SERVICE_SLEEP = 1e-4  # a shard's longest sleep between polls: its latency is everyone's (~1% of a core idle)


def transition_layout(fields: Fields, rows: int, stacks: tuple[str, ...] = ()) -> BlockLayout:
    """A writer's block: the fields and priorities of `rows` rows; with stacked fields (compact frames), their refs
    and, last (a remote block is sent up to its frames only), the block's distinct frames."""
    if not stacks:
        return BlockLayout.of({**fields, "priority": ((), np.float64)}, rows)
    return BlockLayout.of({**row_fields(fields, stacks), "priority": ((), np.float64),
                           FRAMES: block_frames(fields, stacks, rows)}, rows, once=(FRAMES,))


def reply_layout(fields: Fields, max_batch: int) -> BlockLayout:
    return BlockLayout.of({**fields, "slot": ((), np.int64), "gen": ((), np.int64), "p": ((), np.float64)},
                          max_batch, header_words=8)


@lru_cache(maxsize=256)
def reply_rows_layout(full: BlockLayout, n: int) -> BlockLayout:
    """The reply layout for n rows (a remote reply carries the rows asked for, not max_batch)."""
    return BlockLayout(full.fields, n, full.header_words)


def priority_layout(max_batch: int) -> BlockLayout:
    return BlockLayout.of({"slot": ((), np.int64), "gen": ((), np.int64), "priority": ((), np.float64)}, max_batch)


def node_segments(world: MPI.Intracomm, node: MPI.Intracomm, fields: Fields, block_rows: int, max_batch: int,
                  writer: bool, learner: bool, stacks: tuple[str, ...] = ()) -> tuple[NodeSegments, NodeSegments]:
    """Collective over the node: (outboxes of the writers, inboxes of the learners)."""
    out = NodeSegments(world, node, OUTBOX_SLOTS,
                       transition_layout(fields, block_rows, stacks).nbytes if writer else 0)
    inbox = NodeSegments(world, node, INBOX_SLOTS, reply_layout(fields, max_batch).nbytes if learner else 0)
    return out, inbox


def stats_header(head: np.ndarray, n: int, storage: PrioritizedReplay, d: int = 0,
                 demos: PrioritizedReplay | None = None) -> None:
    head[0], head[1] = n, storage.size
    head[2:4].view(np.float64)[:] = (storage.tree.total(), storage.tree.min())
    head[4], head[5] = d, demos.size if demos else 0
    head[6:8].view(np.float64)[:] = (demos.tree.total(), demos.tree.min()) if demos else (0.0, np.inf)


def serve(comm: MPI.Intracomm, storage: PrioritizedReplay, fields: Fields, block_rows: int, max_batch: int,
          clients: int, outboxes: NodeSegments, inboxes: NodeSegments, ckpt=None, on_checkpoint=None,
          demos: PrioritizedReplay | None = None, stacks: tuple[str, ...] = ()) -> dict:
    """Serve until `clients` STOP messages arrived. ckpt: this rank's comm.checkpoint.CheckpointClient (it forwards
    a signal and handles the lead's CHECKPOINT requests with on_checkpoint(req) -> parts). demos: the demo replay
    (R2D3), sampled on request beside the agent replay and never written by actors. stacks: the stacked fields
    (compact frames: storage is a replay.frames.FrameReplay). Returns counters."""
    t_layout, r_layout, p_layout = (transition_layout(fields, block_rows, stacks), reply_layout(fields, max_batch),
                                    priority_layout(max_batch))
    t_buf, p_buf = t_layout.new(), p_layout.new()
    p_head, p_fields = p_layout.views(p_buf)
    # One reply buffer per (client, inbox slot, header only?): a learner asks again for a slot only after
    # receiving its last reply, so waiting for that buffer's Isend never waits on a learner busy elsewhere
    # (a reply may sit unreceived while its learner trains or waits for the actors).
    replies: dict[tuple[int, int, bool], np.ndarray] = {}
    reply_reqs: dict[tuple[int, int, bool], MPI.Request] = {}
    doorbell = np.zeros(4, np.int64)
    demo_source = storage if demos is None else demos  # sampled only when d > 0, which needs demos
    stopped = 0
    counts = {"inserted": 0, "sampled": 0, "demos_sampled": 0, "priority_updates": 0, "stale_dropped": 0}

    def insert(block: np.ndarray) -> None:
        head, f = t_layout.views(block)
        n = int(head[0])
        rows = {k: v[:n] for k, v in f.items() if k not in ("priority", FRAMES)}
        if stacks:
            rows[FRAMES] = f[FRAMES][0, : int(head[1])]
        storage.add(rows, f["priority"][:n])
        counts["inserted"] += n

    status = MPI.Status()

    def next_message():  # a deferred checkpoint answer goes out as soon as its part is written
        if ckpt is not None:
            ckpt.pump()
        return status if comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status) else None

    while stopped < clients:
        st = poll(next_message, PEER_TIMEOUT, "the next message from an actor or learner", SERVICE_SLEEP)
        src, tag = st.source, st.tag
        if ckpt is not None:
            ckpt.forward_signal()
        if tag == Tag.TRANSITIONS:
            comm.Recv(t_buf, source=src, tag=tag)
            insert(t_buf)
        elif tag == Tag.TRANSITIONS_SHM:
            comm.Recv(doorbell[:2], source=src, tag=tag)
            fence()  # the slot contents the actor wrote before ringing
            slot = int(doorbell[0])
            insert(outboxes.slot(src, slot))
            outboxes.release(src, slot)
        elif tag == Tag.SAMPLE_REQUEST:
            comm.Recv(doorbell, source=src, tag=tag)
            n, offset, inbox_slot, d = (int(x) for x in doorbell)
            n = n if storage.size else 0
            d = d if demos is not None and demos.size else 0
            shm = inboxes.local(src) or n + d == 0  # statistics only: the small header suffices
            key = (src, inbox_slot, shm)
            wait(reply_reqs.get(key, MPI.REQUEST_NULL), what="previous sample reply")
            if key not in replies:
                replies[key] = np.zeros(8, np.int64) if shm else r_layout.new()
            msg = replies[key]
            if shm:  # gather straight into the learner's inbox
                head = msg
                out = r_layout.views(inboxes.slot(src, inbox_slot))[1] if n + d else None
                lo = offset
            else:  # a buffer message of the rows asked for
                head, out = reply_rows_layout(r_layout, n + d).views(msg)
                lo = 0
            for source, m, at, code in ((storage, n, lo, 1), (demo_source, d, lo + n, -1)):
                if m:
                    slot, p = source.sample_slots(m)
                    source.fetch(slot, out, at)
                    out["slot"][at : at + m] = slot if code > 0 else -1 - slot
                    out["gen"][at : at + m], out["p"][at : at + m] = source.gen[slot], p
            stats_header(head, n, storage, d, demos)
            if shm:
                fence()  # the rows in the learner's inbox before the reply
                reply_reqs[key] = comm.Isend(msg, dest=src, tag=Tag.SAMPLE_REPLY)
            else:
                reply_reqs[key] = comm.Isend(msg[: reply_rows_layout(r_layout, n + d).nbytes], dest=src,
                                             tag=Tag.SAMPLE_REPLY_BLOCK)
            counts["sampled"] += n
            counts["demos_sampled"] += d
        elif tag == Tag.PRIORITIES:
            comm.Recv(p_buf, source=src, tag=tag)
            n = int(p_head[0])
            slot, prio, gen = p_fields["slot"][:n], p_fields["priority"][:n], p_fields["gen"][:n]
            agent = slot >= 0
            applied = storage.update_priorities(slot[agent], prio[agent], gen[agent])
            if demos is not None and not agent.all():
                applied += demos.update_priorities(-1 - slot[~agent], prio[~agent], gen[~agent])
            counts["priority_updates"] += applied
            counts["stale_dropped"] += n - applied
        elif tag == Tag.STOP:
            comm.Recv(np.zeros(0, np.uint8), source=src, tag=tag)
            stopped += 1
        elif tag == Tag.CHECKPOINT and ckpt is not None:
            ckpt.handle(on_checkpoint)
        else:
            raise RuntimeError(f"replay shard: unexpected message tag {tag} from rank {src}")
    for r in reply_reqs.values():
        wait(r, what="last sample reply")
    return counts
