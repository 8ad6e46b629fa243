"""Polite waiting on MPI requests.

MPICH busy-polls inside blocking calls (`Recv`, `Wait`, `Barrier`): 7 ranks
blocked on a 2-core machine slow the one computing rank 4x (docs/measured.md).
Every wait in drlmpi goes through these helpers instead: they `Test` the
request without sleeping for the first `spin` seconds (SPIN unless the caller
gives another: a reply that is about to arrive is caught without a wake-up
delay), yielding the core between tests (sched_yield: a rank that shares its
core lets the others run), then sleep between tests, backing off from
FIRST_SLEEP to `max_sleep` seconds, so an idle rank costs a few microseconds of
CPU per millisecond once its spin is over (GradAllreduce's PPO workers spin 5 ms:
they meet hundreds of times a second).

Every wait has a time limit, PEER_TIMEOUT unless the caller gives another, and its TimeoutError names what it waited
for: a peer that never answers ends the job (through the abort path) instead of hanging it.
"""

import os
import time

from mpi4py import MPI

SPIN = 50e-6
FIRST_SLEEP = 20e-6
MAX_SLEEP = 1e-3
PEER_TIMEOUT = 600.0  # seconds a role waits for a peer's next message before it fails, naming what it waited for


def poll(test, timeout: float | None = PEER_TIMEOUT, what: str = "a condition", max_sleep: float = MAX_SLEEP,
         spin: float = SPIN):
    """Call test() until it returns something other than None (spin for `spin` s yielding the core, then sleep
    with back-off)."""
    start = time.monotonic()
    deadline = None if timeout is None else start + timeout
    while time.monotonic() - start < spin:
        result = test()
        if result is not None:
            return result
        os.sched_yield()
    delay = FIRST_SLEEP
    while True:
        result = test()
        if result is not None:
            return result
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, max_sleep)


def wait(request: MPI.Request, timeout: float | None = PEER_TIMEOUT, what: str = "a request",
         max_sleep: float = MAX_SLEEP, spin: float = SPIN) -> MPI.Status:
    """Wait for one request without busy-spinning; returns its status."""
    status = MPI.Status()
    return poll(lambda: status if request.Test(status) else None, timeout, what, max_sleep, spin)


def wait_all(requests: list[MPI.Request], timeout: float | None = PEER_TIMEOUT, what: str = "requests",
             max_sleep: float = MAX_SLEEP) -> None:
    """Wait for every request in the list."""
    if requests:
        poll(lambda: True if MPI.Request.Testall(requests) else None, timeout, what, max_sleep)


def wait_any(requests: list[MPI.Request], timeout: float | None = PEER_TIMEOUT, what: str = "any request",
             max_sleep: float = MAX_SLEEP) -> tuple[int, MPI.Status]:
    """Wait until one request completes; returns (its index, its status)."""
    status = MPI.Status()

    def test():
        index, flag = MPI.Request.Testany(requests, status)
        return (index, status) if flag and index != MPI.UNDEFINED else None

    return poll(test, timeout, what, max_sleep)


def probe(comm: MPI.Comm, source: int = MPI.ANY_SOURCE, tag: int = MPI.ANY_TAG,
          timeout: float | None = PEER_TIMEOUT, max_sleep: float = MAX_SLEEP, what: str = "") -> MPI.Status:
    """Wait until a matching message can be received; returns its status (source, tag, count)."""
    status = MPI.Status()
    src = "any rank" if source == MPI.ANY_SOURCE else f"rank {source}"
    return poll(lambda: status if comm.Iprobe(source, tag, status) else None, timeout,
                what or f"a message from {src} (tag {'any' if tag == MPI.ANY_TAG else tag})", max_sleep)


def barrier(comm: MPI.Comm, timeout: float | None = PEER_TIMEOUT, max_sleep: float = MAX_SLEEP, what: str = "a barrier"
            ) -> None:
    """`comm.Barrier()` without busy-spinning."""
    wait(comm.Ibarrier(), timeout, what, max_sleep)
