"""A replay shard (role `replay`): prioritized storage serving actors and learners, never pickled.

Bulk data between ranks of one node goes through shared memory (`comm.segments.NodeSegments`):
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
from drlmpi.comm.segments import NodeSegments
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
    shard = Shard(comm, storage, fields, block_rows, max_batch, outboxes, inboxes, demos, stacks)
    handlers = {Tag.TRANSITIONS: shard.transitions, Tag.TRANSITIONS_SHM: shard.transitions_shm,
                Tag.SAMPLE_REQUEST: shard.sample, Tag.PRIORITIES: shard.priorities, Tag.STOP: shard.stop}
    if ckpt is not None:
        handlers[Tag.CHECKPOINT] = lambda src, tag: ckpt.handle(on_checkpoint)
    status = MPI.Status()

    def next_message():  # a deferred checkpoint answer goes out as soon as its part is written
        if ckpt is not None:
            ckpt.pump()
        return status if comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status) else None

    while shard.stopped < clients:
        st = poll(next_message, PEER_TIMEOUT, "the next message from an actor or learner", SERVICE_SLEEP)
        if ckpt is not None:
            ckpt.forward_signal()
        handle = handlers.get(st.tag)
        if handle is None:
            raise RuntimeError(f"replay shard: unexpected message tag {st.tag} from rank {st.source}")
        handle(st.source, st.tag)
    for r in shard.reply_reqs.values():
        wait(r, what="last sample reply")
    return shard.counts


class Shard:
    """A shard's answer to each kind of message (`serve` receives them in turn), and its counters."""

    def __init__(self, comm: MPI.Intracomm, storage: PrioritizedReplay, fields: Fields, block_rows: int,
                 max_batch: int, outboxes: NodeSegments, inboxes: NodeSegments, demos: PrioritizedReplay | None,
                 stacks: tuple[str, ...]):
        self.comm, self.storage, self.demos, self.stacks = comm, storage, demos, stacks
        self.outboxes, self.inboxes = outboxes, inboxes
        self.t_layout, self.r_layout = transition_layout(fields, block_rows, stacks), reply_layout(fields, max_batch)
        self.p_layout = priority_layout(max_batch)
        self.t_buf, self.p_buf = self.t_layout.new(), self.p_layout.new()
        # One reply buffer per (client, inbox slot, header only?): a learner asks again for a slot only after
        # receiving its last reply, so waiting for that buffer's Isend never waits on a learner busy elsewhere
        # (a reply may sit unreceived while its learner trains or waits for the actors).
        self.replies: dict[tuple[int, int, bool], np.ndarray] = {}
        self.reply_reqs: dict[tuple[int, int, bool], MPI.Request] = {}
        self.doorbell = np.zeros(4, np.int64)
        self.stopped = 0
        self.counts = {"inserted": 0, "sampled": 0, "demos_sampled": 0, "priority_updates": 0, "stale_dropped": 0}

    def insert(self, block: np.ndarray) -> None:
        head, f = self.t_layout.views(block)
        n = int(head[0])
        rows = {k: v[:n] for k, v in f.items() if k not in ("priority", FRAMES)}
        if self.stacks:
            rows[FRAMES] = f[FRAMES][0, : int(head[1])]
        self.storage.add(rows, f["priority"][:n])
        self.counts["inserted"] += n

    def transitions(self, src: int, tag: int) -> None:
        self.comm.Recv(self.t_buf, source=src, tag=tag)
        self.insert(self.t_buf)

    def transitions_shm(self, src: int, tag: int) -> None:
        self.comm.Recv(self.doorbell[:2], source=src, tag=tag)
        fence()  # the slot contents the actor wrote before ringing
        slot = int(self.doorbell[0])
        self.insert(self.outboxes.slot(src, slot))
        self.outboxes.release(src, slot)

    def sample(self, src: int, tag: int) -> None:
        """n agent rows and d demo rows into the learner's inbox slot (same host) or a reply block, and the
        replays' statistics."""
        self.comm.Recv(self.doorbell, source=src, tag=tag)
        n, offset, inbox_slot, d = (int(x) for x in self.doorbell)
        n = n if self.storage.size else 0
        d = d if self.demos is not None and self.demos.size else 0
        shm = self.inboxes.local(src) or n + d == 0  # statistics only: the small header suffices
        key = (src, inbox_slot, shm)
        wait(self.reply_reqs.get(key, MPI.REQUEST_NULL), what="previous sample reply")
        if key not in self.replies:
            self.replies[key] = np.zeros(8, np.int64) if shm else self.r_layout.new()
        msg = self.replies[key]
        if shm:  # straight into the learner's inbox
            head, lo = msg, offset
            out = self.r_layout.views(self.inboxes.slot(src, inbox_slot))[1] if n + d else None
        else:  # a buffer message of the rows asked for
            (head, out), lo = reply_rows_layout(self.r_layout, n + d).views(msg), 0
        self.rows_into(out, n, d, lo)
        stats_header(head, n, self.storage, d, self.demos)
        if shm:
            fence()  # the rows in the learner's inbox before the reply
            self.reply_reqs[key] = self.comm.Isend(msg, dest=src, tag=Tag.SAMPLE_REPLY)
        else:
            self.reply_reqs[key] = self.comm.Isend(msg[: reply_rows_layout(self.r_layout, n + d).nbytes], dest=src,
                                                   tag=Tag.SAMPLE_REPLY_BLOCK)
        self.counts["sampled"] += n
        self.counts["demos_sampled"] += d

    def rows_into(self, out: dict | None, n: int, d: int, lo: int) -> None:
        """Sample n agent rows, then d demo rows (slots -1 - slot), into out's fields from row lo."""
        for source, m, at, code in ((self.storage, n, lo, 1), (self.demos, d, lo + n, -1)):
            if m:
                slot, p = source.sample_slots(m)
                source.fetch(slot, out, at)
                out["slot"][at : at + m] = slot if code > 0 else -1 - slot
                out["gen"][at : at + m], out["p"][at : at + m] = source.gen[slot], p

    def priorities(self, src: int, tag: int) -> None:
        self.comm.Recv(self.p_buf, source=src, tag=tag)
        p_head, p_fields = self.p_layout.views(self.p_buf)
        n = int(p_head[0])
        slot, prio, gen = p_fields["slot"][:n], p_fields["priority"][:n], p_fields["gen"][:n]
        agent = slot >= 0
        applied = self.storage.update_priorities(slot[agent], prio[agent], gen[agent])
        if self.demos is not None and not agent.all():
            applied += self.demos.update_priorities(-1 - slot[~agent], prio[~agent], gen[~agent])
        self.counts["priority_updates"] += applied
        self.counts["stale_dropped"] += n - applied

    def stop(self, src: int, tag: int) -> None:
        self.comm.Recv(np.zeros(0, np.uint8), source=src, tag=tag)
        self.stopped += 1
