"""Node segments: bulk payloads between ranks of one node through shared memory; MPI only rings the doorbell.

One `MPI.Win.Allocate_shared` window per node; every rank of the node owns one segment of it
(any size, 0 for ranks that need none): `slots` equal slots, each behind a 64-byte flag line.
Any rank of the node maps any other rank's slots with `Shared_query` and reads or writes them
with plain numpy copies (memcpy speed, no MPI progress needed). Who writes where, and when a
slot may be reused, is the protocol's business; the flags help the common pattern:

  outbox: the owner `acquire`s a free slot (flag 0 -> 1), fills it, sends a tiny message naming
          the slot; the reader copies out and `release`s it (flag -> 0).
  inbox:  the owner hands out offsets inside its own slot; writers fill them and send tiny replies.

Messages between ranks on different nodes do not use this: callers check `local(rank)`.

Memory ordering: flag updates and the slot copies they guard are separated by `sync()`: MPI's
`Win.Sync` and a full C++ memory fence (`drlmpi._core.fence`, seq_cst), so a reader that sees a
flag (or a doorbell message) also sees the slot contents written before it, on weakly ordered
CPUs too; flags are aligned int64 (single-copy atomic loads and stores).
"""

import numpy as np
from mpi4py import MPI

from drlmpi._core import fence
from drlmpi.runtime.wait import poll

LINE = 64


def sync(win: MPI.Win) -> None:
    """Order every load and store before this call before every one after it (see the module docstring)."""
    win.Sync()
    fence()


class NodeSegments:
    def __init__(self, world: MPI.Intracomm, node: MPI.Intracomm, slots: int, slot_bytes: int):
        """Collective over `node`: this rank owns `slots` slots of `slot_bytes` (0 for none)."""
        from drlmpi.runtime import barrier

        self.slots, self.node = slots, node
        self.slot_bytes = -(-slot_bytes // LINE) * LINE
        own = LINE * slots + slots * self.slot_bytes if slot_bytes else 0
        self.win = MPI.Win.Allocate_shared(own, 1, comm=node)
        self.win.Lock_all(MPI.MODE_NOCHECK)
        node_ranks = MPI.Group.Translate_ranks(world.Get_group(), list(range(world.size)), node.Get_group())
        self._node_rank = {w: n for w, n in enumerate(node_ranks) if n != MPI.UNDEFINED}
        self._maps: dict[int, tuple[np.ndarray, list[np.ndarray]]] = {}
        self.me = world.rank
        if own:
            flags, _ = self._map(world.rank)
            flags[:] = 0
        sync(self.win)
        barrier(node)

    def same_node(self, world_rank: int) -> bool:
        return world_rank in self._node_rank

    def local(self, world_rank: int) -> bool:
        """Is world_rank on this node, with a segment?"""
        return world_rank in self._node_rank and self._map(world_rank)[1] != []

    def _map(self, world_rank: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """(flags int64 [slots, 8], slots: list of uint8 views) of world_rank's segment."""
        if world_rank not in self._maps:
            buf, _ = self.win.Shared_query(self._node_rank[world_rank])
            mem = np.frombuffer(buf, dtype=np.uint8)
            if len(mem) == 0:
                self._maps[world_rank] = (np.zeros((0, 8), np.int64), [])
            else:
                size = (len(mem) - LINE * self.slots) // self.slots
                flags = mem[: LINE * self.slots].view(np.int64).reshape(self.slots, LINE // 8)
                base = LINE * self.slots
                self._maps[world_rank] = (flags, [mem[base + s * size : base + (s + 1) * size]
                                                  for s in range(self.slots)])
        return self._maps[world_rank]

    def slot(self, world_rank: int, s: int) -> np.ndarray:
        """uint8 view of slot s of world_rank's segment."""
        return self._map(world_rank)[1][s]

    def _free_slots(self) -> np.ndarray:
        sync(self.win)
        return np.flatnonzero(self._map(self.me)[0][:, 0] == 0)

    def acquire(self, timeout: float = 60.0, on_wait=None, what: str = "a released slot") -> int:
        """Owner: wait politely for a free slot of its own (on_wait() runs between looks), mark it used, return
        its index."""
        def free():
            if on_wait is not None:
                on_wait()
            return f[0] if len(f := self._free_slots()) else None

        slot = poll(free, timeout, what)
        self._map(self.me)[0][slot, 0] = 1
        sync(self.win)
        return int(slot)

    def wait_all_free(self, timeout: float = 60.0, on_wait=None) -> None:
        """Owner: wait politely until readers have released every slot (on_wait() runs between looks)."""
        def all_free():
            if on_wait is not None:
                on_wait()
            return True if len(self._free_slots()) == self.slots else None

        poll(all_free, timeout, "all slots released")

    def release(self, world_rank: int, s: int) -> None:
        """Reader: hand slot s back to its owner world_rank."""
        sync(self.win)
        self._map(world_rank)[0][s, 0] = 0
        sync(self.win)

    def free(self) -> None:
        """Collective over the node: free the window once every rank there is done with it (a polite barrier first:
        the Free's own barrier would spin)."""
        from drlmpi.runtime import barrier

        barrier(self.node, what="the node's ranks to be done with their segments")
        self._maps.clear()  # (views into the window's memory)
        self.win.Unlock_all()
        self.win.Free()
