"""Reduce the failures of every rank to rank 0: it prints them or `PASS <n> ranks`, and aborts on any."""

import sys

from mpi4py import MPI


def report(failures: list[str], world: MPI.Intracomm = MPI.COMM_WORLD) -> None:
    gathered = world.gather(failures, root=0)
    if world.rank == 0:
        flat = [f for fs in gathered for f in fs]
        print("\n".join(flat[:20]) if flat else f"PASS {world.size} ranks")
        sys.stdout.flush()
        if flat:
            world.Abort(1)
