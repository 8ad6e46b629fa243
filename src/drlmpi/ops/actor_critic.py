"""Actor-critic losses (A2C, A3C, IMPALA): policy gradient, baseline, entropy, on time-major [T, B] tensors.

    loss = pg_loss + baseline_cost * baseline_loss - entropy_cost * entropy
    pg_loss        -mean(log pi(a_t|x_t) * advantage_t)       (advantages carry no gradient)
    baseline_loss  0.5 * mean((target_t - V(x_t))^2)           (targets: n-step returns or V-trace vs)
    entropy        mean(H(pi(.|x_t)))
Means are over all T * B steps, so the scale does not depend on the unroll length or the batch.
"""

from typing import NamedTuple

import torch


class Losses(NamedTuple):
    total: torch.Tensor  # scalar, to backpropagate
    pg: torch.Tensor
    baseline: torch.Tensor
    entropy: torch.Tensor


def actor_critic_loss(logits: torch.Tensor, values: torch.Tensor, actions: torch.Tensor, targets: torch.Tensor,
                      advantages: torch.Tensor, baseline_cost: float = 0.5, entropy_cost: float = 0.01) -> Losses:
    """logits [T, B, A]; values, targets, advantages [T, B]; actions int64 [T, B] -> Losses."""
    assert logits.shape[:2] == values.shape == actions.shape == targets.shape == advantages.shape, \
        "logits [T, B, A]; values, actions, targets, advantages [T, B]"
    log_pi = torch.log_softmax(logits, dim=-1)
    taken = log_pi.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    pg = -(taken * advantages.detach()).mean()
    baseline = 0.5 * (targets.detach() - values).pow(2).mean()
    entropy = -(log_pi.exp() * log_pi).sum(-1).mean()
    return Losses(pg + baseline_cost * baseline - entropy_cost * entropy, pg, baseline, entropy)


def sample_actions(logits: torch.Tensor) -> torch.Tensor:
    """Categorical samples from logits [..., A] -> int64 [...] (torch's generator: seeded per rank)."""
    flat = logits.reshape(-1, logits.shape[-1])
    return torch.multinomial(torch.softmax(flat, dim=-1), 1).view(logits.shape[:-1])
