"""Central inference plane (GA3C, SEED RL): actors send observations, a server batches them through the policy and
answers; the server, not the actor, assembles the trajectories. Never pickled.

A request is one block (comm.blocks) of `request` fields, each [E, ...] for the actor's E envs, with the header
(actor index, k: the actor's step number, 0 on its first request); a reply is one block of `reply` fields with the
header (weights version that acted, k). Each actor has at most one request outstanding.

  INFER_SHM        actor -> server on its node   int64 [2] (k, 0): the request is in the actor's node segment
  INFER_REPLY_SHM  server -> actor on its node   int64 [2] (version, k): the reply is in the actor's segment
  INFER_REQUEST    actor -> server elsewhere     the request block
  INFER_REPLY      server -> actor elsewhere     the reply block
  STOP             actor -> server               empty, after its last reply

Batching: `InferenceServer.collect` returns as soon as it holds `batch` requests, or `timeout` seconds after the
first one of the batch arrived, whichever comes first; it never waits for an actor that has said STOP, so with
fewer live actors than `batch` it answers as soon as every live actor is waiting. It sleeps between looks (backing
off to INFER_MAX_SLEEP, never past the batch's deadline): it never busy-spins.

Memory ordering: as comm.trajectories: the writer syncs (Win.Sync + fence) before it rings, the reader fences after
the doorbell. The actor's segment holds its request and its reply; one request outstanding makes it safe.

`Assembler` keeps each actor's trajectory on the server: step k of actor j goes to row t of j's current unroll
(fields [T + 1, E, ...], recurrent state [1, E, ...] at its start); full unrolls are handed on in place.
"""

import time
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi._core import fence
from drlmpi.comm.blocks import BlockLayout
from drlmpi.comm.segments import NodeSegments, sync
from drlmpi.comm.tags import Tag
from drlmpi.errors import invariant
from drlmpi.runtime import wait, wait_all
from drlmpi.runtime.wait import FIRST_SLEEP, PEER_TIMEOUT, poll

Fields = dict[str, tuple[tuple[int, ...], np.dtype]]  # name -> (shape [E, ...], dtype)
HEADER = 2
INFER_MAX_SLEEP = 2e-4  # a round trip per env step: sleep less than the 1 ms of other waits


def assign(actors: list[int], servers: list[int], host_of: list[int]) -> dict[int, int]:
    """actor rank -> server rank: the servers of the actor's host in turn, or all servers in turn where its host has
    none."""
    out, turn = {}, {}
    for a in actors:
        here = [s for s in servers if host_of[s] == host_of[a]] or servers
        k = turn.get(tuple(here), 0)
        out[a], turn[tuple(here)] = here[k % len(here)], k + 1
    return out


