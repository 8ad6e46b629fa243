"""Clients of the replay shards: actors write blocks of transitions, learners sample globally.

Global sampling (`ReplaySampler.request`/`receive`): split the batch across shards with a
multinomial draw in proportion to their totals of p^alpha (as of their last replies; a statistics
round the first time); each shard samples its share (stratified) and replies with rows, slots,
generations and p^alpha, plus its fresh size, total and min. Each sample's probability is p_i^alpha
/ sum over all shards of their totals, and its importance weight (p_i / p_min)^-beta uses the
minimum over all shards: what one unsharded buffer holding every transition would give, but for the
split, which lags by one batch's priority updates.

On a node, bulk data moves through shared memory (see replay.shard): writers pack blocks into their
outbox, and shards gather samples straight into the learner's inbox slot, so a batch is built with
one copy, as in-process. A shard on another host replies with the rows asked for only. A `Batch`
holds views of an inbox slot: it stays valid until INBOX_SLOTS - 1 further batches have been
received. Replies are received politely (probe, then `Recv`); sends are `Isend` from double buffers.
A learner `request`s its next batch before training on the current one and `receive`s it after, so
sampling overlaps training with no helper thread. Use the replay channel
(`Runtime.channels.replay`): a communicator of the plane's own.
"""

from collections import deque
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi._core import fence
from drlmpi.comm.segments import NodeSegments
from drlmpi.comm.tags import Tag
from drlmpi.errors import invariant
from drlmpi.replay.frames import FRAMES, pack, ref
from drlmpi.replay.shard import (
    INBOX_SLOTS,
    SERVICE_SLEEP,
    Fields,
    priority_layout,
    reply_layout,
    reply_rows_layout,
    transition_layout,
)
from drlmpi.replay.storage import importance_weights
from drlmpi.runtime import probe, wait, wait_all


class ReplayWriter:
    """Actor side: pack transitions into blocks of `rows` and Isend each to a shard (round robin from `first`)."""

    def __init__(self, comm: MPI.Intracomm, shard_ranks: list[int], fields: Fields, rows: int, outbox: NodeSegments,
                 first: int = 0, stacks: tuple[str, ...] = ()):
        self.comm, self.shards, self.fields, self.outbox = comm, shard_ranks, fields, outbox
        self.stacks = stacks  # stacked fields sent as compact frames (replay.frames.pack per block)
        self.doorbells = [np.zeros(2, np.int64) for _ in range(outbox.slots)]
        self.bell_reqs = [MPI.REQUEST_NULL] * outbox.slots
        self.layout = transition_layout(fields, rows, stacks)
        self.frames_end = self.layout.offset(FRAMES) if stacks else self.layout.nbytes
        self.frames_sent = 0
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
        stacked: dict[str, list] = {k: [] for k in self.stacks}
        while filled < n:
            batch, prio = self.pending[0]
            take = min(n - filled, len(prio))
            for k in self.fields:
                if k in stacked:
                    stacked[k].append(batch[k][:take])
                else:
                    out[k][filled : filled + take] = batch[k][:take]
            out["priority"][filled : filled + take] = prio[:take]
            filled += take
            if take == len(prio):
                self.pending.pop(0)
            else:
                self.pending[0] = ({k: v[take:] for k, v in batch.items()}, prio[take:])
        head[:2] = n, 0
        nbytes = self.layout.nbytes
        if self.stacks:
            refs, f = pack([np.concatenate(v) if len(v) > 1 else v[0] for v in stacked.values()], out[FRAMES][0])
            for k, r in zip(stacked, refs):
                out[ref(k)][:n] = r
            head[1] = f
            self.frames_sent += f
            nbytes = self.frames_end + f * out[FRAMES][0, 0].nbytes
        self.pending_rows -= n
        self.sent_rows += n
        if shm:
            self.doorbells[slot][:] = (slot, n)
            fence()  # the slot's contents before the doorbell
            self.bell_reqs[slot] = self.comm.Isend(self.doorbells[slot], dest=dest, tag=Tag.TRANSITIONS_SHM)
        else:
            self.reqs[self.turn] = self.comm.Isend(buf[:nbytes], dest=dest, tag=Tag.TRANSITIONS)
            self.turn ^= 1
        self.next_shard = (self.next_shard + 1) % len(self.shards)

    def drain(self) -> None:
        """Flush; return once every shard has stored every block this writer sent."""
        self.flush()
        wait_all(self.reqs + self.bell_reqs, what="transition blocks")
        # a statistics request travels behind our blocks (same source, same communicator): its reply means stored
        ask, reply = np.zeros(4, np.int64), np.zeros(8, np.int64)
        for r in self.shards:
            self.comm.Isend(ask, dest=r, tag=Tag.SAMPLE_REQUEST).Free()
            probe(self.comm, r, Tag.SAMPLE_REPLY, what=f"replay shard {r} to confirm our blocks are stored")
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
    counts: np.ndarray  # int64 [S]: rows from each shard; shard s's rows are contiguous, in shard order
    demo: np.ndarray  # bool [B]: rows from the demo replay (R2D3; each shard's come after its agent rows)
    slot: np.ndarray  # int64 [B]
    gen: np.ndarray  # int64 [B]
    prob: np.ndarray  # float64 [B]: p_i^alpha / sum over all shards (of the agent or the demo replay)
    weights: np.ndarray  # float32 [B]: importance weights, max possible = 1 (in each replay)
    size: int  # rows stored over all shards (agent replay)


