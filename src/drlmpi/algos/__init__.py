"""Algorithms, one module each, exposing `Config`, `ROLES`, `run(rt, cfg) -> summary | None` and
`load_policy(cfg, weights, env)`; optionally `check_layout(layout, cfg)`, which raises UserError for a rank layout
the algorithm cannot run (before any role starts); `SPLITS_WORLD = True` where the algorithm splits the world into
groups itself (PBT) and prints their layout.

`--algo` takes a built-in name, or the dotted path of any importable module with the same
attributes (your own algorithm on drlmpi's runtime), e.g. `--algo mylab.my_algo`.
"""

import importlib

from drlmpi.errors import UserError

ALGOS = {"dqn": "drlmpi.algos.dqn", "apex": "drlmpi.algos.apex", "gorila": "drlmpi.algos.gorila",
         "a2c": "drlmpi.algos.a2c", "a3c": "drlmpi.algos.a3c",
         "impala": "drlmpi.algos.impala", "ga3c": "drlmpi.algos.ga3c", "seed": "drlmpi.algos.seed",
         "r2d2": "drlmpi.algos.r2d2", "r2d3": "drlmpi.algos.r2d3", "qtopt": "drlmpi.algos.qtopt",
         "es": "drlmpi.algos.es", "pbt": "drlmpi.algos.pbt"}
REQUIRED = ("Config", "ROLES", "run")


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