def _views(layout: BlockLayout, buf: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    head, f = layout.views(buf)
    return head, {k: v[0] for k, v in f.items()}


@dataclass
class InferencePlane:
    comm: MPI.Intracomm  # the inference channel
    request: BlockLayout
    reply: BlockLayout
    segments: NodeSegments  # each actor's request and reply, on its node

    @staticmethod
    def create(comm: MPI.Intracomm, node: MPI.Intracomm, request: Fields, reply: Fields, actor: bool
               ) -> "InferencePlane":
        """Collective over node: an actor gets one segment holding its request and its reply."""
        req, rep = BlockLayout.of(request, 1, HEADER), BlockLayout.of(reply, 1, HEADER)
        return InferencePlane(comm, req, rep, NodeSegments(comm, node, 1, req.nbytes + rep.nbytes if actor else 0))

    def free(self) -> None:
        """Collective over the node, after every rank's role: free the actors' segments' window."""
        self.segments.free()

    def client(self, server: int, index: int) -> "InferenceClient":
        return InferenceClient(self, server, index)

    def server(self, actors: list[int], batch: int, timeout: float) -> "InferenceServer":
        return InferenceServer(self, actors, batch, timeout)

    def _buffers(self, actor: int, local: bool) -> tuple[np.ndarray, np.ndarray]:
        """(request, reply) bytes of an actor: in its node segment, or new buffers."""
        n = self.request.nbytes
        buf = self.segments.slot(actor, 0) if local else np.zeros(n + self.reply.nbytes, np.uint8)
        return buf[:n], buf[n : n + self.reply.nbytes]


class InferenceClient:
    """An actor's side: fill `request` ([E, ...] views) in place, `post`, then `receive` the `reply` views."""

    def __init__(self, plane: InferencePlane, server: int, index: int):
        self.plane, self.comm, self.server, self.index = plane, plane.comm, server, index
        self.local = plane.segments.same_node(server)
        self._req, self._rep = plane._buffers(self.comm.rank, self.local)
        self._req_head, self.request = _views(plane.request, self._req)
        self._rep_head, self.reply = _views(plane.reply, self._rep)
        self.k = 0
        self._bell, self._answer = np.zeros(2, np.int64), np.zeros(2, np.int64)
        self._send = self._recv = MPI.REQUEST_NULL

    def post(self) -> None:
        """Hand the filled request to the server (the reply's receive is posted first)."""
        invariant(self._recv == MPI.REQUEST_NULL, "one request outstanding: receive its reply first")
        self._req_head[:] = self.index, self.k
        wait(self._send, what="the previous request's send")  # done: its reply has come
        if self.local:
            sync(self.plane.segments.win)  # the request before the doorbell
            self._bell[0] = self.k
            self._recv = self.comm.Irecv(self._answer, source=self.server, tag=Tag.INFER_REPLY_SHM)
            self._send = self.comm.Isend(self._bell, dest=self.server, tag=Tag.INFER_SHM)
        else:
            self._recv = self.comm.Irecv(self._rep, source=self.server, tag=Tag.INFER_REPLY)
            self._send = self.comm.Isend(self._req, dest=self.server, tag=Tag.INFER_REQUEST)
        self.k += 1

    def receive(self, on_wait=None, timeout: float = PEER_TIMEOUT) -> int:
        """Wait politely for the reply (on_wait() runs meanwhile); returns the weights version that acted."""
        def answered():
            if on_wait is not None:
                on_wait()
            return True if self._recv.Test() else None

        poll(answered, timeout, f"the inference server's answer (rank {self.server})", INFER_MAX_SLEEP)
        self._recv = MPI.REQUEST_NULL
        if self.local:
            fence()  # the reply the server wrote before ringing
        return int(self._rep_head[0])

    def close(self) -> None:
        """After the last reply: STOP to the server."""
        invariant(self._recv == MPI.REQUEST_NULL, "close after the last reply")
        wait(self._send, what="the last request's send")
        wait(self.comm.Isend(np.zeros(0, np.uint8), dest=self.server, tag=Tag.STOP), what="the stop to the server")


class InferenceServer:
    """A server's side: `collect` a batch of waiting actors, read their `request(j)`, fill `reply(j)`, `answer`."""

    def __init__(self, plane: InferencePlane, actors: list[int], batch: int, timeout: float):
        self.plane, self.comm, self.actors, self.B, self.timeout = plane, plane.comm, list(actors), batch, timeout
        self.pos = {a: j for j, a in enumerate(self.actors)}
        self.live = set(range(len(self.actors)))
        self.local = [plane.segments.same_node(a) for a in self.actors]
        bufs = [plane._buffers(a, loc) for a, loc in zip(self.actors, self.local)]
        self._req = [b[0] for b in bufs]
        self._rep = [b[1] for b in bufs]
        req = [_views(plane.request, b) for b in self._req]
        rep = [_views(plane.reply, b) for b in self._rep]
        self._requests, self._replies = [r[1] for r in req], [r[1] for r in rep]
        self._req_heads, self._rep_heads = [r[0] for r in req], [r[0] for r in rep]
        self.k = np.zeros(len(self.actors), np.int64)  # step number of each actor's pending request
        self._bells = np.zeros((len(self.actors), 2), np.int64)  # INFER_SHM in, then INFER_REPLY_SHM out
        self._sends = [MPI.REQUEST_NULL] * len(self.actors)
        self._status = MPI.Status()
        self.batches = self.requests = 0

    def request(self, j: int) -> dict[str, np.ndarray]:
        return self._requests[j]

    def reply(self, j: int) -> dict[str, np.ndarray]:
        return self._replies[j]

    def _take(self, pending: list[int]) -> None:
        st = self._status
        src, tag = st.source, st.tag
        j = self.pos.get(src)
        if j is None:
            raise RuntimeError(f"inference channel: message (tag {tag}) from rank {src}, not one of this server's "
                               f"actors")
        if tag == Tag.INFER_SHM:
            self.comm.Recv(self._bells[j], source=src, tag=tag)
            self.k[j] = self._bells[j, 0]
            pending.append(j)
        elif tag == Tag.INFER_REQUEST:
            self.comm.Recv(self._req[j], source=src, tag=tag)
            self.k[j] = self._req_heads[j][1]
            pending.append(j)
        elif tag == Tag.STOP:
            self.comm.Recv(np.zeros(0, np.uint8), source=src, tag=tag)
            self.live.discard(j)
        else:
            raise RuntimeError(f"inference channel: unexpected tag {tag} from rank {src}")

    def collect(self, on_idle=None, idle_timeout: float = PEER_TIMEOUT) -> list[int] | None:
        """Wait for the next batch: the positions j (in `actors`) of the waiting actors, in arrival order, or None
        once every actor has said STOP. Returns at `batch` requests, when every live actor waits, or `timeout` s
        after the batch's first request; on_idle() runs between looks."""
        pending: list[int] = []
        first = None
        delay, last = FIRST_SLEEP, time.monotonic()
        while True:
            while len(pending) < self.B and self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, self._status):
                self._take(pending)
                last = time.monotonic()
                if first is None and pending:
                    first = last
            if not pending and not self.live:
                return None
            now = time.monotonic()
            if pending and (len(pending) >= min(self.B, len(self.live)) or now - first >= self.timeout):
                if any(self.local[j] for j in pending):
                    fence()  # the requests the actors wrote before ringing
                self.batches += 1
                self.requests += len(pending)
                return pending
            if on_idle is not None:
                on_idle()
            if now - last > idle_timeout:
                raise TimeoutError(f"timed out after {idle_timeout:.1f} s waiting for a request from the actors "
                                   f"(ranks {sorted(self.actors[j] for j in self.live)})")
            sleep = min(delay, INFER_MAX_SLEEP)
            if first is not None:
                sleep = max(0.0, min(sleep, first + self.timeout - now))
            time.sleep(sleep)
            delay = min(delay * 2, INFER_MAX_SLEEP)

    def answer(self, js: list[int], version: int) -> None:
        """Send the filled replies of actors js (acted on weights `version`)."""
        if any(self.local[j] for j in js):
            sync(self.plane.segments.win)  # the replies before the doorbells
        for j in js:
            wait(self._sends[j], what="the previous answer's send")  # done: the actor asked again since
            self._rep_heads[j][:] = version, self.k[j]
            if self.local[j]:
                self._bells[j] = version, self.k[j]
                self._sends[j] = self.comm.Isend(self._bells[j], dest=self.actors[j], tag=Tag.INFER_REPLY_SHM)
            else:
                self._sends[j] = self.comm.Isend(self._rep[j], dest=self.actors[j], tag=Tag.INFER_REPLY)

    def close(self) -> None:
        wait_all(self._sends, what="the last answers to be received")


