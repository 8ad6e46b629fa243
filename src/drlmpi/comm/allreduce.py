"""Learners average their gradients: one allreduce of a flat buffer per update.

`GradAllreduce(comm, params, backend)` packs every parameter's gradient into one contiguous
float32 buffer [n + extra], allreduces it (sum) and unpacks the mean (`mean=False`: the sum). With
`bind_grads()` the gradients are views of that buffer instead: backward accumulates into it and
nothing is packed or unpacked (PPO's many small minibatch steps). `extra` trailing slots ride
along for the control plane: the lead learner writes progress and the stop flag there, the others
write 0, so after the sum every learner knows them without another message.

Backends:
  mpi    a polite `Ibarrier` (a learner that arrives early tests it for `meet_spin` seconds, yielding
         its core, then sleeps with back-off instead of spinning on a shared host), then a blocking
         `Allreduce` on the learners' communicator: everyone is there, so it spins only for the
         transfer. A polite `Iallreduce` was measured 10-40x slower: it sleeps between the algorithm's
         rounds. Host memory: gradients on a GPU are staged through it. `meet_spin`: runtime.wait's
         50 us by default; MEET_SPIN (5 ms) for workers that meet hundreds of times a second
         (PPO's and A2C's; PPO: 4 ranks on 2 cores ran 1,220 frames/s on Hopper-v5 with 50 us, 1,690 with 5 ms: a
         sleeping worker woke up to 1 ms late while the others spun in the Allreduce).
  gloo   torch.distributed with the gloo backend (CPU tensors).
  nccl   torch.distributed with NCCL: the buffer stays on the GPU.
  auto   nccl when the parameters live on a CUDA device, else mpi (measured faster on CPU than gloo:
         benchmarks/allreduce.py, BENCHMARKS.md).

Every learner gets the same bits: sum is commutative and each algorithm combines the same partial
sums everywhere, so learners that start equal stay equal (tests/mpi/scripts/apex_learners.py).
"""

import datetime
import os
import socket

import numpy as np
import torch
from mpi4py import MPI

from drlmpi.config import AllreduceOption
from drlmpi.nets.optim import clip_grad_norm
from drlmpi.ops.schedules import linear
from drlmpi.runtime import wait
from drlmpi.runtime.wait import SPIN

