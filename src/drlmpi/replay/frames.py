"""Compact frames: replay rows whose stacked observations hold each frame once.

An Atari n-step transition holds obs and next_obs as stacks [C, H, W] of the last C frames; one env's
consecutive transitions share all but one frame, so full stacks cost 2C frames per transition. Here the
stacked fields (`stacks`, e.g. obs and next_obs) travel and are stored as frame references instead:

  pack         a block's stacks -> its distinct frames [F, H, W] and, per stacked field, refs [n, C] into
               them. Exact: frames are grouped by a hash, then compared byte for byte.
  FramePool    a shard's frames [P, H, W], reference counted, with a stack of free slots.
  FrameReplay  PrioritizedReplay whose rows hold `<name>_ref` [C] (pool slots) for each stacked field; a full
               pool drops the oldest rows until the new frames fit; `fetch` rebuilds the stacks, so the
               learner gets the same batch as from full stacks.

Blocks carry one env's consecutive transitions (the n-step builder emits env-major), so a block of R rows
of one env holds about R + n + C - 1 distinct frames: 1.09 per row for R = 64, n = 3, C = 4, plus one per
episode end (the final frame).
"""

from functools import lru_cache

import numpy as np

from drlmpi.errors import invariant
from drlmpi.replay.storage import PrioritizedReplay

FRAMES = "unique_frames"  # the distinct frames of a block or a checkpoint part
ENV_BLOCK = 64  # one env's consecutive transitions an actor sends together; re-sharding deals them together too
POOL_PER_ROW = 1.15  # pool frames per row of capacity: room for one env's 64-row blocks and their episode ends


def ref(name: str) -> str:
    return name + "_ref"


def row_fields(fields: dict, stacks: tuple[str, ...]) -> dict:
    """The stored fields: each stacked field [C, H, W] replaced by its refs [C] (int32)."""
    out = {k: v for k, v in fields.items() if k not in stacks}
    out.update({ref(k): ((fields[k][0][0],), np.int32) for k in stacks})
    return out


def block_frames(fields: dict, stacks: tuple[str, ...], rows: int) -> tuple[tuple[int, ...], np.dtype]:
    """The shape of the frames field of a block of `rows` (room for every frame distinct) and its dtype."""
    (c, *frame), dtype = fields[stacks[0]]
    return (rows * c * len(stacks), *frame), dtype


@lru_cache(maxsize=8)
def _multipliers(words: int) -> np.ndarray:
    return np.random.default_rng(0x5EED).integers(1, 2**63, words, dtype=np.uint64) | np.uint64(1)


def pack(stacks: list[np.ndarray], out: np.ndarray) -> tuple[list[np.ndarray], int]:
    """The distinct frames of stacks (each [n, C, H, W]) into out[:F] ([>= F, H, W]); returns (refs [n, C] int32
    per stack into out, F). Frames are grouped by a linear hash, and each is compared byte for byte with its
    group's first: a hash collision only leaves a frame stored twice."""
    n, c = stacks[0].shape[:2]
    assert out.shape[1:] == stacks[0].shape[2:], f"frames {out.shape[1:]} for stacks {stacks[0].shape}"
    flat = np.concatenate([s.reshape(n * c, -1) for s in stacks])  # [K, H*W]
    k = len(flat)
    words = flat.view(np.uint64) if flat.shape[1] % 8 == 0 else flat.astype(np.uint64)
    h = words @ _multipliers(words.shape[1])  # wraps mod 2^64
    order = np.argsort(h, kind="stable")
    hs = h[order]
    start = np.maximum.accumulate(np.where(np.r_[True, hs[1:] != hs[:-1]], np.arange(k), 0))
    rep = np.empty(k, np.int64)
    rep[order] = order[start]  # the first frame with the same hash
    dup = np.flatnonzero(rep != np.arange(k))
    if flat.shape[1] % 8 == 0:
        same = (words[dup] == words[rep[dup]]).all(axis=1)
    else:
        same = (flat[dup] == flat[rep[dup]]).all(axis=1)
    rep[dup[~same]] = dup[~same]  # a hash collision: stored as a frame of its own
    unique = np.flatnonzero(rep == np.arange(k))
    pos = np.zeros(k, np.int32)
    pos[unique] = np.arange(len(unique))
    np.take(flat, unique, axis=0, out=out[: len(unique)].reshape(len(unique), -1))
    refs = pos[rep].reshape(len(stacks), n, c)
    return list(refs), len(unique)


