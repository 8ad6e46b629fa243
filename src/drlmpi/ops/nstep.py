"""n-step returns."""

import numpy as np


def discounted_sum(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """rewards [T, ...] -> sum_k gamma^k rewards[k], shape [...]."""
    t = rewards.shape[0]
    powers = gamma ** np.arange(t, dtype=np.float64)
    return np.tensordot(powers, rewards, axes=(0, 0))
