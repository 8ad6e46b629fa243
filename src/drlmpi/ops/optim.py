"""Optimizer steps on flat numpy vectors, in place (parameter-server shards apply them to their slice).

The step functions are pure math on the arrays they are given; `make` binds one to its state
(zeros of the right shape) and step count, for a caller that applies a stream of gradients.
"""

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


def adam_(w: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, lr: float, t: int, beta1: float = 0.9,
          beta2: float = 0.999, eps: float = 1e-8) -> None:
    """Adam step t (1, 2, ...): m, v <- moving averages of g and g^2;  w <- w - lr m_hat / (sqrt(v_hat) + eps).

    m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t), as in torch.optim.Adam.  All [n], in place.
    """
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    denom = np.sqrt(v / (1 - beta2**t))
    denom += eps
    w -= (lr / (1 - beta1**t)) * m / denom


OPTIMIZERS = {"rmsprop": rmsprop_, "adagrad": adagrad_, "adam": adam_}


class FlatOptimizer:
    """A stateful step `opt(w, g, lr)` for a stream of gradients on a vector [n]: its state arrays (zeros at
    first) and step count t are what a checkpoint saves (`state`, `load`)."""

    def __init__(self, name: str, n: int, dtype=np.float32, **hyper):
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
        self.name, self.hyper, self.t = name, hyper, 0
        keys = ("m", "v") if name == "adam" else ("acc",)
        self.arrays = {k: np.zeros(n, dtype) for k in keys}

    def __call__(self, w: np.ndarray, g: np.ndarray, lr: float) -> None:
        self.t += 1
        if self.name == "adam":
            adam_(w, g, self.arrays["m"], self.arrays["v"], lr, self.t, **self.hyper)
        else:
            OPTIMIZERS[self.name](w, g, self.arrays["acc"], lr, **self.hyper)

    def state(self) -> dict[str, np.ndarray]:
        return {**{k: v.copy() for k, v in self.arrays.items()}, "t": np.int64(self.t)}

    def load(self, state: dict[str, np.ndarray]) -> None:
        for k, v in self.arrays.items():
            v[:] = state[k]
        self.t = int(state["t"])


def make(name: str, n: int, dtype=np.float32, **hyper) -> FlatOptimizer:
    """A stateful step `apply(w, g, lr)` for a stream of gradients on a vector [n] (state zeros, t from 1)."""
    return FlatOptimizer(name, n, dtype, **hyper)