BACKENDS = AllreduceOption.BACKENDS
MEET_SPIN = 5e-3  # s a frequent learner tests the allreduce's barrier, yielding its core, before it sleeps


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def init_torch_group(comm: MPI.Intracomm, backend: str, timeout_s: float = 120.0) -> None:
    """Form a torch.distributed group over `comm` (rank 0 of comm hosts the TCP store)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    buf = np.zeros(256, np.uint8)  # the store's address, as bytes
    if comm.rank == 0:
        raw = f"tcp://{socket.gethostname()}:{free_port()}".encode()
        buf[: len(raw)] = np.frombuffer(raw, np.uint8)
    wait(comm.Ibcast(buf, root=0), what="the torch.distributed store address")
    addr = bytes(buf).rstrip(b"\0").decode()
    dist.init_process_group(backend, init_method=addr, rank=comm.rank, world_size=comm.size,
                            timeout=datetime.timedelta(seconds=timeout_s))


def choose_backend(backend: str, device: torch.device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"allreduce backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "mpi"
    return backend


class GradAllreduce:
    def __init__(self, comm: MPI.Intracomm, params: list[torch.nn.Parameter], backend: str = "auto",
                 extra: int = 0, meet_spin: float = SPIN):
        self.comm, self.params, self.extra, self.meet_spin = comm, list(params), extra, meet_spin
        device = self.params[0].device
        self.backend = choose_backend(backend, device)
        self.sizes = [p.numel() for p in self.params]
        self.n = sum(self.sizes)
        on_gpu = self.backend == "nccl"
        self.buf = torch.zeros(self.n + extra, dtype=torch.float32, device=device if on_gpu else "cpu")
        self.host = self.buf.numpy() if not on_gpu else None  # the MPI view of the buffer
        self.flat = self.buf[: self.n]  # every gradient, flat [n]
        self.views = torch.split(self.flat, self.sizes)  # each parameter's gradient in the buffer
        self.tail = np.zeros(extra, np.float64)
        if self.backend in ("gloo", "nccl") and comm.size > 1:
            if self.backend == "nccl":
                os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
            init_torch_group(comm, self.backend)

    def bind_grads(self) -> bool:
        """Make every parameter's .grad a view of the buffer, zeroed: backward then accumulates in place into what
        is allreduced, with no copies in or out (zero_grad() keeps the views). False where the buffer is not on
        the parameters' device and dtype (MPI or gloo with a GPU learner): they are copied as before then."""
        if any(p.device != self.buf.device or p.dtype != self.buf.dtype for p in self.params):
            return False
        self.buf.zero_()
        for v, p in zip(self.views, self.params):
            p.grad = v.view_as(p)
        return True

    def bound(self) -> bool:
        return all(p.grad is not None and p.grad.data_ptr() == v.data_ptr() for v, p in zip(self.views, self.params))

    def zero_grad(self) -> None:
        """Bound gradients zeroed in place (one fill), else set to None."""
        if self.bound():
            self.flat.zero_()
        else:
            for p in self.params:
                p.grad = None

    def __call__(self, extra: np.ndarray | None = None, mean: bool = True) -> np.ndarray:
        """Replace every .grad by its mean over the learners (mean False: its sum); returns the summed extra slots
        (float64 [extra]).

        extra: this learner's values for the trailing slots (float [extra]); zeros when None.
        Parameters without a gradient contribute zeros.
        """
        if self.comm.size == 1:  # one learner: nothing to average
            self.tail[:] = extra if extra is not None else 0
            return self.tail
        bound = self.bound()
        with torch.no_grad():
            if not bound:
                self._pack()
            if self.extra:
                self.buf[self.n :] = torch.as_tensor(extra if extra is not None else np.zeros(self.extra),
                                                     dtype=torch.float32)
            if self.backend == "mpi":  # wait politely until all are here, then spin only for the transfer
                wait(self.comm.Ibarrier(), what="the other learners", spin=self.meet_spin)
                self.comm.Allreduce(MPI.IN_PLACE, self.host, op=MPI.SUM)
            else:
                import torch.distributed as dist

                dist.all_reduce(self.buf)
            self.tail[:] = self.buf[self.n :].cpu().numpy()
            if mean:
                self.flat /= self.comm.size
            if not bound:
                self._unpack()
        return self.tail

    def _pack(self) -> None:  # the gradients into the buffer (none: zeros)
        for v, p in zip(self.views, self.params):
            if p.grad is None:
                v.zero_()
            else:
                v.copy_(p.grad.reshape(-1))

    def _unpack(self) -> None:
        for v, p in zip(self.views, self.params):
            if p.grad is None:
                p.grad = v.view_as(p).clone()
            else:
                p.grad.copy_(v.view_as(p))

    def close(self) -> None:
        if self.backend in ("gloo", "nccl") and self.comm.size > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()


def learners_step(net, opt, allreduce: "GradAllreduce", progress: float, had: bool, extra: float, cfg
                  ) -> float | None:
    """After backward (if this learner `had` a batch): one allreduce of the gradients and (the lead's progress in
    [0, 1], had, extra), the gradient mean over the learners that had a batch, clipping by cfg.max_grad_norm, the
    lr (cfg.lr to cfg.lr_final) at that progress, the optimizer step. Returns the sum of `extra` over the
    learners, or None (no step) when no learner had a batch."""
    frac, contributed, extra_sum = allreduce(np.array([progress, had, extra]))
    if not contributed:
        return None
    clip_grad_norm(allreduce.params, cfg.max_grad_norm, scale=allreduce.comm.size / contributed)
    for g in opt.param_groups:
        g["lr"] = linear(cfg.lr, cfg.lr_final, min(1.0, float(frac)))
    opt.step()
    return float(extra_sum)
