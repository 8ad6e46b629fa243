"""Trajectory plane: actors send fixed-size unrolls to a learner, which assembles batches of B of them; never pickled.

An unroll is one block (comm.blocks) of `fields` with T + 1 rows, each row one step of the actor's E envs
([E, ...] per row): row T holds the bootstrap observation (the other fields' row T is unused). Its header is
(actor index, the weights version that acted). A learner's batch is time-major: {field: [T + 1, B * E, ...]}.

  TRAJECTORY_SHM  actor -> learner on its node   int64 [2] (outbox slot, 0): the unroll is in the actor's slot;
                                                 the learner copies it into its batch (the one copy) and
                                                 releases the slot
  TRAJECTORY      actor -> learner elsewhere     the unroll block; the learner answers TRAJECTORY_ACK
  TRAJECTORY_ACK  learner -> actor elsewhere     empty: one of the actor's send buffers is free again
  STOP            actor -> learner               empty, after its last unroll

The queue is bounded by `slots` per actor (outbox slots on a node, send buffers otherwise): an actor whose
learner falls behind waits politely for a free one instead of memory growing. With `max_policy_lag` > 0 a
learner drops unrolls that acted on weights more than that many updates old, and counts them.

Memory ordering: the actor fills its slot, then `segments.sync` (Win.Sync + a seq_cst fence), then rings; the
learner fences after the doorbell before it reads, and releases the slot (with a sync) after its copy.
"""

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi._core import fence
from drlmpi.comm.blocks import BlockLayout
from drlmpi.comm.segments import NodeSegments, sync
from drlmpi.comm.tags import Tag
from drlmpi.runtime import wait, wait_all
from drlmpi.runtime.wait import PEER_TIMEOUT, poll

Fields = dict[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape of one row [E, ...], dtype)
SLOTS = 4  # unrolls in flight per actor: the bound on the queue, and room to pipeline
HEADER = 2  # actor index, version


def unroll_layout(fields: Fields, unroll: int, once: tuple[str, ...] = ()) -> BlockLayout:
    """T + 1 rows of every field but the `once` ones (one row: e.g. the recurrent state at the unroll's start)."""
    return BlockLayout.of(fields, unroll + 1, header_words=HEADER, once=once)


@dataclass
class TrajectoryPlane:
    comm: MPI.Intracomm  # the trajectories channel
    layout: BlockLayout  # one unroll
    outbox: NodeSegments  # actors' slots on this node
    slots: int = SLOTS  # unrolls in flight per writer

    @staticmethod
    def create(comm: MPI.Intracomm, node: MPI.Intracomm, fields: Fields, unroll: int, actor: bool,
               slots: int = SLOTS, once: tuple[str, ...] = ()) -> "TrajectoryPlane":
        """Collective over node: a writer (`actor`) gets `slots` outbox slots of one unroll each (the same number on
        every rank)."""
        layout = unroll_layout(fields, unroll, once)
        return TrajectoryPlane(comm, layout, NodeSegments(comm, node, slots, layout.nbytes if actor else 0), slots)

    def free(self) -> None:
        """Collective over the node, after every rank's role: free the outboxes' window."""
        self.outbox.free()

    def writer(self, learner: int, index: int) -> "UnrollWriter":
        return UnrollWriter(self, learner, index)

    def reader(self, actors: list[int], batch: int, max_policy_lag: int = 0) -> "UnrollReader":
        return UnrollReader(self, actors, batch, max_policy_lag)


class UnrollWriter:
    """An actor's side: `acquire` a free unroll (views to fill in place), then `post` it."""

    def __init__(self, plane: TrajectoryPlane, learner: int, index: int):
        self.plane, self.learner, self.index = plane, learner, index
        self.comm = plane.comm
        self.local = plane.outbox.same_node(learner)
        self.bufs = [] if self.local else [plane.layout.new() for _ in range(plane.slots)]
        self.reqs = [MPI.REQUEST_NULL] * plane.slots  # remote: each buffer's send; local: the doorbell's
        self.free, self.unacked = list(range(plane.slots)), []  # remote buffers: free, sent and not yet acknowledged
        self._bell = np.zeros(2, np.int64)
        self._views = [plane.layout.views(self._buf(s)) for s in range(plane.slots)]  # (header, fields) of each slot

    def _buf(self, slot: int) -> np.ndarray:
        return self.plane.outbox.slot(self.comm.rank, slot) if self.local else self.bufs[slot]

    def _acks(self, on_wait=None) -> None:
        if on_wait is not None:
            on_wait()
        while self.comm.Iprobe(self.learner, Tag.TRAJECTORY_ACK):
            self.comm.Recv(np.zeros(0, np.uint8), source=self.learner, tag=Tag.TRAJECTORY_ACK)
            self.free.append(self.unacked.pop(0))

    def acquire(self, on_wait=None) -> tuple[int, dict[str, np.ndarray]]:
        """Wait politely for a free unroll (on_wait() runs meanwhile: checkpoint polls); returns (slot, field views
        [T + 1, E, ...]) to fill in place."""
        what = "a free unroll slot (the learner takes them)"
        if self.local:
            slot = self.plane.outbox.acquire(PEER_TIMEOUT, on_wait, what)
        else:
            slot = poll(lambda: self._acks(on_wait) or (self.free.pop(0) if self.free else None), PEER_TIMEOUT, what)
            wait(self.reqs[slot], what="the unroll send")
        return slot, self._views[slot][1]

    def post(self, slot: int, version: int) -> None:
        """Hand the filled unroll in `slot` to the learner."""
        buf, head = self._buf(slot), self._views[slot][0]
        head[0], head[1] = self.index, version
        if self.local:
            sync(self.plane.outbox.win)  # the unroll before the doorbell
            wait(self.reqs[0], what="the previous doorbell")
            self._bell[0] = slot
            self.reqs[0] = self.comm.Isend(self._bell, dest=self.learner, tag=Tag.TRAJECTORY_SHM)
        else:
            self.reqs[slot] = self.comm.Isend(buf, dest=self.learner, tag=Tag.TRAJECTORY)
            self.unacked.append(slot)

    def discard(self, slot: int) -> None:
        """Give back an acquired unroll that will not be sent (a partial one at the end)."""
        if self.local:
            self.plane.outbox.release(self.comm.rank, slot)
        else:
            self.free.append(slot)

    def close(self, on_wait=None) -> None:
        """Wait until the learner has taken every unroll, then STOP."""
        if self.local:
            self.plane.outbox.wait_all_free(PEER_TIMEOUT, on_wait)
        else:
            poll(lambda: self._acks(on_wait) or (None if self.unacked else True), PEER_TIMEOUT,
                 "the learner's last acknowledgements")
        wait_all(self.reqs, what="the last unroll sends")
        wait(self.comm.Isend(np.zeros(0, np.uint8), dest=self.learner, tag=Tag.STOP), what="the stop to the learner")


