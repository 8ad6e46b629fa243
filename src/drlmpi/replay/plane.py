"""The replay plane of a job: its channel, shard ranks, storage layout and node segments, and the shard role.

`ReplayPlane.create` is collective over the node; then actors take a `writer`, learners a `sampler`,
and shard ranks `run_shard`. The storage layout is the algorithm's (`fields`: n-step transitions,
sequences, continuous actions), so every replay-based algorithm uses this one shard role.
"""

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from drlmpi.comm.mailbox import NodeSegments
from drlmpi.replay.client import ReplaySampler, ReplayWriter
from drlmpi.replay.shard import Fields, node_segments, serve
from drlmpi.replay.storage import PrioritizedReplay


@dataclass
class ReplayPlane:
    comm: MPI.Intracomm  # the replay channel (a Dup of the world: its own message space)
    shards: list[int]  # world ranks of the replay shards
    fields: Fields  # the storage layout: name -> (shape per row, dtype)
    block_rows: int  # rows per block a writer sends
    max_batch: int  # largest batch a learner asks for
    outbox: NodeSegments  # writers' outboxes on this node
    inbox: NodeSegments  # learners' inboxes on this node

    @staticmethod
    def create(comm: MPI.Intracomm, node: MPI.Intracomm, shards: list[int], fields: Fields, block_rows: int,
               max_batch: int, writer: bool, learner: bool) -> "ReplayPlane":
        """Collective over node: this rank gets an outbox if it writes, an inbox if it samples."""
        outbox, inbox = node_segments(comm, node, fields, block_rows, max_batch, writer, learner)
        return ReplayPlane(comm, shards, fields, block_rows, max_batch, outbox, inbox)

    def writer(self, first: int = 0) -> ReplayWriter:
        """An actor's writer: blocks go to the shards round robin, starting at shard `first` mod S."""
        return ReplayWriter(self.comm, self.shards, self.fields, self.block_rows, self.outbox, first=first)

    def sampler(self, rng: np.random.Generator) -> ReplaySampler:
        return ReplaySampler(self.comm, self.shards, self.fields, self.max_batch, rng, self.inbox)


def run_shard(plane: ReplayPlane, buffer_size: int, alpha: float, rng: np.random.Generator, clients: int) -> dict:
    """The `replay` role: this shard's share of `buffer_size`, served until `clients` have said STOP."""
    s = plane.shards.index(plane.comm.rank)
    capacity = buffer_size // len(plane.shards) + (s < buffer_size % len(plane.shards))
    storage = PrioritizedReplay(capacity, plane.fields, alpha, rng)
    return serve(plane.comm, storage, plane.fields, plane.block_rows, plane.max_batch, clients, plane.outbox,
                 plane.inbox)
