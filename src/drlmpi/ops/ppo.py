"""PPO's math (Schulman et al., 2017), on time-major [T, B] tensors: GAE(lambda) advantages and the clipped
surrogate loss.

    GAE:   delta_t = r_t + gamma_t V(x_{t+1}) - V(x_t),  A_t = delta_t + gamma_t lambda A_{t+1},  A_T = 0
           (gamma_t: the discount after step t, 0 where the episode terminated; V(x_T): the bootstrap value),
           returns R_t = A_t + V(x_t), the value targets.
    loss = pg_loss + value_cost * value_loss - entropy_cost * entropy, with ratio = exp(log pi - log mu):
           pg_loss     -mean(min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A))
           value_loss  0.5 * mean((V - R)^2), or with value clipping 0.5 * mean(max((V - R)^2,
                       (V_old + clip(V - V_old, -eps, eps) - R)^2))
           entropy     mean(H(pi))
"""

from typing import NamedTuple

import torch


class PPOLosses(NamedTuple):
    total: torch.Tensor  # scalar, to backpropagate
    pg: torch.Tensor
    baseline: torch.Tensor  # the value loss (the name the actor-critic metrics use)
    entropy: torch.Tensor
    approx_kl: torch.Tensor  # mean((ratio - 1) - log ratio), no gradient: how far the update moved the policy
    clip_frac: torch.Tensor  # the fraction of samples whose ratio left [1 - eps, 1 + eps]


@torch.no_grad()
def gae(rewards: torch.Tensor, discounts: torch.Tensor, values: torch.Tensor, bootstrap: torch.Tensor,
        lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards, discounts, values [T, B]; bootstrap V(x_T) [B] -> (advantages [T, B], returns [T, B])."""
    T = rewards.shape[0]
    assert discounts.shape == values.shape == rewards.shape and bootstrap.shape == rewards.shape[1:], \
        "rewards, discounts, values [T, B]; bootstrap [B]"
    next_values = torch.cat([values[1:], bootstrap[None]], dim=0)
    deltas = rewards + discounts * next_values - values
    adv, acc = torch.empty_like(values), torch.zeros_like(bootstrap)
    for t in range(T - 1, -1, -1):
        acc = deltas[t] + discounts[t] * lam * acc
        adv[t] = acc
    return adv, adv + values


def normalized(adv: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Advantages scaled to mean 0, std 1 over the minibatch (one sample: centred only)."""
    if adv.numel() < 2:
        return adv - adv.mean()
    return (adv - adv.mean()) / (adv.std() + eps)


def clipped_loss(log_pi: torch.Tensor, old_log_pi: torch.Tensor, advantages: torch.Tensor, values: torch.Tensor,
                 old_values: torch.Tensor, returns: torch.Tensor, entropy: torch.Tensor, clip: float,
                 value_clip: float = 0.0, value_cost: float = 0.5, entropy_cost: float = 0.0) -> PPOLosses:
    """Every tensor [N] (one minibatch, flattened): log pi(a|x) of the learner (with gradient) and of the policy
    that acted, advantages, V(x) (with gradient) and at acting, the returns, the entropies. value_clip 0: no value
    clipping."""
    assert log_pi.shape == old_log_pi.shape == advantages.shape == values.shape == returns.shape == entropy.shape
    log_ratio = log_pi - old_log_pi.detach()
    ratio = log_ratio.exp()
    adv = advantages.detach()
    pg = -torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv).mean()
    err = (values - returns.detach()).pow(2)
    if value_clip > 0:
        v_clipped = old_values.detach() + (values - old_values.detach()).clamp(-value_clip, value_clip)
        err = torch.max(err, (v_clipped - returns.detach()).pow(2))
    baseline = 0.5 * err.mean()
    ent = entropy.mean()
    with torch.no_grad():
        approx_kl = ((ratio - 1) - log_ratio).mean()
        clip_frac = ((ratio - 1).abs() > clip).float().mean()
    return PPOLosses(pg + value_cost * baseline - entropy_cost * ent, pg, baseline, ent, approx_kl, clip_frac)
