"""Sharded parameter server (GORILA): the flat vector split in contiguous slices over the `ps` ranks.

Learners `isend_gradient` (one buffer `Isend` of its slice to each shard, tag GRADIENT) and
`isend_stop` when done, on the params channel (and the lead's checkpoint requests, comm.checkpoint). Each ps rank runs
`serve_shard`: it waits politely for the next message from any learner, receives the gradient slice
into a preallocated buffer, applies its own optimizer (RMSProp, AdaGrad or Adam) to its slice, and
pushes the slice every `publish_every` updates through a `WeightsPush` into the node windows, where
readers assemble the whole vector (`NodeWeights(shards=len(ps_ranks)).read`).
"""

import numpy as np
from mpi4py import MPI

from drlmpi.comm.tags import Tag
from drlmpi.comm.weights import WeightsPush
from drlmpi.errors import invariant
from drlmpi.ops import optim
from drlmpi.runtime import probe, wait_all


def isend_gradient(comm: MPI.Intracomm, grad: np.ndarray, ps_ranks: list[int], bounds: np.ndarray) -> list:
    """Learner: Isend each ps shard its slice of grad (float32 [n]); returns the requests (keep grad alive)."""
    invariant(grad.dtype == np.float32 and grad.flags.c_contiguous, "gradients go as one contiguous float32 vector")
    return [comm.Isend(grad[bounds[s] : bounds[s + 1]], dest=r, tag=Tag.GRADIENT) for s, r in enumerate(ps_ranks)]


def isend_stop(comm: MPI.Intracomm, ps_ranks: list[int]) -> None:
    """Learner: tell every ps shard this learner sends no more gradients."""
    empty = np.zeros(0, np.float32)
    wait_all([comm.Isend(empty, dest=r, tag=Tag.STOP) for r in ps_ranks], what="ps stop")


class GradientSender:
    """A client's gradients to every ps shard, each its slice, without waiting for them to be applied (two buffers:
    a send waits only for the one before the previous)."""

    def __init__(self, comm: MPI.Intracomm, ps_ranks: list[int], bounds: np.ndarray):
        self.comm, self.ps, self.bounds = comm, ps_ranks, bounds
        self.bufs, self.reqs, self.k = [np.zeros(int(bounds[-1]), np.float32) for _ in range(2)], [[], []], 0

    def post(self, grad: np.ndarray) -> None:
        """Isend each shard its slice of grad (float32 [n], copied)."""
        turn, self.k = self.k % 2, self.k + 1
        wait_all(self.reqs[turn], what="previous gradient sends")
        self.bufs[turn][:] = grad
        self.reqs[turn] = isend_gradient(self.comm, self.bufs[turn], self.ps, self.bounds)

    def close(self) -> None:
        """Every gradient sent, then STOP to every shard."""
        wait_all(self.reqs[0] + self.reqs[1], what="gradient sends")
        isend_stop(self.comm, self.ps)


def serve_shard(comm: MPI.Intracomm, push: WeightsPush, init: np.ndarray, learners: int, optimizer: str,
                lr, publish_every: int = 1, ckpt=None, save=None, start: dict | None = None,
                **opt_kwargs) -> tuple[np.ndarray, int]:
    """PS rank: apply gradients from `learners` learners to this shard's slice until all have stopped.

    init: float32 [k], this shard's initial slice. lr: a float, or a function of the number of updates
    applied so far (a schedule). ckpt: this rank's comm.checkpoint.CheckpointClient; its requests arrive here
    and are answered with save(req, w, optimizer, version) -> parts. start: {"opt": optimizer state, "version"}
    of a resumed run. Returns (final slice, number of updates applied).
    """
    apply = optim.make(optimizer, len(init), **opt_kwargs)
    lr_at = lr if callable(lr) else (lambda _: lr)
    w = init.astype(np.float32).copy()
    grad = np.empty_like(w)
    version = 0
    if start is not None:
        apply.load(start["opt"])
        version = int(start["version"])
    push.publish(w, version)
    stopped = 0
    status = MPI.Status()

    def on_checkpoint(req):
        return save(req, w, apply, version) if save else None

    while stopped < learners:
        status = probe(comm, what="the next gradient from a learner")
        if ckpt is not None:
            ckpt.forward_signal()
        if status.tag == Tag.STOP:
            comm.Recv(np.zeros(0, np.float32), source=status.source, tag=Tag.STOP)
            stopped += 1
            continue
        if status.tag == Tag.CHECKPOINT and ckpt is not None:
            ckpt.handle(on_checkpoint)
            continue
        invariant(status.tag == Tag.GRADIENT, f"unexpected tag {status.tag}")
        comm.Recv(grad, source=status.source, tag=Tag.GRADIENT)  # the message is here: no long spin
        apply(w, grad, lr_at(version))
        version += 1
        if version % publish_every == 0:
            push.publish(w, version)
    push.publish(w, version)
    if ckpt is not None:
        ckpt.close(on_checkpoint)  # the final checkpoint holds every learner's gradients
    return w, version
