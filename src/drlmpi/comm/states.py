"""A learner's state (networks, optimizers, recent returns of a checkpoint.State) through buffer messages.

What population-based training copies from a top member to a bottom one (algos.pbt): no pickle, no file.
`pack` lays every array's bytes end to end in one uint8 body and describes them in a JSON header (names,
dtypes, shapes, the optimizers' param groups); the header travels as a uint8 message, then the body.

  pack(state)                              (header, body) of a state
  send_state(comm, dest, tag, header, body) Isend header and body; returns the requests (wait on them)
  recv_state(comm, source, tag, what)      polite probe and receive; returns (header, body)
  bcast_state(comm, root, header, body)    the same pair from `root` to every rank of comm (comm.control.bcast_bytes)
  unpack(header, body, state)              puts nets, optim and returns into `state` (no copy of the body's arrays)
"""

import json

import numpy as np
from mpi4py import MPI

from drlmpi.comm.control import bcast_bytes
from drlmpi.runtime import probe, wait
from drlmpi.runtime.wait import PEER_TIMEOUT


def pack(state) -> tuple[bytes, np.ndarray]:
    """(JSON header, uint8 body [bytes]) of state.nets, state.optim and state.returns."""
    arrays, nets, optim = [], [], {}
    for net, params in state.nets.items():
        for name, a in params.items():
            nets.append([net, name, a.dtype.str, list(a.shape)])
            arrays.append(a)
    for name, o in state.optim.items():
        entries = []
        for index, values in o["state"].items():
            for key, a in values.items():
                a = np.asarray(a)
                entries.append([index, key, a.dtype.str, list(a.shape)])
                arrays.append(a)
        optim[name] = {"groups": o["groups"], "state": entries}
    header = json.dumps({"nets": nets, "optim": optim, "returns": list(map(float, state.returns))}).encode()
    body = np.empty(sum(a.nbytes for a in arrays), np.uint8)
    at = 0
    for a in arrays:
        body[at:at + a.nbytes] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
        at += a.nbytes
    return header, body


def unpack(header: bytes, body: np.ndarray, state) -> None:
    """Replace state's nets, optim and returns with the packed ones (arrays are views of `body`)."""
    h = json.loads(bytes(header))
    entries = [e[2:] for e in h["nets"]] + [e[2:] for o in h["optim"].values() for e in o["state"]]
    size = sum(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize for dtype, shape in entries)
    if size != body.size:
        raise ValueError(f"state body of {body.size} bytes, header describes {size}")
    at = 0

    def take(dtype: str, shape: list) -> np.ndarray:
        nonlocal at
        dt = np.dtype(dtype)
        n = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        a = body[at:at + n].view(dt).reshape(shape)
        at += n
        return a

    nets: dict = {}
    for net, name, dtype, shape in h["nets"]:
        nets.setdefault(net, {})[name] = take(dtype, shape)
    optim = {}
    for name, o in h["optim"].items():
        st: dict = {}
        for index, key, dtype, shape in o["state"]:
            st.setdefault(index, {})[key] = take(dtype, shape)
        optim[name] = {"groups": o["groups"], "state": st}
    state.nets, state.optim, state.returns = nets, optim, h["returns"]


def send_state(comm: MPI.Comm, dest: int, tag: int, header: bytes, body: np.ndarray) -> list[MPI.Request]:
    head = np.frombuffer(header, np.uint8)
    return [comm.Isend([head, MPI.BYTE], dest, tag), comm.Isend([body, MPI.BYTE], dest, tag)]


def recv_state(comm: MPI.Comm, source: int, tag: int, what: str, timeout: float = PEER_TIMEOUT
         ) -> tuple[bytes, np.ndarray]:
    """The header and body `send_state` sent from `source` (MPI keeps their order)."""
    out = []
    for _ in range(2):
        status = probe(comm, source, tag, timeout, what=what)
        buf = np.empty(status.Get_count(MPI.BYTE), np.uint8)
        wait(comm.Irecv([buf, MPI.BYTE], source, tag), timeout, what)
        out.append(buf)
    return out[0].tobytes(), out[1]


def bcast_state(comm: MPI.Comm, root: int, header: bytes | None, body: np.ndarray | None,
          timeout: float = PEER_TIMEOUT) -> tuple[bytes, np.ndarray]:
    """Every rank of comm gets root's (header, body); collective (comm.control.bcast_bytes: a polite barrier, then
    blocking broadcasts that finish at once; a polite Ibcast of a large body is many times slower)."""
    parts = [np.frombuffer(header, np.uint8).copy(), body] if comm.rank == root else None
    head, body = bcast_bytes(comm, parts, 2, root, "the member root's state", timeout)
    return head.tobytes(), body
