"""A minimal multi-rank algorithm module for CLI tests (`--algo toy_algo_pkg.toy`): one learner, 2+ actors.

Every rank meets at a barrier; with fail_rank >= 0 that rank raises first, where fail_at says: in its role (run), in
rank 0's checks before the job starts (checks: a bug, not a user error), or a UserError in check_layout on that rank
alone (layout) or on every rank (layout-all).
"""

import time
from dataclasses import dataclass

from mpi4py import MPI

from drlmpi import runtime
from drlmpi.config import Common, opt
from drlmpi.errors import UserError

LAYOUT = runtime.RoleSpec(fixed=(("learner", 1),), min_actors=2, serial_ok=False)


@dataclass
class Config(Common):
    fail_rank: int = opt(-1, "rank that raises, or -1")
    fail_at: str = opt("run", "where it raises: run, checks, layout, layout-all")


def validate(cfg: Config) -> None:
    if cfg.fail_rank >= 0 and cfg.fail_at == "checks":
        raise RuntimeError("toy failure in rank 0's checks")


def check_layout(layout, cfg: Config) -> None:
    if cfg.fail_rank >= 0 and (cfg.fail_at == "layout-all" or
                               (cfg.fail_at == "layout" and MPI.COMM_WORLD.rank == cfg.fail_rank)):
        raise UserError("toy refuses this layout")


def meet(rt: runtime.Runtime, cfg: Config, planes, resumed):
    if rt.rank == cfg.fail_rank and cfg.fail_at == "run":
        time.sleep(0.3)
        raise RuntimeError(f"toy failure on rank {rt.rank}")
    runtime.barrier(rt.world)
    return None


ROLES = {"learner": meet, "actor": meet}
