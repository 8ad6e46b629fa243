"""Q-learning targets and losses."""

import numpy as np
import torch
import torch.nn.functional as F


def double_q_target(q_next_online: torch.Tensor, q_next_target: torch.Tensor, returns: torch.Tensor,
                    discounts: torch.Tensor) -> torch.Tensor:
    """Double DQN n-step target: R + discount * Q_target(s', argmax_a Q_online(s', a)).

    q_next_online, q_next_target: [B, A]; returns, discounts: [B] (discount = gamma^n, 0 at terminal) -> [B].
    """
    assert q_next_online.shape == q_next_target.shape and q_next_online.dim() == 2
    best = q_next_online.argmax(dim=1, keepdim=True)
    return returns + discounts * q_next_target.gather(1, best).squeeze(1)


def weighted_huber(td: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Importance-weighted Huber loss (delta 1) of TD errors td [B] with weights [B] -> scalar."""
    assert td.shape == weights.shape
    return (weights * F.huber_loss(td, torch.zeros_like(td), reduction="none", delta=1.0)).mean()


def double_dqn_td(net, target, obs: torch.Tensor, action: torch.Tensor, ret: torch.Tensor,
                  next_obs: torch.Tensor, discount: torch.Tensor) -> torch.Tensor:
    """TD errors [B] of n-step double DQN: target(s', argmax_a net(s', a)) bootstraps; the target has no grad.

    obs, next_obs [B, ...]; action int64 [B]; ret, discount [B] (discount = gamma^n, 0 at terminal).
    """
    q = net(obs).gather(1, action[:, None]).squeeze(1)
    with torch.no_grad():
        y = double_q_target(net(next_obs), target(next_obs), ret, discount)
    return y - q


# Recurrent replay (R2D2, Kapturowski et al. 2019): value rescaling and n-step double-Q targets over sequences.

RESCALE_EPS = 1e-3


def rescale(x, eps: float = RESCALE_EPS):
    """h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x (tensor or array, elementwise)."""
    lib = torch if isinstance(x, torch.Tensor) else np
    return lib.sign(x) * (lib.sqrt(lib.abs(x) + 1) - 1) + eps * x


def unrescale(y, eps: float = RESCALE_EPS):
    """h^-1(y) = sign(y) (((sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps))^2 - 1), the exact inverse of `rescale`."""
    lib = torch if isinstance(y, torch.Tensor) else np
    return lib.sign(y) * (((lib.sqrt(1 + 4 * eps * (lib.abs(y) + 1 + eps)) - 1) / (2 * eps)) ** 2 - 1)


def sequence_targets(reward: torch.Tensor, discount: torch.Tensor, mask: torch.Tensor, boot: torch.Tensor, n: int,
                     eps: float = RESCALE_EPS) -> torch.Tensor:
    """Rescaled n-step targets over sequences, time-major:

      y_t = h( sum_{k<m} G_k r_{t+k} + G_m h^-1(boot_{t+m}) ),  G_k = prod_{j<k} discount_{t+j},

    with m the number of valid steps among t .. t+n-1 up to the first invalid one or the sequence's end.
    reward, discount, mask [T, B] (discount: gamma, 0 where the step terminated; mask: 1 on the valid steps, a
    prefix of each sequence); boot [T + 1, B]: the rescaled bootstrap value at each of the T + 1 observations ->
    y [T, B] (meaningless where mask is 0).
    """
    T = reward.shape[0]
    assert discount.shape == mask.shape == reward.shape and boot.shape == (T + 1, *reward.shape[1:]), \
        "reward, discount, mask [T, B]; boot [T + 1, B]"
    t = torch.arange(T, device=reward.device)[:, None]
    ret, g = torch.zeros_like(reward), torch.ones_like(reward)
    m = torch.zeros(reward.shape, dtype=torch.int64, device=reward.device)
    alive = mask > 0
    for k in range(n):
        idx = (t + k).clamp(max=T - 1).expand_as(reward)
        alive = alive & (t + k < T) & (mask.gather(0, idx) > 0)
        ret = ret + torch.where(alive, g * reward.gather(0, idx), 0.0)
        g = torch.where(alive, g * discount.gather(0, idx), g)
        m = m + alive.long()
    return rescale(ret + g * unrescale(boot.gather(0, t + m), eps), eps)


def sequence_priority(td: torch.Tensor, mask: torch.Tensor, eta: float = 0.9) -> torch.Tensor:
    """R2D2's priority eta max_t |td| + (1 - eta) mean_t |td| over the valid steps: td, mask [T, B] -> [B]."""
    a = td.abs() * mask
    return eta * a.max(0).values + (1 - eta) * a.sum(0) / mask.sum(0).clamp(min=1)
