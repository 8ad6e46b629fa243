"""Small JSON objects on a control plane through buffer collectives: no pickle anywhere.

Each call first meets the other ranks at a polite barrier (runtime.barrier), so the blocking collectives after it
never spin while a rank is still busy (rank 0 writing a checkpoint, a member still training).

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


def bcast_json(comm: MPI.Comm, obj, root: int = 0, what: str = "a control message", timeout: float = PEER_TIMEOUT):
    barrier(comm, timeout, what=what)
    data = _bytes(obj) if comm.rank == root else None
    n = np.array([data.size if data is not None else 0], np.int64)
    comm.Bcast(n, root)
    buf = data.copy() if data is not None else np.empty(int(n[0]), np.uint8)
    comm.Bcast([buf, MPI.BYTE], root)
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
