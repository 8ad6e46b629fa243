"""Weights plane: a flat float32 parameter vector with versions, in one shared window per node.

Node window (`NodeWeights`), one `MPI.Win.Allocate_shared` per node, owned by the node leader
and mapped by every rank of the node with `Shared_query`:

    byte 64*s      seq_s, version_s   int64 each, for shard s = 0..S-1 (one cache line each),
                   then progress_s    float64: the writer's training progress in [0, 1] at that version
    byte 64*S      weights            float32[n]; shard s owns the contiguous slice bounds[s]:bounds[s+1]

Writing:
  - `publish(vec, version, shard, progress)`: one writer per shard (a parameter server, or a node
    leader relaying one); readers copy with the shard's seqlock (`read`) and never see a torn slice,
    and `progress` is what the writer said with the version they read (schedules of ranks that are
    not learners, e.g. QT-Opt's bellman ranks' importance-sampling exponent);
  - `hogwild_add(delta, idx=...)`: any number of ranks add into the vector in place with no lock
    (Hogwild!, unsharded windows only); the version counts updates with an atomic fetch-and-add.

Across nodes (`WeightsPush`): the parameter server broadcasts each new version on a communicator
of itself and the leaders of the other nodes; a helper thread on each of those leaders waits
politely (`Ibcast` + Test/sleep) for the 16-byte (version, progress), then takes the bulk with a blocking `Bcast`
(large messages move in chunks that need progress on both sides: sleeping between tests would
stall them; the blocking call spins only while the data is in flight), then republishes it into
its node window. One-sided
`Put` into remote windows is not used: its progress depends on the busy target (docs/measured.md).
Windows live in host memory; copy to a device after reading.

Memory ordering (what the seqlock relies on): every step of `publish` and `read` is separated by
`sync()`, which is `MPI.Win.Sync` (MPI's rule for shared windows) and a full C++ memory fence
(`drlmpi._core.fence`, seq_cst), so neither the compiler nor a weakly ordered CPU (ARM, POWER) can
move the data copy across the sequence-number updates; the int64 counters are 8-byte aligned, so
their loads and stores are single-copy atomic on every 64-bit CPU. Version counters of Hogwild!
updates use MPI's atomic `Fetch_and_op`.

`WeightsPlane` bundles a job's window and its pushes (one writer per shard) on the weights channel.
"""

import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi.comm.segments import sync
from drlmpi.errors import invariant

LINE = 64
RELAY_SWITCH_INTERVAL = 5e-4  # seconds; see WeightsPush


