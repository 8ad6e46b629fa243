"""Weights plane on one node: a shared-memory window holding a version and a flat float32 vector.

    byte 0   seq      int64   seqlock counter: odd while a publish is in progress
    byte 8   version  int64   version of the weights (publisher's count, or Hogwild! updates applied)
    byte 64  weights  float32[n]

One `MPI.Win.Allocate_shared` window per node (the node leader owns the memory, every rank
of the node maps it with `Shared_query`). Two ways to write:
  - `publish(vec, version)`: one writer at a time (the parameter server or a node leader);
    readers copy with the seqlock (`read`) and never see a torn vector;
  - `hogwild_add(delta, scale)`: any number of ranks add into the vector in place, with no lock
    (Hogwild!); readers may see a mix of updates, as Hogwild! allows; the version counts the
    updates with an atomic fetch-and-add.
The window lives in host memory; copy to a device after reading.
"""

import time

import numpy as np
from mpi4py import MPI

HEADER_BYTES = 64


class NodeWeights:
    def __init__(self, node: MPI.Intracomm, n: int):
        self.n = n
        size = HEADER_BYTES + 4 * n if node.rank == 0 else 0
        self.win = MPI.Win.Allocate_shared(size, 1, comm=node)
        buf, _ = self.win.Shared_query(0)
        mem = np.frombuffer(buf, dtype=np.uint8)
        self._header = mem[:16].view(np.int64)
        self.weights = mem[HEADER_BYTES : HEADER_BYTES + 4 * n].view(np.float32)  # [n], shared
        self.win.Lock_all(MPI.MODE_NOCHECK)
        if node.rank == 0:
            self._header[:] = 0
            self.weights[:] = 0
        self.win.Sync()
        from drlmpi.runtime import barrier

        barrier(node)
        self._one = np.ones(1, dtype=np.int64)
        self._old = np.zeros(1, dtype=np.int64)

    @property
    def version(self) -> int:
        return int(self._header[1])

    def publish(self, vec: np.ndarray, version: int) -> None:
        """Copy vec [n] into the window as `version` (single writer)."""
        h = self._header
        h[0] += 1  # odd: publish in progress
        self.win.Sync()
        np.copyto(self.weights, vec, casting="same_kind")
        h[1] = version
        self.win.Sync()
        h[0] += 1  # even: consistent
        self.win.Sync()

    def read(self, out: np.ndarray, timeout: float = 30.0) -> int:
        """Copy a consistent vector into out [n]; returns its version."""
        h = self._header
        deadline = time.monotonic() + timeout
        while True:
            self.win.Sync()
            s1 = int(h[0])
            if not s1 & 1:
                np.copyto(out, self.weights)
                version = int(h[1])
                self.win.Sync()
                if int(h[0]) == s1:
                    return version
            if time.monotonic() > deadline:
                raise TimeoutError("weights window: no consistent read (writer stuck mid-publish?)")
            time.sleep(0)

    def hogwild_add(self, delta: np.ndarray, scale: float = 1.0, idx: np.ndarray | None = None) -> int:
        """weights[idx] += scale * delta in place, lock-free; returns the version after this update.

        idx (unique int64 [k]) limits the write to the update's support, as in Hogwild!: updates
        from several ranks to disjoint coordinates all land. A dense update (idx None, delta [n])
        read-modify-writes every coordinate, so concurrent dense updates can overwrite each other.
        """
        d = delta if scale == 1.0 else np.float32(scale) * delta
        if idx is None:
            np.add(self.weights, d, out=self.weights)
        else:
            self.weights[idx] += d
        self.win.Fetch_and_op(self._one, self._old, 0, target_disp=8, op=MPI.SUM)
        self.win.Flush(0)
        return int(self._old[0]) + 1

    def free(self) -> None:
        self.win.Unlock_all()
        self.win.Free()
