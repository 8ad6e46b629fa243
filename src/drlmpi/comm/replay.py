"""Clients of the replay shards: actors write blocks of transitions, learners sample globally.

Global sampling (`ReplaySampler.sample`): ask every shard for (size, total p^alpha, min p^alpha);
split the batch across shards with a multinomial draw in proportion to their totals; each shard
samples its share (stratified) and replies with rows, slots, generations and p^alpha, plus its
fresh statistics. Each sample's probability is p_i^alpha / sum over all shards of their totals,
and its importance weight (p_i / p_min)^-beta uses the minimum over all shards: exactly what
one unsharded buffer holding every transition would give.

On a node, bulk data moves through shared memory (see replay.shard): writers pack blocks into
their outbox, and shards gather samples straight into the learner's inbox slot, so a batch is
built with one copy, as in-process. A `Batch` holds views of an inbox slot: it stays valid until
INBOX_SLOTS - 1 further batches have been sampled. Replies are received politely (probe, then
`Recv`); sends are `Isend` from double buffers. `Prefetcher` keeps the next batch coming in a
helper thread while the learner trains. Use a communicator of its own (a `Dup`) for the plane.
"""

import queue
import threading
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi.comm.mailbox import NodeSegments
from drlmpi.comm.tags import Tag
from drlmpi.replay.shard import INBOX_SLOTS, SERVICE_SLEEP, Fields, priority_layout, reply_layout, transition_layout
from drlmpi.replay.storage import importance_weights
from drlmpi.runtime import probe, wait, wait_all


class ReplayWriter:
    """Actor side: pack transitions into blocks of `rows` and Isend each to a shard (round robin from `first`)."""

    def __init__(self, comm: MPI.Intracomm, shard_ranks: list[int], fields: Fields, rows: int, outbox: NodeSegments,
                 first: int = 0):
        self.comm, self.shards, self.fields, self.outbox = comm, shard_ranks, fields, outbox
        self.doorbells = [np.zeros(2, np.int64) for _ in range(outbox.slots)]
        self.bell_reqs = [MPI.REQUEST_NULL] * outbox.slots
        self.layout = transition_layout(fields, rows)
        self.rows = rows
        self.bufs = [self.layout.new(), self.layout.new()]
        self.reqs = [MPI.REQUEST_NULL, MPI.REQUEST_NULL]
        self.turn = 0
        self.next_shard = first % len(shard_ranks)
        self.pending: list[tuple[dict, np.ndarray]] = []
        self.pending_rows = 0
        self.sent_rows = 0

    def add(self, batch: dict[str, np.ndarray], priority: np.ndarray) -> None:
        """Queue rows (fields [n, ...], priority [n] of |td| + eps); full blocks go out at once."""
        self.pending.append((batch, priority))
        self.pending_rows += len(priority)
        while self.pending_rows >= self.rows:
            self._send(self.rows)

    def flush(self) -> None:
        """Send what is queued, even a partial block."""
        while self.pending_rows:
            self._send(min(self.rows, self.pending_rows))

    def _send(self, n: int) -> None:
        dest = self.shards[self.next_shard]
        shm = self.outbox.same_node(dest)
        if shm:
            slot = self.outbox.acquire()  # a slot the shards have finished copying from
            wait(self.bell_reqs[slot], what="previous doorbell")
            buf = self.outbox.slot(self.comm.rank, slot)
        else:
            wait(self.reqs[self.turn], what="previous transition block")
            buf = self.bufs[self.turn]
        head, out = self.layout.views(buf)
        filled = 0
        while filled < n:
            batch, prio = self.pending[0]
            take = min(n - filled, len(prio))
            for k in self.fields:
                out[k][filled : filled + take] = batch[k][:take]
            out["priority"][filled : filled + take] = prio[:take]
            filled += take
            if take == len(prio):
                self.pending.pop(0)
            else:
                self.pending[0] = ({k: v[take:] for k, v in batch.items()}, prio[take:])
        head[0] = n
        self.pending_rows -= n
        self.sent_rows += n
        if shm:
            self.doorbells[slot][:] = (slot, n)
            self.bell_reqs[slot] = self.comm.Isend(self.doorbells[slot], dest=dest, tag=Tag.TRANSITIONS_SHM)
        else:
            self.reqs[self.turn] = self.comm.Isend(buf, dest=dest, tag=Tag.TRANSITIONS)
            self.turn ^= 1
        self.next_shard = (self.next_shard + 1) % len(self.shards)

    def drain(self) -> None:
        """Flush; return once every shard has stored every block this writer sent."""
        self.flush()
        wait_all(self.reqs + self.bell_reqs, what="transition blocks")
        # a statistics request travels behind our blocks (same source, same communicator): its reply means stored
        ask, reply = np.zeros(4, np.int64), np.zeros(4, np.int64)
        for r in self.shards:
            self.comm.Isend(ask, dest=r, tag=Tag.SAMPLE_REQUEST).Free()
            probe(self.comm, r, Tag.SAMPLE_REPLY)
            self.comm.Recv(reply, source=r, tag=Tag.SAMPLE_REPLY)

    def close(self) -> None:
        """Drain, then tell every shard this client is done."""
        self.drain()
        send_stop(self.comm, self.shards)


