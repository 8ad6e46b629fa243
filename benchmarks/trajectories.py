"""The trajectory plane's transfer against an in-process copy of the same unrolls, in one run.

plane:      under `mpiexec -n 2`, rank 1 is an actor that fills each unroll slot with a prepared unroll (one memcpy,
            what `collect` writes in place) and sends it with `UnrollWriter`; rank 0 is a learner that assembles
            batches of B unrolls with `UnrollReader` (the doorbell, the copy into its batch, the release) as fast
            as they come. On one host: node segments; with `DRLMPI_RANKS_PER_NODE=1`, buffer messages.
in-process: the same two copies in one process, with no MPI: prepared unroll -> a slot -> the batch.
Unrolls of IMPALA's layout: CartPole (T = 20, E = 8) and Atari (T = 20, E = 4, 4 x 84 x 84 uint8 frames).

Usage: mpiexec -n 2 python benchmarks/trajectories.py [--seconds 5]
"""

import argparse
import time

import numpy as np
from _timing import machine
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.trajectories import TrajectoryPlane, unroll_layout

CASES = {"CartPole": ((4,), np.float32, 2, 8), "Atari": ((4, 84, 84), np.uint8, 6, 4)}  # obs, dtype, actions, E
T, B = 20, 4


def fields_of(obs_shape, dtype, actions, E):
    return {"obs": ((E, *obs_shape), dtype), "action": ((E,), np.int64), "reward": ((E,), np.float32),
            "discount": ((E,), np.float32), "logits": ((E, actions), np.float32)}


def in_process(fields, seconds: float) -> float:
    """Unrolls per second through prepared -> slot -> batch copies in one process."""
    layout = unroll_layout(fields, T)
    src, slot = layout.new(), layout.new()
    src[:] = 7
    _, f = layout.views(slot)
    batch = {k: np.zeros((v.shape[0], B * v.shape[1], *v.shape[2:]), v.dtype) for k, v in f.items()}
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        np.copyto(slot, src)
        b = n % B
        for k, v in f.items():
            batch[k][:, b * v.shape[1] : (b + 1) * v.shape[1]] = v
        n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=5.0)
    a = ap.parse_args()
    world = MPI.COMM_WORLD
    assert world.size == 2, "run with mpiexec -n 2"
    node = runtime.context.node_comm(world)
    comm = world.Dup()
    if world.rank == 0:
        print(f"Trajectory plane vs in-process copies, T={T}, B={B}, {machine()}, "
              f"{'one host' if node.size == 2 else 'two pretend hosts'}")
    for name, spec in CASES.items():
        fields = fields_of(*spec)
        plane = TrajectoryPlane.create(comm, node, fields, T, actor=world.rank == 1)
        nbytes = plane.layout.nbytes
        runtime.barrier(world)
        if world.rank == 1:
            src = plane.layout.new()
            src[:] = 7
            w = plane.writer(0, 0)
            deadline = time.perf_counter() + a.seconds
            while time.perf_counter() < deadline:
                slot, _ = w.acquire()
                np.copyto(w._buf(slot), src)
                w.post(slot, 0)
            w.close()
        else:
            r = plane.reader([1], B)
            n, t0 = 0, time.perf_counter()
            while r.receive(0) is not None:
                n += B
            took = time.perf_counter() - t0
            r.close()
            plane_rate = n / took
            ref = in_process(fields, a.seconds)
            print(f"  {name:8s} unroll {nbytes / 2**20:6.2f} MiB   plane {plane_rate:8.1f} unrolls/s "
                  f"({plane_rate * nbytes / 2**30:5.2f} GiB/s)   in-process {ref:8.1f} unrolls/s "
                  f"({ref * nbytes / 2**30:5.2f} GiB/s)   ratio {plane_rate / ref:.2f}", flush=True)
        runtime.barrier(world)
        plane.outbox.free()


if __name__ == "__main__":
    main()
