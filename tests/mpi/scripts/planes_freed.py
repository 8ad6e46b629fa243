"""Every algorithm's planes free the MPI windows they allocate: setup (collective) then close (collective), and no
live window is left. argv: the algorithms (their default layout must fit the world). Counts the windows the
garbage collector sees (mpi4py's Win objects are tracked) that are not MPI.WIN_NULL, as Free leaves them."""

import gc
import sys

from _report import report
from mpi4py import MPI

from drlmpi import algos, config, runtime

SETS = {"qtopt": ["updates=10"]}
world = MPI.COMM_WORLD


def live_windows() -> int:
    return sum(type(o) is MPI.Win and o != MPI.WIN_NULL for o in gc.get_objects())


failures = []
for algo in sys.argv[1:]:
    module = algos.get(algo)
    env = "Pendulum-v1" if algo == "qtopt" else "CartPole-v1"
    cfg = config.build(module.Config, None, SETS.get(algo, []), env=env, run_dir="unused")
    rt = runtime.start(module.LAYOUT, algo, cfg.seed, world)
    before = live_windows()
    planes = module.setup(rt, cfg)
    made = live_windows() - before
    planes.close()
    left = live_windows() - before  # planes still referenced: a window not freed is still alive
    if made < 1 or left:
        failures.append(f"rank {world.rank} {algo} ({rt.role}): setup made {made} windows, {left} left after close")
    del planes
    runtime.barrier(world)
report(failures)