def send_stop(comm: MPI.Intracomm, shard_ranks: list[int]) -> None:
    empty = np.zeros(0, np.uint8)
    wait_all([comm.Isend(empty, dest=r, tag=Tag.STOP) for r in shard_ranks], what="replay stop")


@dataclass
class Batch:
    data: dict[str, np.ndarray]  # fields [B, ...]
    shard: np.ndarray  # int64 [B]: index into the shard list
    slot: np.ndarray  # int64 [B]
    gen: np.ndarray  # int64 [B]
    prob: np.ndarray  # float64 [B]: p_i^alpha / sum over all shards
    weights: np.ndarray  # float32 [B]: importance weights, max possible = 1
    size: int  # transitions stored over all shards


class ReplaySampler:
    """Learner side: global prioritized sampling over the shards, and priority updates routed back."""

    def __init__(self, comm: MPI.Intracomm, shard_ranks: list[int], fields: Fields, max_batch: int,
                 rng: np.random.Generator, inbox: NodeSegments):
        self.comm, self.shards, self.fields, self.max_batch, self.rng = comm, shard_ranks, fields, max_batch, rng
        self.inbox = inbox
        assert inbox.local(comm.rank), "a learner owns an inbox (node_segments(..., learner=True))"
        self.r_layout = reply_layout(fields, max_batch)
        self.block = self.r_layout.new()  # for replies from shards on other nodes
        self.small = np.zeros(4, np.int64)
        self.p_layout = priority_layout(max_batch)
        self.p_bufs = [[self.p_layout.new(), self.p_layout.new()] for _ in shard_ranks]
        self.p_reqs = [[MPI.REQUEST_NULL, MPI.REQUEST_NULL] for _ in shard_ranks]
        self.p_turn = [0] * len(shard_ranks)
        self._requests = [np.zeros(4, np.int64) for _ in shard_ranks]
        self._slot = 0

    def _round(self, counts: np.ndarray, offsets: np.ndarray, slot: int) -> np.ndarray:
        """Ask shard s for counts[s] rows at offsets[s] of inbox slot `slot`; returns headers int64 [S, 4]."""
        reqs = []
        for s, r in enumerate(self.shards):
            self._requests[s][:3] = counts[s], offsets[s], slot
            reqs.append(self.comm.Isend(self._requests[s], dest=r, tag=Tag.SAMPLE_REQUEST))
        heads = np.zeros((len(self.shards), 4), np.int64)
        _, inbox = self.r_layout.views(self.inbox.slot(self.comm.rank, slot))
        for _ in self.shards:
            st = probe(self.comm, MPI.ANY_SOURCE, MPI.ANY_TAG, max_sleep=SERVICE_SLEEP)
            s = self.shards.index(st.source)
            if st.tag == Tag.SAMPLE_REPLY:  # rows already in our inbox
                self.comm.Recv(self.small, source=st.source, tag=st.tag)
                heads[s] = self.small
            else:
                assert st.tag == Tag.SAMPLE_REPLY_BLOCK, f"unexpected tag {st.tag} from rank {st.source}"
                self.comm.Recv(self.block, source=st.source, tag=st.tag)
                head, rows = self.r_layout.views(self.block)
                heads[s] = head
                n, lo = int(head[0]), int(offsets[s])
                for k, v in rows.items():
                    inbox[k][lo : lo + n] = v[:n]
        wait_all(reqs, what="sample requests")
        return heads

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(size int64 [S], total p^alpha float64 [S], min p^alpha float64 [S]) of every shard."""
        zeros = np.zeros(len(self.shards), np.int64)
        heads = self._round(zeros, zeros, self._slot)
        f = heads[:, 2:4].copy().view(np.float64)
        return heads[:, 1].copy(), f[:, 0].copy(), f[:, 1].copy()

    def sample(self, batch_size: int, beta: float) -> Batch:
        """A batch in the next inbox slot (views: valid until INBOX_SLOTS - 1 more batches are sampled)."""
        assert 0 < batch_size <= self.max_batch
        slot = self._slot
        self._slot = (self._slot + 1) % INBOX_SLOTS
        if len(self.shards) == 1:  # no split to decide: one round trip
            counts = np.array([batch_size])
        else:
            _, total, _ = self.stats()
            if total.sum() <= 0:
                raise RuntimeError("replay: sampling from empty shards")
            counts = self.rng.multinomial(batch_size, total / total.sum())
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        heads = self._round(counts, offsets, slot)
        got = heads[:, 0]
        if heads[:, 1].sum() == 0:
            raise RuntimeError("replay: sampling from empty shards")
        assert (got == counts).all(), f"shards returned {got}, asked {counts}"
        f = heads[:, 2:4].copy().view(np.float64)
        totals, mins = f[:, 0], f[:, 1]
        _, rows = self.r_layout.views(self.inbox.slot(self.comm.rank, slot))
        p = rows["p"][:batch_size]
        return Batch(
            data={k: rows[k][:batch_size] for k in self.fields},
            shard=np.repeat(np.arange(len(self.shards)), counts), slot=rows["slot"][:batch_size],
            gen=rows["gen"][:batch_size], prob=p / totals.sum(),
            weights=importance_weights(p, mins.min(), beta), size=int(heads[:, 1].sum()))

    def update_priorities(self, batch: Batch, priority: np.ndarray) -> None:
        """Send new priorities (|td| + eps, [B]) for a sampled batch back to the shards that hold its slots."""
        for s, r in enumerate(self.shards):
            mask = batch.shard == s
            n = int(mask.sum())
            if not n:
                continue
            turn = self.p_turn[s]
            wait(self.p_reqs[s][turn], what="previous priority update")
            buf = self.p_bufs[s][turn]
            head, f = self.p_layout.views(buf)
            head[0] = n
            f["slot"][:n], f["gen"][:n], f["priority"][:n] = batch.slot[mask], batch.gen[mask], priority[mask]
            self.p_reqs[s][turn] = self.comm.Isend(buf, dest=r, tag=Tag.PRIORITIES)
            self.p_turn[s] ^= 1

    def close(self) -> None:
        wait_all([r for rs in self.p_reqs for r in rs], what="priority updates")
        send_stop(self.comm, self.shards)


class Prefetcher:
    """Samples the next batch in a helper thread while the caller trains on the current one."""

    def __init__(self, sampler: ReplaySampler, batch_size: int, beta_fn):
        self.sampler, self.batch_size, self.beta_fn = sampler, batch_size, beta_fn
        self.q: queue.Queue = queue.Queue(maxsize=1)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="replay-prefetch", daemon=True)
        self.thread.start()

    def _run(self):
        while not self._stop.is_set():
            batch = self.sampler.sample(self.batch_size, self.beta_fn())
            while not self._stop.is_set():
                try:
                    self.q.put(batch, timeout=0.05)
                    break
                except queue.Full:
                    continue

    def next(self, timeout: float = 60.0) -> Batch:
        return self.q.get(timeout=timeout)

    def close(self):
        self._stop.set()
        self.thread.join(timeout=60)
