"""Algorithms, one module each: `Config`, `ROLES`, `run(rt, cfg)`, `load_policy(cfg, weights, env)`."""

import importlib

ALGOS = {"dqn": "drlmpi.algos.dqn"}


def get(name: str):
    from drlmpi.errors import UserError

    if name not in ALGOS:
        raise UserError(f"unknown algorithm '{name}' (available: {', '.join(sorted(ALGOS))})")
    return importlib.import_module(ALGOS[name])