class UnrollReader:
    """A learner's side: `receive` assembles B unrolls from its actors into one time-major batch."""

    def __init__(self, plane: TrajectoryPlane, actors: list[int], batch: int, max_policy_lag: int = 0):
        self.plane, self.comm, self.B, self.max_lag = plane, plane.comm, batch, max_policy_lag
        self.actors, self.stopped = set(actors), 0
        _, one = plane.layout.views(plane.layout.new())
        self.E = next(iter(one.values())).shape[1]
        self.batch = {k: np.zeros((v.shape[0], batch * self.E, *v.shape[2:]), v.dtype) for k, v in one.items()}
        self.versions = np.zeros(batch, np.int64)  # the version that acted, per unroll of the batch
        self.staging = plane.layout.new()  # a remote unroll before its copy into the batch
        self.dropped = self.received = 0
        self._bell, self._status, self._acks = np.zeros(2, np.int64), MPI.Status(), []
        self._views: dict[tuple[int, int], tuple] = {}  # (actor, slot) -> (header, fields) of its outbox slot
        self._staged = plane.layout.views(self.staging)

    @property
    def all_stopped(self) -> bool:
        return self.stopped == len(self.actors)

    def receive(self, version: int, on_idle=None) -> dict[str, np.ndarray] | None:
        """The next batch {field: [T + 1, B * E, ...]} (its unrolls' acting versions in `versions`), or None once
        every actor has said STOP (a partial batch is then dropped). version: the learner's update count (for
        max_policy_lag); on_idle() runs while waiting."""
        b = 0
        st = self._status
        while b < self.B:
            if self.all_stopped:
                return None

            def arrived():
                if on_idle:
                    on_idle()
                return True if self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, st) else None

            poll(arrived, PEER_TIMEOUT, "the next unroll from an actor")
            src, tag = st.source, st.tag
            if tag == Tag.TRAJECTORY_SHM:
                self.comm.Recv(self._bell, source=src, tag=tag)
                fence()  # the unroll the actor wrote before ringing
                slot = int(self._bell[0])
                if (src, slot) not in self._views:
                    self._views[src, slot] = self.plane.layout.views(self.plane.outbox.slot(src, slot))
                b += self._take(self._views[src, slot], b, version)
                self.plane.outbox.release(src, slot)
            elif tag == Tag.TRAJECTORY:
                self.comm.Recv(self.staging, source=src, tag=tag)
                b += self._take(self._staged, b, version)
                self._acks = [r for r in self._acks if not r.Test()]
                self._acks.append(self.comm.Isend(np.zeros(0, np.uint8), dest=src, tag=Tag.TRAJECTORY_ACK))
            elif tag == Tag.STOP:
                self.comm.Recv(np.zeros(0, np.uint8), source=src, tag=tag)
                self.stopped += 1
            else:
                raise RuntimeError(f"trajectories channel: unexpected tag {tag} from rank {src}")
        return self.batch

    def _take(self, views: tuple, b: int, version: int) -> int:
        """Copy one unroll (views of its header and fields) into column block b of the batch unless it is too old;
        returns 1 if taken."""
        head, f = views
        self.received += 1
        if self.max_lag and version - int(head[1]) > self.max_lag:
            self.dropped += 1
            return 0
        cols = slice(b * self.E, (b + 1) * self.E)
        for k, v in f.items():
            self.batch[k][:, cols] = v
        self.versions[b] = head[1]
        return 1

    def close(self) -> None:
        wait_all(self._acks, what="the last acknowledgements to be received")