class Assembler:
    """Each actor's trajectory on the server, in step order, written in place into storage the caller provides.

    acquire(j) -> (handle, {field: [T + 1, E, ...] or [1, E, ...]}) gives storage for actor j's next unroll;
    emit(j, handle, version) hands on a full one (version: the weights that acted on its first step);
    discard(j, handle) gives back the storage of partial unrolls at `close`.
    `add` files one step: `prev` fields (the outcome of the actor's previous step, e.g. reward and discount) at the
    row before, `now` fields (the observation and the server's answer) at this step's row, and `start` fields (the
    recurrent state entering row 0) when an unroll begins. A full unroll gets the next step's `now` fields as its
    row T (the bootstrap observation) before it is emitted. A `first` step (the actor's first request) drops the
    actor's partial unroll.
    """

    def __init__(self, n_actors: int, unroll: int, acquire, emit, discard=None):
        self.T, self.acquire, self.emit, self.discard = unroll, acquire, emit, discard
        self.t = [0] * n_actors
        self.cur: list = [None] * n_actors  # (handle, views) of each actor's unroll
        self.version = [0] * n_actors
        self.emitted = 0

    def begins(self, j: int, first: bool) -> bool:
        """Does actor j's next step (a `first` one or not) open a new unroll (so `add` wants its `start`)?"""
        return first or self.t[j] in (0, self.T)

    def add(self, j: int, first: bool, prev: dict, now: dict, start: dict | None = None, version: int = 0) -> None:
        if self.cur[j] is None:
            self.cur[j] = self.acquire(j)
        t = 0 if first else self.t[j]
        u = self.cur[j][1]
        if t > 0:
            for k, v in prev.items():
                u[k][t - 1] = v
        if t == self.T:
            for k, v in now.items():
                u[k][self.T] = v
            self.emit(j, self.cur[j][0], self.version[j])
            self.emitted += 1
            self.cur[j] = self.acquire(j)
            u, t = self.cur[j][1], 0
        if t == 0:
            self.version[j] = version
            for k, v in (start or {}).items():
                u[k][0] = v
        for k, v in now.items():
            u[k][t] = v
        self.t[j] = t + 1

    def close(self) -> None:
        """Give back every actor's partial unroll (their actors have stopped)."""
        for j, cur in enumerate(self.cur):
            if cur is not None and self.discard is not None:
                self.discard(j, cur[0])
            self.cur[j] = None
