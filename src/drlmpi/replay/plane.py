"""The replay plane of a job: its channel, shard ranks, storage layout and node segments, and the shard role.

`ReplayPlane.create` is collective over the node; then actors take a `writer`, learners a `sampler`,
and shard ranks `run_shard`. The storage layout is the algorithm's (`fields`: n-step transitions,
sequences, continuous actions), so every replay-based algorithm uses this one shard role.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from mpi4py import MPI

from drlmpi import checkpoint
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import CheckpointClient
from drlmpi.comm.segments import NodeSegments
from drlmpi.errors import CheckpointError
from drlmpi.replay.client import ReplaySampler, ReplayWriter
from drlmpi.replay.frames import FRAMES, FrameReplay, pool_frames
from drlmpi.replay.shard import Fields, node_segments, serve
from drlmpi.replay.storage import PrioritizedReplay
from drlmpi.runtime.layout import share_of


@dataclass
class ReplayPlane:
    comm: MPI.Intracomm  # the replay channel (a Dup of the world: its own message space)
    shards: list[int]  # world ranks of the replay shards
    fields: Fields  # the storage layout: name -> (shape per row, dtype)
    block_rows: int  # rows per block a writer sends
    max_batch: int  # largest batch a learner asks for
    outbox: NodeSegments  # writers' outboxes on this node
    inbox: NodeSegments  # learners' inboxes on this node
    stacks: tuple[str, ...] = ()  # stacked frame fields stored as compact frames (replay.frames)

    @staticmethod
    def create(comm: MPI.Intracomm, node: MPI.Intracomm, shards: list[int], fields: Fields, block_rows: int,
               max_batch: int, writer: bool, learner: bool, stacks: tuple[str, ...] = ()) -> "ReplayPlane":
        """Collective over node: this rank gets an outbox if it writes, an inbox if it samples."""
        outbox, inbox = node_segments(comm, node, fields, block_rows, max_batch, writer, learner, stacks)
        return ReplayPlane(comm, shards, fields, block_rows, max_batch, outbox, inbox, tuple(stacks))

    def free(self) -> None:
        """Collective over the node, after every rank's role: free the outboxes' and inboxes' windows."""
        self.outbox.free()
        self.inbox.free()

    def writer(self, first: int = 0) -> ReplayWriter:
        """An actor's writer: blocks go to the shards round robin, starting at shard `first` mod S."""
        return ReplayWriter(self.comm, self.shards, self.fields, self.block_rows, self.outbox, first=first,
                            stacks=self.stacks)

    def storage(self, capacity: int, alpha: float, rng: np.random.Generator) -> PrioritizedReplay:
        """A shard's storage of `capacity` rows (compact frames when the plane has stacked fields)."""
        if not self.stacks:
            return PrioritizedReplay(capacity, self.fields, alpha, rng)
        return FrameReplay(capacity, self.fields, self.stacks, alpha, rng,
                           pool_frames(capacity, self.block_rows, self.fields, self.stacks))

    def sampler(self, rng: np.random.Generator) -> ReplaySampler:
        return ReplaySampler(self.comm, self.shards, self.fields, self.max_batch, rng, self.inbox)


def run_shard(plane: ReplayPlane, buffer_size: int, alpha: float, rng: np.random.Generator, clients: int,
              ckpt: CheckpointClient, run_dir: str, save: bool = True, resumed: State | None = None,
              demo_rows=None) -> dict:
    """The `replay` role: this shard's share of `buffer_size`, served until `clients` have said STOP.
    Answers checkpoint requests (ckpt) with a part file of its contents when `save`: it pauses only to copy
    them, a thread writes the file while the shard goes on serving, and the answer follows the write. Starts
    from a resumed checkpoint's replay parts, re-sharded if their number differs. demo_rows(s, S) -> rows
    {field: [n, ...]}: this shard's share of the demonstrations (R2D3), held in a demo replay beside the agent's
    (restored from the checkpoint's parts instead when they hold one)."""
    s, n_shards = plane.shards.index(plane.comm.rank), len(plane.shards)
    storage = plane.storage(share_of(buffer_size, s, n_shards), alpha, rng)
    demos = None
    if resumed is not None:
        restore_shard(storage, resumed, s, n_shards)
    if demo_rows is not None:
        demos = demo_replay(plane.fields, alpha, rng, resumed, s, n_shards, demo_rows)
    writer = ThreadPoolExecutor(1, thread_name_prefix="replay-part")

    def on_checkpoint(req):  # -> Future of {part name: {file, sha256}}
        if not save:
            return {}
        rel = checkpoint.part_file(req.id, f"replay-{s}")
        attrs, arrays = part_of(storage, s, n_shards, demos)  # the copy: all the shard pauses for
        path = Path(run_dir) / "checkpoints" / rel
        return writer.submit(lambda: {f"replay-{s}": {"file": rel, "sha256": checkpoint.save_part(
            path, "replay", attrs, arrays)}})

    try:
        counts = serve(plane.comm, storage, plane.fields, plane.block_rows, plane.max_batch, clients, plane.outbox,
                       plane.inbox, ckpt, on_checkpoint, demos, plane.stacks)
        ckpt.close(on_checkpoint)  # the final checkpoint holds everything the actors sent
    finally:
        writer.shutdown(wait=True)
    return counts


