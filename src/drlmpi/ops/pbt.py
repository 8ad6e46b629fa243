"""Population-based training's decisions, pure (Jaderberg et al. 2017): initial hyperparameters, exploit, explore.

A hyperparameter is a config.Hparam: a prior lo..hi on a scale. `unit`/`value` map a value to its place u in
[0, 1] along that scale and back; explore perturbs in value space and clips to the prior.
"""

import math

import numpy as np

from drlmpi.config import Hparam


def value(hp: Hparam, u: float) -> float:
    """The value at place u in [0, 1] of hp's prior (log: log-uniform; linear; log1m: 1 - v log-uniform)."""
    if hp.scale == "linear":
        return hp.lo + u * (hp.hi - hp.lo)
    if hp.scale == "log":
        return math.exp(math.log(hp.lo) + u * (math.log(hp.hi) - math.log(hp.lo)))
    if hp.scale == "log1m":
        return 1.0 - math.exp(math.log(1.0 - hp.lo) + u * (math.log(1.0 - hp.hi) - math.log(1.0 - hp.lo)))
    raise ValueError(f"unknown scale {hp.scale!r}")


def initial(space: dict[str, Hparam], population: int, rng: np.random.Generator, spread: bool = True
            ) -> list[dict[str, float]]:
    """Each member's starting values. spread: evenly over each prior's scale, both ends included (member i at
    u = i / (P - 1); every hyperparameter after the first in a random order, a Latin hypercube); else drawn."""
    out: list[dict[str, float]] = [{} for _ in range(population)]
    for k, (name, hp) in enumerate(space.items()):
        if spread:
            u = np.linspace(0.0, 1.0, population) if population > 1 else np.array([0.5])
            u = u if k == 0 else rng.permutation(u)
        else:
            u = rng.random(population)
        for m in range(population):
            out[m][name] = value(hp, float(u[m]))
    return out


def perturb(hp: Hparam, v: float, factor: float) -> float:
    """v moved by `factor` (1 - v for log1m), clipped to the prior."""
    moved = 1.0 - (1.0 - v) * factor if hp.scale == "log1m" else v * factor
    return min(max(moved, min(hp.lo, hp.hi)), max(hp.lo, hp.hi))


def explore(values: dict[str, float], space: dict[str, Hparam], rng: np.random.Generator,
            resample_p: float = 0.25, factors: tuple[float, ...] = (0.8, 1.2)) -> dict[str, float]:
    """New values: each one redrawn from its prior with probability resample_p, else perturbed by a factor
    chosen uniformly from `factors`."""
    out = {}
    for name, v in values.items():
        hp = space[name]
        if rng.random() < resample_p:
            out[name] = value(hp, float(rng.random()))
        else:
            out[name] = perturb(hp, v, float(factors[rng.integers(len(factors))]))
    return out


def score_key(score: float) -> float:
    """A member's score for ranking: NaN (no episode yet) below every other."""
    return -math.inf if math.isnan(score) else score


def best(scores: list[float]) -> int:
    """The index of the best score (the first of ties)."""
    return max(range(len(scores)), key=lambda j: score_key(scores[j]))


def exploit_pairs(scores: list[float], quantile: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """(bottom, top) pairs, truncation selection: each member of the bottom `quantile` (at least one of two or more,
    at most half) copies a member drawn uniformly from the top quantile, ties included (so a population that
    converged keeps exploring). NaN (no episode yet) ranks lowest, and a member with no score is never copied."""
    n = len(scores)
    if n < 2:
        return []
    k = min(n // 2, max(1, round(quantile * n)))
    key = [(score_key(s), m) for m, s in enumerate(scores)]
    order = [m for _, m in sorted(key)]  # worst first; ties by member index
    bottom, top = order[:k], order[-k:]
    pairs = []
    for b in bottom:
        t = top[int(rng.integers(k))]
        if key[t][0] > -math.inf:
            pairs.append((b, t))
    return pairs