class ReplaySampler:
    """Learner side: global prioritized sampling over the shards, and priority updates routed back.

    `request` asks the shards for a batch and returns at once; `receive` collects the oldest one asked
    for. A learner asks for batch k + 1 before it trains on batch k, so the shards gather it into the
    inbox during the training step: the round trip is hidden without a helper thread.
    """

    def __init__(self, comm: MPI.Intracomm, shard_ranks: list[int], fields: Fields, max_batch: int,
                 rng: np.random.Generator, inbox: NodeSegments):
        self.comm, self.shards, self.fields, self.max_batch, self.rng = comm, shard_ranks, fields, max_batch, rng
        self.inbox = inbox
        invariant(inbox.local(comm.rank), "a learner owns an inbox (node_segments(..., learner=True))")
        self.r_layout = reply_layout(fields, max_batch)
        self.block = self.r_layout.new()  # for replies from shards on other nodes
        self.small = np.zeros(8, np.int64)
        self.p_layout = priority_layout(max_batch)
        self.p_bufs = [[self.p_layout.new(), self.p_layout.new()] for _ in shard_ranks]
        self.p_views = [[self.p_layout.views(b) for b in bufs] for bufs in self.p_bufs]
        self.p_reqs = [[MPI.REQUEST_NULL, MPI.REQUEST_NULL] for _ in shard_ranks]
        self.p_turn = [0] * len(shard_ranks)
        self._asks = np.zeros((INBOX_SLOTS, len(shard_ranks), 4), np.int64)  # request buffers, one row per slot
        self._pending: deque = deque()  # (slot, counts [S], offsets [S], Isend requests), oldest first
        self._slot = 0
        self._rows: list[dict[str, np.ndarray] | None] = [None] * INBOX_SLOTS  # field views of each inbox slot
        self._totals: np.ndarray | None = None  # float64 [S]: total p^alpha per shard, from the last reply
        self._demo_totals = np.zeros(len(shard_ranks))  # the same, of the demo replays

    def _ask(self, counts: np.ndarray, slot: int, demos: np.ndarray | None = None) -> None:
        """Isend shard s a request for counts[s] agent rows and demos[s] demo rows into inbox slot `slot`, behind
        the earlier ones."""
        invariant(len(self._pending) < INBOX_SLOTS - 1, "too many batches asked for and not received")
        demos = np.zeros_like(counts) if demos is None else demos
        offsets = np.concatenate([[0], np.cumsum(counts + demos)[:-1]])
        reqs = []
        for s, r in enumerate(self.shards):
            self._asks[slot, s] = counts[s], offsets[s], slot, demos[s]
            reqs.append(self.comm.Isend(self._asks[slot, s], dest=r, tag=Tag.SAMPLE_REQUEST))
        self._pending.append((slot, counts, demos, offsets, reqs))

    def _inbox_rows(self, slot: int) -> dict[str, np.ndarray]:
        """Field views [max_batch, ...] of our inbox slot (built once per slot)."""
        if self._rows[slot] is None:
            self._rows[slot] = self.r_layout.views(self.inbox.slot(self.comm.rank, slot))[1]
        return self._rows[slot]

    def _collect(self) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
        """Receive every shard's reply to the oldest request; returns (slot, counts [S], demo counts [S],
        headers int64 [S, 8])."""
        slot, counts, demos, offsets, reqs = self._pending.popleft()
        heads = np.zeros((len(self.shards), 8), np.int64)
        inbox = self._inbox_rows(slot)
        for s, r in enumerate(self.shards):  # replies from one shard arrive in the order asked
            st = probe(self.comm, r, MPI.ANY_TAG, max_sleep=SERVICE_SLEEP, what=f"replay shard {r}'s sample reply")
            if st.tag == Tag.SAMPLE_REPLY:  # rows already in our inbox
                self.comm.Recv(self.small, source=r, tag=st.tag)
                fence()  # the rows the shard wrote before its reply
                heads[s] = self.small
            else:
                invariant(st.tag == Tag.SAMPLE_REPLY_BLOCK, f"unexpected tag {st.tag} from rank {r}")
                self.comm.Recv(self.block[: st.Get_count(MPI.BYTE)], source=r, tag=st.tag)  # n rows only
                head = self.block[:64].view(np.int64)
                n, lo = int(head[0] + head[4]), int(offsets[s])
                head, rows = reply_rows_layout(self.r_layout, n).views(self.block)
                heads[s] = head
                for k, v in rows.items():
                    inbox[k][lo : lo + n] = v[:n]
        wait_all(reqs, what="sample requests")
        return slot, counts, demos, heads

    def stats(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(size int64 [S], total p^alpha float64 [S], min p^alpha float64 [S]) of every shard's agent replay."""
        invariant(not self._pending, "statistics are asked for between batches only")
        self._ask(np.zeros(len(self.shards), np.int64), self._slot)
        _, _, _, heads = self._collect()
        f = heads[:, 2:4].copy().view(np.float64)
        self._totals, self._demo_totals = f[:, 0].copy(), heads[:, 6].copy().view(np.float64)
        return heads[:, 1].copy(), self._totals.copy(), f[:, 1].copy()

    def _split(self, n: int, totals: np.ndarray) -> np.ndarray:
        """n rows over the shards in proportion to their totals (one batch old: no extra round trip)."""
        if len(self.shards) == 1 or n == 0:
            return np.array([n] + [0] * (len(self.shards) - 1))
        if totals.sum() <= 0:
            raise RuntimeError("replay: sampling from empty shards")
        return self.rng.multinomial(n, totals / totals.sum())

    def request(self, batch_size: int, demo_ratio: float = 0.0) -> None:
        """Ask for a batch into the next inbox slot; returns at once. With demo_ratio, each row comes from the
        demo replays with that probability (R2D3)."""
        invariant(0 < batch_size <= self.max_batch, f"batch of {batch_size}: 1 to {self.max_batch} rows")
        if self._totals is None and (len(self.shards) > 1 or demo_ratio > 0):
            self.stats()
        d = self.rng.binomial(batch_size, demo_ratio) if demo_ratio > 0 and self._demo_totals.sum() > 0 else 0
        self._ask(self._split(batch_size - d, self._totals), self._slot, self._split(d, self._demo_totals))
        self._slot = (self._slot + 1) % INBOX_SLOTS

    def receive(self, beta: float) -> Batch:
        """The oldest batch asked for (views of its inbox slot: valid until INBOX_SLOTS - 1 more are received).
        Importance weights use the minimum over all shards of the row's replay (agent or demo)."""
        slot, counts, demos, heads = self._collect()
        per_shard = counts + demos
        batch_size = int(per_shard.sum())
        if (counts.sum() and heads[:, 1].sum() == 0) or (demos.sum() and heads[:, 5].sum() == 0):
            raise RuntimeError("replay: sampling from empty shards")
        invariant((heads[:, 0] == counts).all() and (heads[:, 4] == demos).all(),
                  f"shards returned {heads[:, [0, 4]]}, asked {counts}, {demos}")
        f = heads[:, [2, 3, 6, 7]].copy().view(np.float64)
        self._totals, self._demo_totals = f[:, 0].copy(), f[:, 2].copy()
        rows = self._inbox_rows(slot)
        p = rows["p"][:batch_size]
        demo = np.concatenate([np.repeat([False, True], [c, d]) for c, d in zip(counts, demos)])
        total = np.where(demo, f[:, 2].sum(), f[:, 0].sum())
        p_min = np.where(demo, f[:, 3].min(), f[:, 1].min())
        return Batch(data={k: rows[k][:batch_size] for k in self.fields}, counts=per_shard, demo=demo,
                     slot=rows["slot"][:batch_size], gen=rows["gen"][:batch_size], prob=p / total,
                     weights=importance_weights(p, p_min, beta), size=int(heads[:, 1].sum()))

    def sample(self, batch_size: int, beta: float, demo_ratio: float = 0.0) -> Batch:
        """Request and receive one batch (no overlap)."""
        self.request(batch_size, demo_ratio)
        return self.receive(beta)

    def update_priorities(self, batch: Batch, priority: np.ndarray) -> None:
        """Send new priorities (|td| + eps, [B]) for a sampled batch back to the shards that hold its slots."""
        hi = 0
        for s, r in enumerate(self.shards):  # shard s's rows are [lo, hi)
            n = int(batch.counts[s])
            lo, hi = hi, hi + n
            if not n:
                continue
            turn = self.p_turn[s]
            wait(self.p_reqs[s][turn], what="previous priority update")
            buf = self.p_bufs[s][turn]
            head, f = self.p_views[s][turn]
            head[0] = n
            f["slot"][:n], f["gen"][:n], f["priority"][:n] = batch.slot[lo:hi], batch.gen[lo:hi], priority[lo:hi]
            self.p_reqs[s][turn] = self.comm.Isend(buf, dest=r, tag=Tag.PRIORITIES)
            self.p_turn[s] ^= 1

    def close(self) -> None:
        """Receive the batches still asked for (every message must be received), then STOP to every shard."""
        while self._pending:
            self._collect()
        wait_all([r for rs in self.p_reqs for r in rs], what="priority updates")
        send_stop(self.comm, self.shards)
