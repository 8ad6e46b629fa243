"""Algorithms, one module each, exposing `Config`, `LAYOUT` (the runtime.RoleSpec of its rank layout), `ROLES`
({role: function(rt, cfg, planes, resumed) -> summary | None}, one function per role of its layout) and
`load_policy(cfg, weights, env)`; optionally `setup(rt, cfg) -> planes` (collective: the planes its roles share, with
a `close()`), `validate(cfg) -> cfg | None`, run once on rank 0 before the job starts for what needs files, envs or
networks (a config's own checks do no I/O; it may return the config to run), `check_layout(layout, cfg)`, which
raises UserError for a rank layout the algorithm cannot run (before any role starts), and `SPLITS_WORLD = True`
where the algorithm splits the world into groups itself (PBT) and prints their layout. `run` (below) is written
once for every algorithm.

`--algo` takes a built-in name, or the dotted path of any importable module with the same
attributes (your own algorithm on drlmpi's runtime), e.g. `--algo mylab.my_algo`.
"""

import importlib

from drlmpi.errors import UserError

ALGOS = {"dqn": "drlmpi.algos.dqn", "apex": "drlmpi.algos.apex", "gorila": "drlmpi.algos.gorila",
         "a2c": "drlmpi.algos.a2c", "a3c": "drlmpi.algos.a3c",
         "impala": "drlmpi.algos.impala", "ga3c": "drlmpi.algos.ga3c", "seed": "drlmpi.algos.seed",
         "r2d2": "drlmpi.algos.r2d2", "r2d3": "drlmpi.algos.r2d3", "qtopt": "drlmpi.algos.qtopt",
         "es": "drlmpi.algos.es", "pbt": "drlmpi.algos.pbt",
         "ppo": "drlmpi.algos.ppo", "appo": "drlmpi.algos.appo"}
REQUIRED = ("Config", "LAYOUT", "ROLES")


def get(name: str):
    if name in ALGOS:
        return importlib.import_module(ALGOS[name])
    if "." not in name:
        raise UserError(f"unknown algorithm '{name}' (available: {', '.join(sorted(ALGOS))}, or a module path)")
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        raise UserError(f"--algo {name}: cannot import module: {e}") from None
    missing = [a for a in REQUIRED if not hasattr(module, a)]
    if missing:
        raise UserError(f"--algo {name}: module lacks {', '.join(missing)}")
    return module


def check_roles(module, layout, algo: str) -> None:
    """UserError (one line) for a layout with a role the algorithm has no function for."""
    missing = sorted(set(layout.roles) - set(module.ROLES))
    if missing:
        raise UserError(f"{algo} has no {', '.join(missing)} role (its roles: {', '.join(sorted(module.ROLES))}); "
                        "see `drlmpi layout --algo ...`")


def run(module, rt, cfg, resumed=None):
    """One rank's job, for every algorithm: set up the planes its roles share (collective), seed this rank's
    generators (restored from the checkpoint when it holds this rank's), run this rank's role, close the planes.
    Returns the role's summary (a learner's) or None."""
    from drlmpi import envs, lifecycle, runtime

    envs.set_restart_limit(cfg.max_env_restarts)
    planes = module.setup(rt, cfg) if hasattr(module, "setup") else None
    if planes is not None:
        runtime.barrier(rt.node, runtime.context.startup_timeout(rt.size), what="this host's ranks to set up")
        runtime.unlink_mpi_segments()  # (every rank of the host attached what setup made)
    lifecycle.seed_rank(rt, resumed)
    summary = module.ROLES[rt.role](rt, cfg, planes, resumed)
    if hasattr(planes, "close"):
        planes.close()
    return summary
