"""Scripted policies for `drlmpi record --policy scripted:<name>` (obs [E, ...] numpy -> actions [E])."""

import numpy as np


def mountain_car(obs: np.ndarray) -> np.ndarray:
    """MountainCar-v0: push in the direction of the velocity (0: left, 2: right), a ~-105 to -120 return."""
    return np.where(obs[:, 1] >= 0, 2, 0).astype(np.int64)


def bad_shape(obs: np.ndarray) -> np.ndarray:
    return np.zeros(len(obs) + 1, np.int64)


def pendulum(obs: np.ndarray) -> np.ndarray:
    """Pendulum-v1: torque against the angular velocity, clipped to the bounds (float32 [E, 1])."""
    return np.clip(-0.5 * obs[:, 2:3], -2.0, 2.0).astype(np.float32)


def pendulum_too_strong(obs: np.ndarray) -> np.ndarray:
    return np.full((len(obs), 1), 3.0, np.float32)


def minatar_random(obs: np.ndarray) -> np.ndarray:
    """Any MinAtar game (-v1, at least 3 actions): uniformly random actions from a fixed generator."""
    return _RNG.integers(0, 3, len(obs))


_RNG = np.random.default_rng(0)
