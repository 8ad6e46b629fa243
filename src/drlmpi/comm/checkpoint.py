"""Checkpoint requests and replies between the lead learner and every other rank; stop requests from signals.

  CHECKPOINT       lead -> rank   int64 [3]: checkpoint id, env steps, flags (LAST, SIGNALLED)
  CHECKPOINT_DONE  rank -> lead   uint8 [n]: int64 length of a JSON header; the header (who, the numpy bit
                                  generator state, part files written, whether it sent a SIGNAL); the
                                  torch RNG state bytes (none from a rank without torch)
  SIGNAL           rank -> lead   int64 [1]: the signal number (at most once per rank)

Requests reach actors and learners on the control channel, replay shards on the replay channel and
parameter-server shards on the params channel (each handles them in its service loop, in order with
the rest of its traffic); replies and signals travel on the control channel. A rank answers each
request at its next safe point. Every rank gets exactly one request flagged LAST, and answers it
before finishing its role, so no request is ever left unreceived at shutdown.

A rank whose part file is large (a replay shard) may answer later: its on_request returns a
`concurrent.futures.Future` of the parts (a thread writes them from a copy) and it keeps serving; the answer,
with the RNG state taken when the request came, goes out once the write is done (`pump`), and always before the
next request is answered, so replies keep their order.
"""

import json
import sys
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi import signals
from drlmpi.comm.tags import Tag
from drlmpi.runtime import probe, wait
from drlmpi.runtime.wait import PEER_TIMEOUT, poll

LAST = 1  # no request follows this one: answer it, then finish the role
SIGNALLED = 2  # the job stops because of a signal: exit with signals.REQUEUE_EXIT


@dataclass(frozen=True)
class Request:
    id: int
    env_steps: int
    flags: int

    @property
    def last(self) -> bool:
        return bool(self.flags & LAST)

    @property
    def signalled(self) -> bool:
        return bool(self.flags & SIGNALLED)


def rng_state(gen: np.random.Generator) -> dict:
    """{"numpy": the bit generator's state (JSON-able), "torch": torch's CPU RNG state, uint8 [n]: shape (0,) on a rank
    that never imported torch (a model-less actor)}."""
    torch = sys.modules.get("torch")
    return {"numpy": gen.bit_generator.state,
            "torch": torch.get_rng_state().numpy().copy() if torch else np.zeros(0, np.uint8)}


def set_rng_state(gen: np.random.Generator, state: dict) -> None:
    """Restore both generators; torch's only where this rank uses torch and the state holds one."""
    gen.bit_generator.state = state["numpy"]
    torch = sys.modules.get("torch")
    if torch is not None and len(state["torch"]):
        torch.set_rng_state(torch.from_numpy(np.ascontiguousarray(state["torch"], dtype=np.uint8)))


def encode_reply(header: dict, torch_state: np.ndarray) -> np.ndarray:
    head = json.dumps(header).encode()
    return np.concatenate([np.array([len(head)], np.int64).view(np.uint8), np.frombuffer(head, np.uint8),
                           np.asarray(torch_state, np.uint8)])


def decode_reply(buf: np.ndarray) -> tuple[dict, np.ndarray]:
    n = int(buf[:8].view(np.int64)[0])
    return json.loads(buf[8 : 8 + n].tobytes()), buf[8 + n :].copy()

LAST_REQUEST_TIMEOUT = 86_400.0  # seconds a rank that finished early waits for the final checkpoint's request: until
# the slowest actor ends (a dead lead ends the job through MPI's abort sooner)

