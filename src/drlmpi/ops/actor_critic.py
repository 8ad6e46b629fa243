"""Actor-critic losses (A2C, A3C, IMPALA): policy gradient, baseline, entropy, on time-major [T, B] tensors.

    loss = pg_loss + baseline_cost * baseline_loss - entropy_cost * entropy
    pg_loss        -mean(log pi(a_t|x_t) * advantage_t)       (advantages carry no gradient)
    baseline_loss  0.5 * mean((target_t - V(x_t))^2)           (targets: n-step returns or V-trace vs)
    entropy        mean(H(pi(.|x_t)))
Means are over all T * B steps, so the scale does not depend on the unroll length or the batch. The log-probabilities
and entropies come from ops.policy (categorical or Gaussian).
"""

from typing import NamedTuple

import torch


class Losses(NamedTuple):
    total: torch.Tensor  # scalar, to backpropagate
    pg: torch.Tensor
    baseline: torch.Tensor
    entropy: torch.Tensor


def actor_critic_loss(log_pi: torch.Tensor, entropy: torch.Tensor, values: torch.Tensor, targets: torch.Tensor,
                      advantages: torch.Tensor, baseline_cost: float = 0.5, entropy_cost: float = 0.01) -> Losses:
    """log pi(a_t|x_t) of the actions taken, H(pi(.|x_t)), values, targets, advantages: all [T, B] -> Losses."""
    assert log_pi.shape == entropy.shape == values.shape == targets.shape == advantages.shape, \
        "log_pi, entropy, values, targets, advantages: [T, B]"
    pg = -(log_pi * advantages.detach()).mean()
    baseline = 0.5 * (targets.detach() - values).pow(2).mean()
    ent = entropy.mean()
    return Losses(pg + baseline_cost * baseline - entropy_cost * ent, pg, baseline, ent)
