"""A minimal multi-rank algorithm module for CLI tests (`--algo toy_algo_pkg.toy`): one learner, 2+ actors.

Every rank meets at a barrier; with fail_rank >= 0 that rank raises first.
"""

import time
from dataclasses import dataclass

from drlmpi import runtime
from drlmpi.config import Common, opt

LAYOUT = runtime.RoleSpec(fixed=(("learner", 1),), min_actors=2, serial_ok=False)


@dataclass
class Config(Common):
    fail_rank: int = opt(-1, "rank that raises, or -1")


def meet(rt: runtime.Runtime, cfg: Config, planes, resumed):
    if rt.rank == cfg.fail_rank:
        time.sleep(0.3)
        raise RuntimeError(f"toy failure on rank {rt.rank}")
    runtime.barrier(rt.world)
    return None


ROLES = {"learner": meet, "actor": meet}