class CheckpointClient:
    """A rank's side of the protocol: answer requests, forward this rank's signal to the lead once."""

    def __init__(self, control: MPI.Intracomm, lead: int, who: str, gen: np.random.Generator,
                 requests: MPI.Intracomm | None = None):
        """control: the control channel; lead: the lead learner's rank; who: "<role>-<index>"; gen: this
        rank's generator (saved with every reply); requests: the channel requests arrive on (default control)."""
        self.control, self.lead, self.who, self.gen = control, lead, who, gen
        self.requests = requests or control
        self._req_buf, self._sig_buf, self._reply = np.zeros(3, np.int64), np.zeros(1, np.int64), None
        self._reply_req, self._sig_req = MPI.REQUEST_NULL, MPI.REQUEST_NULL
        self.signalled = False  # this rank sent a SIGNAL
        self.last: Request | None = None  # the LAST request, once received
        self._deferred: tuple[Request, dict, Future] | None = None  # a request whose parts a thread writes

    def forward_signal(self) -> None:
        """If a signal reached this rank, tell the lead (once)."""
        if not self.signalled and signals.asked() and self.last is None:
            self._sig_buf[0] = signals.asked()
            self._sig_req = self.control.Isend(self._sig_buf, dest=self.lead, tag=Tag.SIGNAL)
            self.signalled = True

    def poll(self, on_request=None) -> Request | None:
        """At a safe point: forward a signal; handle a request if one has arrived (see `handle`)."""
        self.forward_signal()
        if self.last is None and self.requests.Iprobe(self.lead, Tag.CHECKPOINT):
            return self.handle(on_request)
        return None

    def handle(self, on_request=None) -> Request:
        """Receive the request a probe saw and answer it now, unless it is the LAST one (`close` answers
        that). on_request(req) -> {part name: {file, sha256}} writes this rank's part files, if it has any,
        or returns a Future of them (the answer waits for it: `pump`)."""
        self.requests.Recv(self._req_buf, source=self.lead, tag=Tag.CHECKPOINT)
        req = Request(*(int(x) for x in self._req_buf))
        self.finish_deferred()
        if req.last:
            self.last = req
        else:
            state = rng_state(self.gen)
            parts = on_request(req) if on_request else None
            if isinstance(parts, Future):
                self._deferred = (req, state, parts)
            else:
                self.reply(req, parts, state)
        return req

    def pump(self) -> None:
        """Send a deferred answer whose parts are written (cheap when none is waiting)."""
        if self._deferred is not None and self._deferred[2].done():
            self.finish_deferred()

    def finish_deferred(self) -> None:
        """Wait for a deferred answer's parts (a write error is raised here) and send it."""
        if self._deferred is None:
            return
        req, state, parts = self._deferred
        self._deferred = None
        poll(lambda: True if parts.done() else None, PEER_TIMEOUT, f"part files of checkpoint {req.id}", 0.01)
        self.reply(req, parts.result(), state)

    def reply(self, req: Request, parts: dict | None = None, state: dict | None = None) -> None:
        """Answer req with this rank's RNG state (now, or `state` taken earlier) and the part files it wrote."""
        wait(self._reply_req, what="the previous checkpoint reply")
        state = state or rng_state(self.gen)
        header = {"id": req.id, "who": self.who, "numpy": state["numpy"], "parts": parts or {},
                  "signalled": self.signalled}
        self._reply = encode_reply(header, state["torch"])
        self._reply_req = self.control.Isend(self._reply, dest=self.lead, tag=Tag.CHECKPOINT_DONE)

    def close(self, on_request=None) -> Request:
        """End of the role: handle requests until the LAST one, answer it, and wait until the replies are
        received. Sets signals.stopping when the LAST request says a signal stopped the job. Returns it."""
        self.forward_signal()
        self.finish_deferred()
        while self.last is None:
            probe(self.requests, self.lead, Tag.CHECKPOINT, what="the lead learner's last checkpoint request",
                  max_sleep=0.01, timeout=LAST_REQUEST_TIMEOUT)
            self.handle(on_request)
        self.finish_deferred()
        parts = on_request(self.last) if on_request else None
        self.reply(self.last, parts.result() if isinstance(parts, Future) else parts)
        wait(self._reply_req, what="the last checkpoint reply to be received")
        wait(self._sig_req, what="the signal message to be received")
        if self.last.signalled:
            signals.stopping = True
        return self.last


class CheckpointCollector:
    """The lead's side: send requests to every other rank, collect replies and signals."""

    def __init__(self, control: MPI.Intracomm, targets: dict[str, tuple[int, MPI.Intracomm]]):
        """targets: who ("<role>-<index>") -> (rank, channel its requests travel on)."""
        self.control, self.targets = control, targets
        self.pending: dict[int, dict[str, dict]] = {}  # checkpoint id -> who -> reply (header + torch state)
        self.signals: dict[int, int] = {}  # rank -> signal number received
        self.announced: set[int] = set()  # ranks whose replies say they sent a signal
        self._bufs: list[tuple[np.ndarray, MPI.Request]] = []
        self._status = MPI.Status()
        self.got_last: set[str] = set()  # targets sent their LAST request

    def request(self, ckpt_id: int, env_steps: int, flags: int = 0, only: list[str] | None = None) -> None:
        """Isend a request to every target (or those named in `only`) that has not had its LAST one."""
        self._bufs = [(b, r) for b, r in self._bufs if not r.Test()]
        self.pending.setdefault(ckpt_id, {})
        for who in only if only is not None else self.targets:
            if who in self.got_last:
                continue
            rank, comm = self.targets[who]
            buf = np.array([ckpt_id, env_steps, flags], np.int64)
            self._bufs.append((buf, comm.Isend(buf, dest=rank, tag=Tag.CHECKPOINT)))
            if flags & LAST:
                self.got_last.add(who)

    def poll(self) -> None:
        """Receive every reply and signal that has arrived."""
        st = self._status
        while self.control.Iprobe(MPI.ANY_SOURCE, Tag.SIGNAL, st):
            buf = np.zeros(1, np.int64)
            self.control.Recv(buf, source=st.source, tag=Tag.SIGNAL)
            self.signals[st.source] = int(buf[0])
        while self.control.Iprobe(MPI.ANY_SOURCE, Tag.CHECKPOINT_DONE, st):
            buf = np.empty(st.Get_count(MPI.BYTE), np.uint8)
            self.control.Recv(buf, source=st.source, tag=Tag.CHECKPOINT_DONE)
            header, torch_state = decode_reply(buf)
            if header["signalled"]:
                self.announced.add(st.source)
            self.pending.setdefault(header["id"], {})[header["who"]] = {**header, "torch": torch_state}

    def complete(self, ckpt_id: int) -> bool:
        return len(self.pending.get(ckpt_id, ())) == len(self.targets)

    def take(self, ckpt_id: int) -> dict[str, dict]:
        return self.pending.pop(ckpt_id)

    def finish(self) -> None:
        """After the LAST replies: receive the signals their senders announced; wait for the request sends."""
        for rank in sorted(self.announced - set(self.signals)):
            probe(self.control, rank, Tag.SIGNAL, what=f"rank {rank}'s signal message")
            self.poll()
        for _, r in self._bufs:
            wait(r, what="a checkpoint request to be received")
        self._bufs = []
