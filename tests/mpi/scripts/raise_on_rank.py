"""Rank `argv[1]` raises after a moment while every other rank waits (politely, or in a blocking MPI call)."""

import sys
import time

from mpi4py import MPI

from drlmpi import runtime

bad_rank, mode = int(sys.argv[1]), sys.argv[2]
world = MPI.COMM_WORLD
rt = runtime.start(runtime.RoleSpec(fixed=(("learner", 1),)), "test", seed=0)
try:
    if rt.rank == bad_rank:
        time.sleep(0.5)
        raise ValueError(f"boom from rank {bad_rank}")
    if mode == "polite":
        runtime.barrier(world)
    else:
        world.Barrier()  # MPICH busy-polls here; the abort must still end it
except BaseException as e:  # noqa: BLE001
    runtime.report_and_abort(e)
