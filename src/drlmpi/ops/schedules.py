"""Schedules for hyperparameters that change over training."""


def linear(start: float, end: float, frac: float) -> float:
    """start + (end - start) * frac, with frac clipped to [0, 1]."""
    return start + (end - start) * min(1.0, max(0.0, frac))
