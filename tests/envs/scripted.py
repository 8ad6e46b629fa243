"""Scripted policies for `drlmpi record --policy scripted:<name>` (obs [E, ...] numpy -> actions [E])."""

import numpy as np


def mountain_car(obs: np.ndarray) -> np.ndarray:
    """MountainCar-v0: push in the direction of the velocity (0: left, 2: right), a ~-105 to -120 return."""
    return np.where(obs[:, 1] >= 0, 2, 0).astype(np.int64)


def bad_shape(obs: np.ndarray) -> np.ndarray:
    return np.zeros(len(obs) + 1, np.int64)
