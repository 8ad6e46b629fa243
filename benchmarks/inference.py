"""Central inference (GA3C, SEED RL), in one run:

latency     one actor and one server on a host (`mpiexec -n 2`: node segment + doorbell, comm.inference): the round
            trip of one step (the actor's request of E observations -> the server's gather, forward, sampled actions,
            answer, and the step filed into the actor's unroll -> the actor has its actions), against the same forward
            and sampling done in the actor's own process (what an IMPALA or A3C actor does per step).
throughput  observations/s one server answers against the batch size b (1 to 256 observations a forward: one actor
            sends requests of b observations, so the server's whole path runs with batches of b) on the MLP
            (CartPole-v1) and the Nature CNN (84x84x4 uint8 frames), against the bare forward of b observations in
            one process (the limit). Both sides use one torch thread, as drlmpi gives every rank but a learner.
jobs        GA3C against A3C frames/s and SEED against IMPALA, each with its defaults on the same N ranks (frames/s:
            median of metrics.csv rows, first and last left out, as benchmarks/impala.py).

Usage: python benchmarks/inference.py [--parts latency,throughput,jobs] [--ranks 4] [--seconds 20]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

BIN = os.path.dirname(sys.executable)
HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = {"mlp": ((4,), np.float32, 2), "cnn": ((4, 84, 84), np.uint8, 6)}  # obs shape, dtype, actions


def setup(kind: str, b: int):
    import torch

    from drlmpi.central import CentralConfig
    from drlmpi.nets import ActorCritic

    shape, dtype, actions = KINDS[kind]
    torch.manual_seed(0)
    return CentralConfig(num_envs=b, n_steps=20), ActorCritic(shape, actions).requires_grad_(False), shape, dtype


def local_forward(kind: str, b: int, seconds: float) -> float:
    """Seconds per forward + sample of b observations in this process."""
    import torch

    from drlmpi.ops import policy as pi

    torch.set_num_threads(1)  # as the server (and every actor rank) has
    _, net, shape, dtype = setup(kind, b)
    x = torch.as_tensor(np.random.default_rng(0).integers(0, 255, (1, b, *shape)).astype(dtype))
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds or n < 20:
        with torch.no_grad():
            pi.sample(net(x)[0][0]).numpy()
        n += 1
    return (time.perf_counter() - t0) / n


def serve(kind: str, b: int, seconds: float) -> None:
    """mpiexec -n 2: rank 0 serves rank 1; rank 0 prints the round-trip seconds rank 1 measured."""
    import torch
    from gymnasium.spaces import Box, Discrete
    from mpi4py import MPI

    from drlmpi.algos.seed import UnrollPool
    from drlmpi.central import answer_batch, central_fields
    from drlmpi.comm.inference import Assembler, InferencePlane

    torch.set_num_threads(1)
    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED)
    cfg, net, shape, dtype = setup(kind, b)
    request, reply, unroll, once = central_fields(cfg, Box(0, 255, shape, dtype), Discrete(KINDS[kind][2]))
    plane = InferencePlane.create(world.Dup(), node, request, reply, actor=world.rank == 1)
    if world.rank == 0:
        server = plane.server([1], batch=1, timeout=0.0)
        pool = UnrollPool(unroll, cfg.n_steps, once, 4, 1)
        asm = Assembler(1, cfg.n_steps, pool.acquire, pool.emit, pool.discard)
        states = [()]
        while (js := server.collect()) is not None:
            answer_batch(net, server, js, asm, 0, states, cfg, torch.device("cpu"))
            if pool.ready:
                pool.take()
        server.close()
        print(world.recv(source=1))
    else:
        client = plane.client(0, 0)
        client.request["obs"][:] = np.random.default_rng(1).integers(0, 255, (b, *shape)).astype(dtype)
        client.request["reward"][:] = client.request["discount"][:] = client.request["cut"][:] = 0
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds or n < 20:
            client.post()
            client.receive()
            n += 1
        rtt = (time.perf_counter() - t0) / n
        client.close()
        world.send(rtt, dest=0)


def round_trip(kind: str, b: int, seconds: float) -> float:
    r = subprocess.run([os.path.join(BIN, "mpiexec"), "-n", "2", sys.executable, __file__, "--serve", kind, str(b),
                        str(seconds)], capture_output=True, text=True, timeout=120 + seconds)
    if r.returncode:
        sys.exit(f"serve run failed:\n{r.stdout}\n{r.stderr}")
    return float(r.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", default="latency,throughput,jobs")
    ap.add_argument("--ranks", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--serve", nargs=3, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        return serve(a.serve[0], int(a.serve[1]), float(a.serve[2]))
    sys.path.insert(0, HERE)
    from _timing import machine

    parts = a.parts.split(",")
    print(f"central inference, {machine()}")
    if "latency" in parts:
        print("latency of one step, actor -> server -> actor on one host, against the forward in the actor's process")
        for kind, b in (("mlp", 1), ("mlp", 16), ("cnn", 1), ("cnn", 16)):
            rtt, local = round_trip(kind, b, 3), local_forward(kind, b, 3)
            print(f"  {kind} E={b:<4d} round trip {rtt * 1e6:9.0f} us   in-process forward {local * 1e6:9.0f} us   "
                  f"ratio {rtt / local:.2f}")
    if "throughput" in parts:
        print("observations/s one server answers against batch size (one forward a batch), against the bare forward")
        for kind in ("mlp", "cnn"):
            for b in (1, 4, 16, 64, 256):
                rtt, local = round_trip(kind, b, 3), local_forward(kind, b, 3)
                print(f"  {kind} batch {b:4d}  served {b / rtt:10.0f} obs/s   bare forward {b / local:10.0f} obs/s   "
                      f"ratio {local / rtt:.2f}")
    if "jobs" in parts:
        from impala import job_fps

        n, steps = a.ranks, int(10_000 * a.seconds)
        with tempfile.TemporaryDirectory() as d:
            fps = {algo: job_fps(algo, n, steps, os.path.join(d, algo)) for algo in ("ga3c", "a3c", "seed", "impala")}
        print(f"CartPole-v1, {n} ranks, defaults, {steps} env steps each")
        print(f"  ga3c {fps['ga3c']:8.0f} frames/s   a3c    {fps['a3c']:8.0f} frames/s   ga3c / a3c    "
              f"{fps['ga3c'] / fps['a3c']:.2f}")
        print(f"  seed {fps['seed']:8.0f} frames/s   impala {fps['impala']:8.0f} frames/s   seed / impala "
              f"{fps['seed'] / fps['impala']:.2f}")


if __name__ == "__main__":
    main()
