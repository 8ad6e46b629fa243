"""Prioritized replay storage: a struct-of-arrays ring with priorities p^alpha in the C++ SumTree.

Fields are declared once as name -> (shape, dtype); frames stay uint8. Sampling is
stratified (one uniform per equal slice of the total priority); importance weights are
w_i = (N P(i))^-beta normalized by the largest possible weight, (N P_min)^-beta.
"""

import numpy as np

from drlmpi._core import SumTree


class PrioritizedReplay:
    def __init__(self, capacity: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]], alpha: float,
                 rng: np.random.Generator, eps: float = 1e-6):
        self.capacity, self.alpha, self.eps, self.rng = capacity, alpha, eps, rng
        self.data = {k: np.zeros((capacity, *shape), dtype=dtype) for k, (shape, dtype) in fields.items()}
        self.tree = SumTree(capacity)
        self.size = 0
        self.next = 0
        self.max_priority = 1.0  # of |td| + eps, before the exponent

    def add(self, batch: dict[str, np.ndarray], priority: np.ndarray | None = None) -> np.ndarray:
        """Append n rows (fields [n, ...]); priority [n] of |td|+eps, default the largest seen. Returns slots."""
        n = len(next(iter(batch.values())))
        idx = (self.next + np.arange(n)) % self.capacity
        for k, arr in self.data.items():
            arr[idx] = batch[k]
        if priority is None:
            priority = np.full(n, self.max_priority)
        else:
            self.max_priority = max(self.max_priority, float(np.max(priority)))
        self.tree.update(idx, np.asarray(priority, dtype=np.float64) ** self.alpha)
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        return idx

    def sample(self, n: int, beta: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """n rows by priority: (fields [n, ...], slots [n], importance weights [n] float32)."""
        total = self.tree.total()
        u = (np.arange(n) + self.rng.random(n)) * (total / n)
        idx = self.tree.sample(np.minimum(u, np.nextafter(total, 0)))
        prob = self.tree.get(idx) / total
        weights = (prob / (self.tree.min() / total)) ** -beta
        return {k: v[idx] for k, v in self.data.items()}, idx, weights.astype(np.float32)

    def update_priorities(self, idx: np.ndarray, priority: np.ndarray) -> None:
        """priority [n] of |td| + eps, before the exponent."""
        priority = np.asarray(priority, dtype=np.float64) + self.eps
        self.max_priority = max(self.max_priority, float(priority.max()))
        self.tree.update(idx, priority**self.alpha)
