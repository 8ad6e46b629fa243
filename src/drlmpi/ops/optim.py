"""Optimizer steps on flat numpy vectors, in place (parameter-server shards apply them to their slice)."""

import numpy as np


def rmsprop_(w: np.ndarray, g: np.ndarray, sq: np.ndarray, lr: float, alpha: float = 0.99, eps: float = 1e-5) -> None:
    """sq <- alpha sq + (1 - alpha) g^2;  w <- w - lr g / (sqrt(sq) + eps).  All [n], updated in place."""
    sq *= alpha
    sq += (1 - alpha) * g * g
    w -= lr * g / (np.sqrt(sq) + eps)


def adagrad_(w: np.ndarray, g: np.ndarray, acc: np.ndarray, lr: float, eps: float = 1e-10) -> None:
    """acc <- acc + g^2;  w <- w - lr g / (sqrt(acc) + eps).  All [n], updated in place."""
    acc += g * g
    w -= lr * g / (np.sqrt(acc) + eps)


OPTIMIZERS = {"rmsprop": rmsprop_, "adagrad": adagrad_}
