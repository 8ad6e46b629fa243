"""The lead learner's cost of hearing many actors: `ActorStats.drain` against bare MPI receives, in one run.

Rank 1 plays `actors` actors, each reporting `per_s` times a second (Tag.METRICS on the reports channel,
the actor index in the message, as ActorReport sends), paced in bursts every 5 ms, then a STOP per actor.
Rank 0 plays the lead: a busy "training step" of `step_ms` (a spin, as a learner busy in torch), then
it drains what arrived, the way Ape-X's lead does between updates. Two phases, same traffic:
  bare    Iprobe + Recv of every message, nothing else (the MPI floor);
  drain   ActorStats.drain: Iprobe + Recv + the O(1) accounting (fps, policy lag, paused, returns).
Printed: microseconds per report in each phase, their ratio, and the share of the lead's time spent on
reports at this rate. For contrast, the old per-report lookup `actors.index(src)` over `actors` ranks is
timed in-process.

Usage: mpiexec -n 2 python benchmarks/reports.py [--actors 1000] [--per-s 2] [--seconds 10] [--step-ms 3]
"""

import argparse
import time

import numpy as np
from _timing import machine
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.metrics import FIELDS, ActorStats
from drlmpi.comm.tags import Tag


def lead(comm, args, use_stats: bool) -> tuple[float, int, float]:
    """(seconds in receiving, reports received, wall seconds)."""
    stats = ActorStats(comm, args.actors)
    msg, stop, st = np.zeros(FIELDS), np.zeros(0, np.uint8), MPI.Status()
    got = done = 0
    spent = 0.0
    t_start = time.perf_counter()
    while (stats.done if use_stats else done) < args.actors:
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.step_ms / 1e3:  # the training step: busy
            pass
        t0 = time.perf_counter()
        if use_stats:
            stats.drain(100, lambda r: None)
        else:
            while comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, st):
                if st.tag == Tag.METRICS:
                    comm.Recv(msg, source=st.source, tag=st.tag)
                    got += 1
                else:
                    comm.Recv(stop, source=st.source, tag=st.tag)
                    done += 1
        spent += time.perf_counter() - t0
    return spent, stats.received if use_stats else got, time.perf_counter() - t_start


def actors(comm, args) -> None:
    burst = max(1, round(args.actors * args.per_s * 0.005))  # reports per 5 ms
    bufs = np.zeros((burst, FIELDS))
    bufs[:, 1:] = (8, 1, 20.0, 900, 2, 0.5, 0.01)  # steps, episodes, return sum, version sum, vsteps, s, paused
    reqs: list = []
    i, t_next, t_end = 0, time.perf_counter(), time.perf_counter() + args.seconds
    while time.perf_counter() < t_end:
        runtime.wait_all(reqs, what="report sends")
        bufs[:, 0] = (i + np.arange(burst)) % args.actors
        i += burst
        reqs = [comm.Isend(bufs[k], dest=0, tag=Tag.METRICS) for k in range(burst)]
        t_next += 0.005
        time.sleep(max(0.0, t_next - time.perf_counter()))
    runtime.wait_all(reqs, what="report sends")
    stop = np.zeros(0, np.uint8)
    runtime.wait_all([comm.Isend(stop, dest=0, tag=Tag.STOP) for _ in range(args.actors)], what="stops")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--actors", type=int, default=1000)
    p.add_argument("--per-s", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--step-ms", type=float, default=3.0)
    args = p.parse_args()
    world = MPI.COMM_WORLD
    assert world.size == 2, "run with mpiexec -n 2"
    comm = world.Dup()  # the reports channel
    results = {}
    for phase in ("bare", "drain"):
        runtime.barrier(world)
        if world.rank == 0:
            results[phase] = lead(comm, args, phase == "drain")
        else:
            actors(comm, args)
    if world.rank:
        return
    ranks = list(range(2, 2 + args.actors))
    probe_at = np.random.default_rng(0).integers(0, args.actors, 20_000)
    t0 = time.perf_counter()
    for k in probe_at:
        ranks.index(int(k) + 2)
    old = (time.perf_counter() - t0) / len(probe_at)
    (b_s, b_n, b_wall), (d_s, d_n, d_wall) = results["bare"], results["drain"]
    bare, drain = b_s / b_n * 1e6, d_s / d_n * 1e6
    print(f"# {machine()}")
    print(f"actors {args.actors}, {args.per_s} reports/s each ({args.actors * args.per_s:.0f}/s), "
          f"lead step {args.step_ms} ms, {args.seconds} s per phase")
    print(f"bare MPI receive: {bare:.2f} us/report ({b_n} reports; {b_s / b_wall:.2%} of the lead's time)")
    print(f"ActorStats.drain: {drain:.2f} us/report ({d_n} reports; {d_s / d_wall:.2%} of the lead's time); "
          f"ratio to bare {drain / bare:.2f}")
    print(f"old lookup actors.index(src) over {args.actors} ranks: {old * 1e6:.2f} us/report, on top")


if __name__ == "__main__":
    main()