def shard_bounds(n: int, shards: int) -> np.ndarray:
    """Contiguous slices of [0, n) for each shard, sizes differing by at most 1: int64 [shards + 1]."""
    return np.array([n * s // shards for s in range(shards + 1)], dtype=np.int64)


class NodeWeights:
    def __init__(self, node: MPI.Intracomm, n: int, shards: int = 1):
        from drlmpi.runtime import barrier

        self.n, self.shards, self.node = n, shards, node
        self.bounds = shard_bounds(n, shards)
        head = LINE * shards
        self.win = MPI.Win.Allocate_shared(head + 4 * n if node.rank == 0 else 0, 1, comm=node)
        buf, _ = self.win.Shared_query(0)
        mem = np.frombuffer(buf, dtype=np.uint8)
        self._head = mem[:head].view(np.int64).reshape(shards, LINE // 8)  # [:, 0] seq, [:, 1] version
        self._progress = mem[:head].view(np.float64).reshape(shards, LINE // 8)[:, 2]  # the same lines' word 2
        self.progress = 0.0  # the smallest shard's progress as of the last read
        self.weights = mem[head : head + 4 * n].view(np.float32)  # [n], shared
        self.win.Lock_all(MPI.MODE_NOCHECK)
        if node.rank == 0:
            self._head[:] = 0
            self.weights[:] = 0
        sync(self.win)
        barrier(node)
        self._one = np.ones(1, dtype=np.int64)
        self._old = np.zeros(1, dtype=np.int64)

    def versions(self) -> np.ndarray:
        """Version of each shard, int64 [S]."""
        return self._head[:, 1].copy()

    def published(self) -> bool:
        """Has every shard been published at least once?"""
        sync(self.win)
        return bool((self._head[:, 0] > 0).all())

    @property
    def version(self) -> int:
        return int(self._head[:, 1].min())

    def publish(self, vec: np.ndarray, version: int, shard: int = 0, progress: float = 0.0) -> None:
        """Copy this shard's slice (vec holds the slice, or the whole vector) in as `version` (the writer's
        training `progress` beside it); one writer per shard."""
        lo, hi = self.bounds[shard], self.bounds[shard + 1]
        h = self._head[shard]
        h[0] += 1  # odd: publish in progress
        sync(self.win)
        np.copyto(self.weights[lo:hi], vec if len(vec) == hi - lo else vec[lo:hi], casting="same_kind")
        h[1] = version
        self._progress[shard] = progress
        sync(self.win)
        h[0] += 1  # even: consistent
        sync(self.win)

    def read(self, out: np.ndarray, timeout: float = 30.0) -> int:
        """Copy the vector into out [n], each shard's slice consistent; returns the smallest shard version (and
        sets `self.progress` to the smallest shard's progress). A writer publishing back to back, with no pause at
        all, can starve a reader (TimeoutError after `timeout`); every writer here does other work between
        publications (tests/mpi/scripts/weights_node.py)."""
        deadline = time.monotonic() + timeout
        version = progress = None
        for s in range(self.shards):
            lo, hi = self.bounds[s], self.bounds[s + 1]
            h = self._head[s]
            while True:
                sync(self.win)
                s1 = int(h[0])
                if not s1 & 1:
                    np.copyto(out[lo:hi], self.weights[lo:hi])
                    v, p = int(h[1]), float(self._progress[s])
                    sync(self.win)
                    if int(h[0]) == s1:
                        break
                if time.monotonic() > deadline:
                    raise TimeoutError("weights window: no consistent read (writer stuck mid-publish?)")
                time.sleep(0)
            version = v if version is None else min(version, v)
            progress = p if progress is None else min(progress, p)
        self.progress = progress
        return version

    def hogwild_add(self, delta: np.ndarray, scale: float = 1.0, idx: np.ndarray | None = None) -> int:
        """weights[idx] += scale * delta in place, lock-free; returns the version after this update.

        idx (unique int64 [k]) limits the write to the update's support, as in Hogwild!: updates
        from several ranks to disjoint coordinates all land. A dense update (idx None, delta [n])
        read-modify-writes every coordinate, so concurrent dense updates can overwrite each other.
        """
        invariant(self.shards == 1, "Hogwild! updates need an unsharded window")
        d = delta if scale == 1.0 else np.float32(scale) * delta
        if idx is None:
            np.add(self.weights, d, out=self.weights)
        else:
            self.weights[idx] += d
        self.win.Fetch_and_op(self._one, self._old, 0, target_disp=8, op=MPI.SUM)
        self.win.Flush(0)
        return int(self._old[0]) + 1

    def free(self) -> None:
        """Collective over the node: free the window once every rank there is done with it (a polite barrier
        first: the Free's own barrier would spin)."""
        from drlmpi.runtime import barrier

        barrier(self.node, what="the node's ranks to be done with the weights window")
        self.weights = self._head = self._progress = None  # (views into the window's memory)
        self.win.Unlock_all()
        self.win.Free()


class WeightsPush:
    """Cross-node push of one writer's slice: the writer `Ibcast`s (version, progress), then `Bcast`s the slice
    to the other nodes' leaders.

    Collective over `comm` (the weights channel, all ranks): every rank constructs it with the same `writer`
    rank and shard. On the writer, `publish(vec, version, progress)` publishes into its own node window, then
    broadcasts. On the leaders of the other nodes, a daemon thread receives each broadcast and publishes it into their
    node window. `close()` (writer) sends the stop version -1 and joins nothing; leaders' threads end.
    """

    STOP = -1

    def __init__(self, world: MPI.Intracomm, node: MPI.Intracomm, window: NodeWeights, writer: int, shard: int = 0):
        self.window, self.shard, self.writer = window, shard, writer
        lo, hi = window.bounds[shard], window.bounds[shard + 1]
        # the writer's node id: ranks of the writer's node share the smallest world rank of that node
        node_id = np.array([world.rank], np.int64)
        node.Allreduce(MPI.IN_PLACE, node_id, op=MPI.MIN)
        writer_node = node_id.copy()
        world.Bcast(writer_node, root=writer)
        node_id, writer_node = int(node_id[0]), int(writer_node[0])
        member = world.rank == writer or (node.rank == 0 and node_id != writer_node)
        self.comm = world.Split(0 if member else MPI.UNDEFINED, 0 if world.rank == writer else world.rank + 1)
        self.active = member and self.comm.size > 1
        self._version = np.zeros(2, dtype=np.int64)  # version, progress (float64 bits)
        self._progress = self._version[1:].view(np.float64)
        self._slice = np.zeros(int(hi - lo), dtype=np.float32)
        self.thread = None
        if self.active and world.rank != writer:
            # The relay needs the GIL for a moment per message; a main thread busy in Python hands it over
            # only every switch interval (5 ms by default), which would delay each new version by that much.
            sys.setswitchinterval(min(sys.getswitchinterval(), RELAY_SWITCH_INTERVAL))
            self.thread = threading.Thread(target=self._relay, name="weights-relay", daemon=True)
            self.thread.start()

    def publish(self, vec: np.ndarray, version: int, progress: float = 0.0) -> None:
        """Writer only: publish locally, then broadcast to the other nodes (returns when the root's send is done)."""
        from drlmpi.runtime import wait

        self.window.publish(vec, version, self.shard, progress)
        if self.active:
            lo, hi = self.window.bounds[self.shard], self.window.bounds[self.shard + 1]
            self._version[0], self._progress[0] = version, progress
            wait(self.comm.Ibcast(self._version, root=0), what="weights push")
            self.comm.Bcast(np.ascontiguousarray(vec[lo:hi] if len(vec) != hi - lo else vec, np.float32), root=0)

    def close(self) -> None:
        """Writer: stop the relays. Other ranks: wait for this rank's relay thread to end."""
        from drlmpi.runtime import wait

        if self.active and self.comm.rank == 0:
            self._version[0] = self.STOP
            wait(self.comm.Ibcast(self._version, root=0), what="weights push stop")
        if self.thread is not None:
            self.thread.join(timeout=60)

    def _relay(self) -> None:
        from drlmpi.runtime import wait

        while True:  # the writer broadcasts at least every publication interval, and a stop at its end
            wait(self.comm.Ibcast(self._version, root=0), what="weights from the parameter server")
            version = int(self._version[0])
            if version == self.STOP:
                return
            self.comm.Bcast(self._slice, root=0)  # the writer is sending now: spin only for the transfer
            self.window.publish(self._slice, version, self.shard, float(self._progress[0]))


def first_weights(window: NodeWeights, timeout: float, what: str) -> tuple[int, np.ndarray]:
    """A reader's start: wait politely until the window holds published weights; (their version, a copy [n])."""
    from drlmpi.runtime import poll

    flat = np.empty(window.n, np.float32)
    poll(lambda: True if window.published() else None, timeout, what, max_sleep=0.01)
    return window.read(flat), flat


@dataclass
class WeightsPlane:
    """A job's weights plane: the node window (one shard per writer) and each writer's push to the other hosts."""

    window: NodeWeights
    pushes: list[WeightsPush]  # pushes[s]: writer s's broadcast of shard s
    writers: list[int]  # world ranks writing each shard
    rank: int  # this rank

    @staticmethod
    def create(comm: MPI.Intracomm, node: MPI.Intracomm, n: int, writers: list[int]) -> "WeightsPlane":
        """Collective over comm (the weights channel) and node: a window of n float32 in len(writers) shards."""
        window = NodeWeights(node, n, shards=len(writers))
        pushes = [WeightsPush(comm, node, window, w, s) for s, w in enumerate(writers)]
        return WeightsPlane(window, pushes, writers, comm.rank)

    def publish(self, vec: np.ndarray, version: int, progress: float = 0.0) -> None:
        """Writer: publish its shard (vec: the slice or the whole vector) here, with the writer's training progress
        in [0, 1], and broadcast it to other hosts."""
        self.pushes[self.writers.index(self.rank)].publish(vec, version, progress)

    def close(self) -> None:
        """Collective over the node: stop the pushes (their relay threads end), then free the window."""
        for p in self.pushes:
            p.close()
        self.window.free()