DEMO = "demo_"  # the prefix of a demo replay's arrays and attributes in a replay part


def part_of(storage: PrioritizedReplay, shard: int, shards: int, demos: PrioritizedReplay | None = None
            ) -> tuple[dict, dict[str, np.ndarray]]:
    """A copy of a shard's contents as a checkpoint part's (attrs, arrays): every stored field and the priorities
    before the exponent, oldest first (compact frames: refs into the distinct frames used); a demo replay's the
    same way, named with the prefix `demo_`."""
    attrs, arrays = {"shard": shard, "shards": shards}, {}
    for prefix, st in (("", storage), (DEMO, demos)):
        if st is None:
            continue
        order = st.age_order()
        arrays.update({prefix + k: v for k, v in st.rows_of(order).items()})
        arrays[prefix + "priority"] = st.raw_priorities(order)
        attrs.update({prefix + "capacity": st.capacity, prefix + "size": st.size, prefix + "next": st.next,
                      prefix + "alpha": st.alpha, prefix + "max_priority": st.max_priority})
    return attrs, arrays


def demo_replay(fields, alpha: float, rng: np.random.Generator, resumed: State | None, s: int, n_shards: int,
                demo_rows) -> PrioritizedReplay:
    """Shard s's demo replay: from the checkpoint's parts if they hold one, else demo_rows(s, n_shards), all at
    the largest priority."""
    if resumed is not None and any_demos(resumed):
        n = sum(int(checkpoint.load_part(resumed, name, "replay")[0].get(DEMO + "size", 0))
                for name in replay_parts(resumed))
        demos = PrioritizedReplay(max(1, share_of(n, s, n_shards)), fields, alpha, rng)
        restore_shard(demos, resumed, s, n_shards, prefix=DEMO)
        return demos
    rows = demo_rows(s, n_shards)
    n = len(next(iter(rows.values())))
    demos = PrioritizedReplay(max(1, n), fields, alpha, rng)
    if n:
        demos.add(rows)
    return demos


def any_demos(state: State) -> bool:
    names = replay_parts(state)
    return bool(names) and DEMO + "size" in checkpoint.load_part(state, names[0], "replay")[0]


def replay_parts(state: State) -> list[str]:
    return sorted((n for n in state.parts if n.startswith("replay-")), key=lambda n: int(n.split("-")[1]))


def save_part(path: Path, storage: PrioritizedReplay, shard: int, shards: int) -> str:
    """Write a shard's part file now (serial runs, tests); returns its SHA-256."""
    return checkpoint.save_part(path, "replay", *part_of(storage, shard, shards))


def restore_shard(storage: PrioritizedReplay, state: State, s: int, n_shards: int, prefix: str = "") -> int:
    """Fill shard s of n_shards from a checkpoint's replay parts (their arrays named prefix + field); returns the
    rows restored. With as many shards as the checkpoint, shard s gets part s; otherwise rows are dealt round robin
    over the new shards (row i of the parts' concatenation to shard (i // storage.deal) mod n_shards: 1, or the
    64 rows of a compact-frames block, which share their frames). A shard keeps its newest rows if they exceed its
    capacity."""
    names = replay_parts(state)
    restored, offset, max_p = 0, 0, 1.0
    for k, name in enumerate(names):
        if len(names) == n_shards and k != s:
            continue
        attrs, arrays = checkpoint.load_part(state, name, "replay")
        size = int(attrs[prefix + "size"])
        arrays = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix) and
                  (prefix or not k.startswith(DEMO))}
        if not storage.loadable(set(arrays)):
            raise CheckpointError(f"{state.part_path(name)}: replay fields {sorted(arrays)} do not match this run's "
                                  f"{sorted([*storage.data, 'priority'])}")
        pick = slice(None) if len(names) == n_shards else \
            np.flatnonzero((offset + np.arange(size)) // storage.deal % n_shards == s)
        rows = {f: v if f == FRAMES else v[pick] for f, v in arrays.items()}  # frames are the part's, not per row
        priority = rows.pop("priority")
        storage.load(rows, priority)
        restored += len(priority)
        offset += size
        max_p = max(max_p, float(attrs[prefix + "max_priority"]))
    storage.max_priority = max(storage.max_priority, max_p)
    return min(restored, storage.size)
