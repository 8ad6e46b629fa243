"""The lead learner's cost of hearing many actors: `ActorStats.drain` against bare MPI receives, in one run.

Ranks 1.. play `actors` actors between them, each actor reporting `per_s` times a second (Tag.METRICS on
the reports channel, the actor index in the message, as ActorReport sends), then a STOP per actor. Several
sender ranks (8 by default in `make bench`) stand for many actors better than one: MPICH delivers about one
message per receiver progress call from a given sender, so one sender cannot reach 2,000 reports/s here.
Rank 0 plays the lead: a busy "training step" of `step_ms` (a spin, as a learner busy in torch), then
it drains what arrived, the way Ape-X's lead does between updates. Two phases, same traffic:
  bare    Iprobe + Recv of every message, nothing else (the MPI floor);
  drain   ActorStats.drain: Iprobe + Recv + the O(1) accounting (fps, policy lag, paused, returns).
Printed: microseconds per report in each phase, their ratio, and the share of the lead's time spent on
reports at this rate. For contrast, the old per-report lookup `actors.index(src)` over `actors` ranks is
timed in-process.

Usage: mpiexec -n 9 python benchmarks/reports.py [--actors 1000] [--per-s 2] [--seconds 10] [--step-ms 3]
"""

import argparse
import time

import numpy as np
from _timing import machine
from mpi4py import MPI

from drlmpi import runtime
from drlmpi.comm.metrics import FIELDS, ActorStats
from drlmpi.comm.tags import Tag


def lead(comm, args, use_stats: bool) -> tuple[float, int, int]:
    """Over the senders' `seconds`: (seconds spent receiving, reports received, drains); then takes the STOPs."""
    stats = ActorStats(comm, args.actors)
    msg, stop, st = np.zeros(FIELDS), np.zeros(0, np.uint8), MPI.Status()
    got = done = drains = 0
    spent = 0.0
    t_end = time.perf_counter() + args.seconds
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
        if t0 < t_end:
            spent += time.perf_counter() - t0
            drains += 1
            received = stats.received if use_stats else got
    return spent, received, drains


def empty_drain(comm, use_stats: bool, calls: int = 20_000) -> float:
    """Seconds per drain when nothing has arrived (the cost a lead pays every update anyway)."""
    stats, st = ActorStats(comm, 1), MPI.Status()
    t0 = time.perf_counter()
    for _ in range(calls):
        if use_stats:
            stats.drain(0)
        else:
            comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, st)
    return (time.perf_counter() - t0) / calls


def actors(comm, args) -> None:
    """This rank plays its share of the actors, sending each report when it is due (checked every 5 ms)."""
    senders, me = comm.size - 1, comm.rank - 1
    mine = np.arange(me, args.actors, senders)  # actor indices this rank plays
    rate = len(mine) * args.per_s  # reports per second from this rank
    bufs = np.zeros((max(1, int(rate * 0.05)) + 1, FIELDS))  # a ring larger than one 5 ms burst
    bufs[:, 1:] = (8, 1, 20.0, 900, 2, 0.5, 0.01)  # steps, episodes, return sum, version sum, vsteps, s, paused
    reqs = [MPI.REQUEST_NULL] * len(bufs)
    sent, t0 = 0, time.perf_counter()
    while (now := time.perf_counter()) < t0 + args.seconds:
        while sent < rate * (now - t0):
            k = sent % len(bufs)
            runtime.wait(reqs[k], what="a report send")
            bufs[k, 0] = mine[sent % len(mine)]
            reqs[k] = comm.Isend(bufs[k], dest=0, tag=Tag.METRICS)
            sent += 1
        time.sleep(0.005)
    runtime.wait_all(reqs, what="report sends")
    stop = np.zeros(0, np.uint8)
    runtime.wait_all([comm.Isend(stop, dest=0, tag=Tag.STOP) for _ in mine], what="stops")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--actors", type=int, default=1000)
    p.add_argument("--per-s", type=float, default=2.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--step-ms", type=float, default=3.0)
    args = p.parse_args()
    world = MPI.COMM_WORLD
    assert world.size >= 2, "run with mpiexec -n 2 or more (ranks 1.. play the actors)"
    comm = world.Dup()  # the reports channel
    results = {}
    for phase in ("bare", "drain"):
        runtime.barrier(world)
        if world.rank == 0:
            results[phase] = lead(comm, args, phase == "drain") + (empty_drain(comm, phase == "drain"),)
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
    print(f"# {machine()}")
    print(f"{args.actors} actors played by {world.size - 1} ranks, {args.per_s} reports/s each, lead step "
          f"{args.step_ms} ms, {args.seconds} s per phase")
    window = args.seconds
    per = {}
    for phase, (spent, n, drains, empty) in results.items():
        per[phase] = (spent - drains * empty) / max(n, 1)  # the cost a report adds to a drain
        print(f"{phase:5s}: {n / window:.0f} reports/s received, {drains / window:.0f} drains/s; "
              f"{spent / window:.2%} of the lead's time on reports (empty drain {empty * 1e6:.2f} us, "
              f"{per[phase] * 1e6:.2f} us per report on top)")
    print(f"ActorStats.drain against bare Iprobe + Recv, per report: {per['drain'] / per['bare']:.2f}x; at "
          f"{args.actors * args.per_s:.0f} reports/s its reports cost {per['drain'] * args.actors * args.per_s:.2%} "
          f"of the lead's time")
    print(f"old lookup actors.index(src) over {args.actors} ranks: {old * 1e6:.2f} us per report, on top")


if __name__ == "__main__":
    main()
