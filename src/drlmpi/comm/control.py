"""Small JSON objects on a control plane through buffer collectives: no pickle anywhere.

Each call first meets the other ranks at a polite barrier (runtime.barrier), so the blocking collectives after it
never spin while a rank is still busy (rank 0 writing a checkpoint, a member still training).

  bcast_bytes(comm, parts, n, root, what) root's n uint8 arrays on every rank
  bcast_json(comm, obj, root, what)      root's obj on every rank
  gather_json(comm, obj, root, what)     [every rank's obj] on root, None elsewhere
  allgather_json(comm, obj, what)        [every rank's obj] on every rank
JSON turns tuples into lists; NaN and infinities pass (Python's JSON extension).
"""

import json

import numpy as np
from mpi4py import MPI

from drlmpi.runtime import barrier
from drlmpi.runtime.wait import PEER_TIMEOUT


def _bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode(), np.uint8)


def _split(buf: np.ndarray, sizes: np.ndarray) -> list:
    ends = np.cumsum(sizes)
    return [json.loads(buf[e - n:e].tobytes()) for n, e in zip(sizes, ends)]


def bcast_bytes(comm: MPI.Comm, parts: list[np.ndarray] | None, n: int, root: int = 0, what: str = "a broadcast",
                timeout: float = PEER_TIMEOUT) -> list[np.ndarray]:
    """root's `parts` (n uint8 arrays; None elsewhere) on every rank: their sizes, then each (root keeps its own)."""
    barrier(comm, timeout, what=what)
    sizes = np.array([a.size for a in parts] if comm.rank == root else [0] * n, np.int64)
    comm.Bcast(sizes, root)
    out = parts if comm.rank == root else [np.empty(int(s), np.uint8) for s in sizes]
    for a in out:
        comm.Bcast([a, MPI.BYTE], root)
    return out


def bcast_json(comm: MPI.Comm, obj, root: int = 0, what: str = "a control message", timeout: float = PEER_TIMEOUT):
    (buf,) = bcast_bytes(comm, [_bytes(obj).copy()] if comm.rank == root else None, 1, root, what, timeout)
    return json.loads(buf.tobytes())


def gather_json(comm: MPI.Comm, obj, root: int = 0, what: str = "control messages", timeout: float = PEER_TIMEOUT):
    barrier(comm, timeout, what=what)
    data = _bytes(obj)
    sizes = np.empty(comm.size, np.int64) if comm.rank == root else None
    comm.Gather(np.array([data.size], np.int64), sizes, root)
    if comm.rank != root:
        comm.Gatherv([data, MPI.BYTE], None, root)
        return None
    buf = np.empty(int(sizes.sum()), np.uint8)
    comm.Gatherv([data, MPI.BYTE], [buf, sizes, MPI.BYTE], root)
    return _split(buf, sizes)


def allgather_json(comm: MPI.Comm, obj, what: str = "control messages", timeout: float = PEER_TIMEOUT) -> list:
    barrier(comm, timeout, what=what)
    data = _bytes(obj)
    sizes = np.empty(comm.size, np.int64)
    comm.Allgather(np.array([data.size], np.int64), sizes)
    buf = np.empty(int(sizes.sum()), np.uint8)
    comm.Allgatherv([data, MPI.BYTE], [buf, sizes, MPI.BYTE])
    return _split(buf, sizes)
