"""Pure-Python reference sum-tree, written close to the definition, for tests.

Same API as the C++ `SumTree`, O(n) per query: `sample(u)` returns the first
leaf i with u < p_0 + ... + p_i, skipping leaves of priority 0.
"""

import math

import numpy as np


class ReferenceSumTree:
    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"SumTree capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.p = [0.0] * capacity
        self.ever_set = [False] * capacity

    def total(self) -> float:
        return math.fsum(self.p)

    def min(self) -> float:
        return min((p for p, s in zip(self.p, self.ever_set) if s), default=math.inf)

    def update(self, idx, priority) -> None:
        idx, priority = list(np.asarray(idx).ravel()), list(np.asarray(priority, dtype=float).ravel())
        if len(idx) != len(priority):
            raise ValueError("idx and priority lengths differ")
        for i, p in zip(idx, priority):
            if not 0 <= i < self.capacity:
                raise IndexError(f"index {i} outside [0, {self.capacity})")
            if not (p >= 0 and math.isfinite(p)):
                raise ValueError(f"priority must be finite and >= 0, got {p}")
        for i, p in zip(idx, priority):
            self.p[i] = p
            self.ever_set[i] = True

    def get(self, idx) -> np.ndarray:
        return np.array([self.p[i] for i in np.asarray(idx).ravel()], dtype=np.float64)

    def sample(self, u) -> np.ndarray:
        total = self.total()
        out = []
        for x in np.asarray(u, dtype=float).ravel():
            if not 0 <= x < total:
                raise ValueError(f"u={x} outside [0, total()={total})")
            run = 0.0
            for i, p in enumerate(self.p):
                run += p
                if p > 0 and x < run:
                    out.append(i)
                    break
            else:
                out.append(max(i for i, p in enumerate(self.p) if p > 0))
        return np.array(out, dtype=np.int64)