def compact(rows: dict[str, np.ndarray], stacks: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Rows with full stacks -> the same rows as a block carries them: refs per stacked field and FRAMES."""
    full = [rows[k] for k in stacks]
    out = np.empty((sum(s.shape[0] * s.shape[1] for s in full), *full[0].shape[2:]), full[0].dtype)
    refs, f = pack(full, out)
    packed = {k: v for k, v in rows.items() if k not in stacks}
    packed.update({ref(k): r for k, r in zip(stacks, refs)})
    packed[FRAMES] = out[:f]
    return packed


class FramePool:
    """frames [P, H, W] with a reference count per slot; slots whose count drops to 0 are free again."""

    def __init__(self, capacity: int, shape: tuple[int, ...], dtype):
        self.frames = np.zeros((capacity, *shape), dtype)
        self.count = np.zeros(capacity, np.int32)
        self.free = np.arange(capacity)[::-1].copy()  # a stack: the next free slots at the end
        self.n_free = capacity

    def put(self, frames: np.ndarray) -> np.ndarray:
        """Store frames [F, H, W] in free slots (count 0 until held); returns the slots [F]."""
        f = len(frames)
        invariant(f <= self.n_free, f"{f} frames for {self.n_free} free slots")
        slots = self.free[self.n_free - f : self.n_free].copy()
        self.n_free -= f
        self.frames[slots] = frames
        return slots

    def hold(self, slots: np.ndarray) -> None:
        np.add.at(self.count, slots, 1)

    def release(self, slots: np.ndarray) -> None:
        """One reference less to each of slots (repeats count); slots left with none are freed."""
        np.subtract.at(self.count, slots, 1)
        self.collect(np.unique(slots))

    def collect(self, slots: np.ndarray) -> None:
        """Free those of the (distinct) slots that nothing references."""
        dead = slots[self.count[slots] == 0]
        self.free[self.n_free : self.n_free + len(dead)] = dead
        self.n_free += len(dead)


class FrameReplay(PrioritizedReplay):
    """Prioritized replay of rows whose stacked fields are refs into a FramePool (see the module docstring).

    fields: the full layout (what samples hold); stacks: its stacked fields, each [C, H, W] of one frame shape.
    `add` takes the stored fields with block-local refs (`<name>_ref` [n, C] into batch[FRAMES] [F, H, W]).
    """

    deal = ENV_BLOCK  # rows a re-sharded checkpoint deals to one shard together: they share their frames

    def __init__(self, capacity: int, fields: dict, stacks: tuple[str, ...], alpha: float, rng: np.random.Generator,
                 pool_frames: int, eps: float = 1e-6):
        (_, *frame), dtype = fields[stacks[0]]
        super().__init__(capacity, row_fields(fields, stacks), alpha, rng, eps,
                         extra_bytes=pool_frames * int(np.prod(frame)) * np.dtype(dtype).itemsize)
        self.fields = fields
        self.stacks, self.refs = stacks, {ref(k) for k in stacks}
        self.pool = FramePool(pool_frames, tuple(frame), dtype)
        self.dropped = 0  # rows dropped early because the pool was full

    def add(self, batch: dict[str, np.ndarray], priority: np.ndarray | None = None) -> np.ndarray:
        frames = batch[FRAMES]
        n = len(batch[ref(self.stacks[0])])
        if self.size + n > self.capacity:  # the ring's oldest rows make room, their frames too
            self.drop_oldest(self.size + n - self.capacity)
        while self.pool.n_free < len(frames):
            if not self.size:
                raise ValueError(f"replay: {len(frames)} frames in one block, the pool holds {len(self.pool.count)}")
            k = min(self.size, len(frames) - self.pool.n_free)
            self.drop_oldest(k)
            self.dropped += k
        slots = self.pool.put(frames)
        refs = {ref(k): slots[batch[ref(k)]].astype(np.int32) for k in self.stacks}
        self.pool.hold(np.concatenate([r.ravel() for r in refs.values()]))
        self.pool.collect(slots)  # frames no row refers to
        return super().add({**batch, **refs}, priority)

    def drop_oldest(self, k: int) -> np.ndarray:
        slots = super().drop_oldest(k)
        self.pool.release(np.concatenate([self.data[ref(s)][slots].ravel() for s in self.stacks]))
        return slots

    def fetch(self, slot: np.ndarray, out: dict[str, np.ndarray], at: int) -> None:
        """Copy rows `slot` [m] into out[name][at : at + m], the stacked fields rebuilt [m, C, H, W]."""
        m = len(slot)
        for k, v in self.data.items():
            if k not in self.refs:
                np.take(v, slot, axis=0, out=out[k][at : at + m])
        for k in self.stacks:
            dst = out[k][at : at + m]
            assert dst.flags.c_contiguous
            np.take(self.pool.frames, self.data[ref(k)][slot].ravel(), axis=0,
                    out=dst.reshape(-1, *self.pool.frames.shape[1:]))

    def rows_of(self, order: np.ndarray) -> dict[str, np.ndarray]:
        """Copies of rows `order`: the stored fields, refs into the FRAMES array they use (distinct frames)."""
        out = super().rows_of(order)
        used = np.unique(np.concatenate([out[ref(k)].ravel() for k in self.stacks]))
        for k in self.stacks:
            out[ref(k)] = np.searchsorted(used, out[ref(k)]).astype(np.int32)
        out[FRAMES] = self.pool.frames[used]
        return out

    def loadable(self, names: set[str]) -> bool:
        """Stored fields with refs and FRAMES, or full stacks, and "priority"."""
        return names in ({*self.data, FRAMES, "priority"}, {*self.fields, "priority"})

    def load(self, arrays: dict[str, np.ndarray], priority: np.ndarray, chunk: int = 1024) -> None:
        """Add rows saved by rows_of (refs into arrays[FRAMES]), or with full stacks (a checkpoint written without
        compact frames), oldest first, `chunk` rows per block."""
        frames = arrays.get(FRAMES)
        if len(priority) > self.capacity:  # only the newest rows stay
            arrays = {k: v if k == FRAMES else v[-self.capacity:] for k, v in arrays.items()}
            priority = priority[-self.capacity:]
        chunk = min(chunk, self.capacity)
        for lo in range(0, len(priority), chunk):
            part = {k: v[lo : lo + chunk] for k, v in arrays.items() if k != FRAMES}
            if frames is None:  # full stacks
                part = compact(part, self.stacks)
            else:
                used = np.unique(np.concatenate([part[ref(k)].ravel() for k in self.stacks]))
                part.update({ref(k): np.searchsorted(used, part[ref(k)]) for k in self.stacks})
                part[FRAMES] = frames[used]
            self.add(part, priority[lo : lo + chunk])


def pool_frames(capacity: int, block_rows: int, fields: dict, stacks: tuple[str, ...]) -> int:
    """A shard's pool for `capacity` rows: POOL_PER_ROW frames each, and one block with every frame distinct."""
    return int(np.ceil(POOL_PER_ROW * capacity)) + block_frames(fields, stacks, block_rows)[0][0]
