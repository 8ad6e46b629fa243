"""Prioritized replay storage: a struct-of-arrays ring with priorities p^alpha in the C++ SumTree.

Fields are declared once as name -> (shape, dtype); frames stay uint8. Sampling is
stratified (one uniform per equal slice of the total priority); importance weights are
w_i = (N P(i))^-beta normalized by the largest possible weight, (N P_min)^-beta.

Every slot has a generation, bumped when the slot is written or dropped: a priority update carries the
generation its slot had when sampled, and is dropped if the slot was overwritten since. The rows stored are
the `size` slots before `next` in the ring; `drop_oldest` forgets the oldest early (replay.frames does, when
its frame pool is full).
"""

import numpy as np

from drlmpi._core import SumTree
from drlmpi.errors import UserError

ROW_OVERHEAD = 40  # bytes a row costs beside its fields: its generation (8) and its sum-tree nodes (up to 32)


class PrioritizedReplay:
    deal = 1  # rows a re-sharded checkpoint deals to one shard together (replay.plane.restore_shard)

    def __init__(self, capacity: int, fields: dict[str, tuple[tuple[int, ...], np.dtype]], alpha: float,
                 rng: np.random.Generator, eps: float = 1e-6, extra_bytes: int = 0):
        """extra_bytes: what a subclass allocates beside the rows (checked with them before anything is allocated)."""
        check_fits(capacity * row_bytes(fields) + extra_bytes, capacity)
        self.capacity, self.alpha, self.eps, self.rng = capacity, alpha, eps, rng
        self.data = {k: np.zeros((capacity, *shape), dtype=dtype) for k, (shape, dtype) in fields.items()}
        self.tree = SumTree(capacity)
        self.gen = np.zeros(capacity, dtype=np.int64)  # bumped on every write of a slot
        self.size = 0
        self.next = 0
        self.max_priority = 1.0  # of |td| + eps, before the exponent

    def add(self, batch: dict[str, np.ndarray], priority: np.ndarray | None = None) -> np.ndarray:
        """Append n rows (fields [n, ...]); priority [n] of |td|+eps, default the largest seen. Returns slots."""
        n = len(batch[next(iter(self.data))])
        idx = (self.next + np.arange(n)) % self.capacity
        head = min(n, self.capacity - self.next)  # rows up to the end of the ring, then the rest from slot 0
        for k, arr in self.data.items():
            arr[self.next : self.next + head] = batch[k][:head]  # slices: 30x faster than fancy indexing
            arr[: n - head] = batch[k][head:]
        self.gen[idx] += 1
        if priority is None:
            priority = np.full(n, self.max_priority)
        else:
            self.max_priority = max(self.max_priority, float(np.max(priority)))
        self.tree.update(idx, np.asarray(priority, dtype=np.float64) ** self.alpha)
        self.next = int((self.next + n) % self.capacity)
        self.size = min(self.capacity, self.size + n)
        return idx

    def sample_slots(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n slots by priority, stratified: (slots int64 [n], their priorities p^alpha float64 [n])."""
        total = self.tree.total()
        u = (np.arange(n) + self.rng.random(n)) * (total / n)
        idx = self.tree.sample(np.minimum(u, np.nextafter(total, 0)))
        return idx, self.tree.get(idx)

    def sample(self, n: int, beta: float) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """n rows by priority: (fields [n, ...], slots [n], importance weights [n] float32)."""
        idx, p = self.sample_slots(n)
        weights = importance_weights(p, self.tree.min(), beta)
        return {k: v[idx] for k, v in self.data.items()}, idx, weights

    def fetch(self, slot: np.ndarray, out: dict[str, np.ndarray], at: int) -> None:
        """Copy rows `slot` [m] of every field into out[name][at : at + m]."""
        for k, v in self.data.items():
            np.take(v, slot, axis=0, out=out[k][at : at + len(slot)])

    def drop_oldest(self, k: int) -> np.ndarray:
        """Forget the k oldest rows: never sampled again, and a late priority update for them is dropped.
        Returns their slots."""
        slots = (self.next - self.size + np.arange(k)) % self.capacity
        self.tree.clear(slots)
        self.gen[slots] += 1
        self.size -= k
        return slots

    def rows_of(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of the rows `order`, each field [len(order), ...] (what a checkpoint part holds)."""
        return {k: v[order] for k, v in self.data.items()}

    def loadable(self, names: set[str]) -> bool:
        """Whether a checkpoint part's arrays `names` are this storage's rows (its fields and "priority")."""
        return names == {*self.data, "priority"}

    def load(self, arrays: dict[str, np.ndarray], priority: np.ndarray) -> None:
        """Add rows saved by rows_of (and their priorities before the exponent), oldest first; only the newest
        `capacity` stay."""
        if len(priority) > self.capacity:
            arrays, priority = {k: v[-self.capacity:] for k, v in arrays.items()}, priority[-self.capacity:]
        if len(priority):
            self.add(arrays, priority)

    def update_priorities(self, idx: np.ndarray, priority: np.ndarray, gen: np.ndarray | None = None) -> int:
        """priority [n] of |td| + eps, before the exponent. With gen [n] (the slots' generations when sampled),
        updates of slots overwritten since are dropped. Returns how many were applied."""
        priority = np.asarray(priority, dtype=np.float64) + self.eps
        if gen is not None:
            live = self.gen[idx] == gen
            idx, priority = idx[live], priority[live]
        if len(idx):
            self.max_priority = max(self.max_priority, float(priority.max()))
            self.tree.update(idx, priority**self.alpha)
        return len(idx)


    def age_order(self) -> np.ndarray:
        """The stored slots, oldest first, int64 [size]."""
        return (self.next - self.size + np.arange(self.size)) % self.capacity

    def raw_priorities(self, idx: np.ndarray) -> np.ndarray:
        """The priorities before the exponent (|td| + eps) of slots idx; all 1 when alpha is 0."""
        p = self.tree.get(idx)
        return p ** (1.0 / self.alpha) if self.alpha > 0 else np.ones_like(p)


def importance_weights(p: np.ndarray, p_min: float, beta: float) -> np.ndarray:
    """w_i = (N P(i))^-beta / max_j (N P(j))^-beta, P(i) = p_i / total, for priorities p [n] (already ^alpha).

    The largest weight is the smallest priority's, so N and the total cancel: w_i = (p_i / p_min)^-beta.
    For sharded replay p_min must be the minimum over every shard.
    """
    return ((p / p_min) ** -beta).astype(np.float32)


def row_bytes(fields: dict) -> int:
    """Bytes one stored row takes: its fields and ROW_OVERHEAD."""
    return sum(int(np.prod(shape)) * np.dtype(dtype).itemsize for shape, dtype in fields.values()) + ROW_OVERHEAD


def check_fits(nbytes: int, rows: int) -> None:
    """UserError (before allocating) unless this host has `nbytes` available (/proc/meminfo's MemAvailable; unchecked
    where it is absent). Each shard checks its own storage: shards sharing a host are not summed."""
    available = host_available_bytes()
    if available is not None and nbytes > available:
        raise UserError(f"a replay of {rows:,} rows needs {nbytes / 2**30:,.1f} GiB, more than the "
                        f"{available / 2**30:,.1f} GiB this host has available: lower buffer_size or spread the "
                        "replay over hosts (--layout replay=N)")


def host_available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
