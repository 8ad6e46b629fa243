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


def make(name: str, n: int, dtype=np.float32, **hyper):
    """A stateful step `apply(w, g, lr)` for a stream of gradients on a vector [n] (state zeros, t from 1)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {name!r}")
    if name == "adam":
        m, v, t = np.zeros(n, dtype), np.zeros(n, dtype), [0]

        def apply(w, g, lr):
            t[0] += 1
            adam_(w, g, m, v, lr, t[0], **hyper)

        return apply
    state = np.zeros(n, dtype)
    step = OPTIMIZERS[name]
    return lambda w, g, lr: step(w, g, state, lr, **hyper)
