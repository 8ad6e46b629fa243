"""Fixed-layout byte buffers for struct-of-arrays messages: no pickle, one `Send` per block.

A `BlockLayout` is a header of int64 words followed by named fields, each [rows, *shape] of its
dtype, every field 64-byte aligned. `new()` gives a zeroed uint8 buffer; `views(buf)` gives numpy
views of the header and every field into it, so packing and unpacking are plain slice copies.
Both sides build the same layout from the same field specs.
"""

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from drlmpi.errors import invariant

ALIGN = 64


@dataclass(frozen=True)
class BlockLayout:
    fields: tuple[tuple[str, tuple[int, ...], str], ...]  # (name, shape per row, dtype name)
    rows: int
    header_words: int = 2
    once: tuple[str, ...] = ()  # fields with one row (e.g. a recurrent state at a sequence's start)

    @staticmethod
    def of(fields: dict[str, tuple[tuple[int, ...], np.dtype]], rows: int, header_words: int = 2,
           once: tuple[str, ...] = ()) -> "BlockLayout":
        return BlockLayout(tuple((k, tuple(s), np.dtype(d).name) for k, (s, d) in fields.items()), rows,
                           header_words, tuple(once))

    @cached_property
    def _offsets(self) -> tuple[list[tuple[str, tuple[int, ...], str, int, int]], int]:
        """([(name, shape, dtype, byte offset, nbytes)], total bytes), computed once per layout."""
        off = -(-8 * self.header_words // ALIGN) * ALIGN
        out = []
        for name, shape, dtype in self.fields:
            nbytes = self.rows_of(name) * int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            out.append((name, shape, dtype, off, nbytes))
            off += -(-nbytes // ALIGN) * ALIGN
        return out, off

    def rows_of(self, name: str) -> int:
        return 1 if name in self.once else self.rows

    def offset(self, name: str) -> int:
        """The byte offset of field `name` in a buffer."""
        return next(o for n, _, _, o, _ in self._offsets[0] if n == name)

    @property
    def nbytes(self) -> int:
        return self._offsets[1]

    def new(self) -> np.ndarray:
        return np.zeros(self.nbytes, dtype=np.uint8)

    def views(self, buf: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(header int64 [header_words], {name: [rows, *shape]}) viewing buf."""
        offsets, total = self._offsets
        invariant(buf.nbytes >= total, f"buffer of {buf.nbytes} bytes for a layout of {total}")
        header = buf[: 8 * self.header_words].view(np.int64)
        return header, {name: buf[o : o + n].view(dtype).reshape(self.rows_of(name), *shape)
                        for name, shape, dtype, o, n in offsets}
