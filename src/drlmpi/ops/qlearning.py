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


def actor_priority(tr: dict, q_fn, eps: float = 1e-6) -> np.ndarray:
    """|R + discount * max_a Q(next_obs, a) - Q(obs, action)| + eps, float64 [B], from the actor's own Q-values.

    tr: n-step transitions from NStepBuilder with extras "q_taken" (Q of the action taken) and "v"
    (max_a Q), recorded when acting: next_v is the bootstrap, except where next_obs is an episode's
    final obs (`final`): terminated ones do not bootstrap, truncated ones are evaluated with
    q_fn(obs [k, ...]) -> [k, A]. No forward pass in the common case (Ape-X).
    """
    boot = tr["next_v"].astype(np.float64)
    redo = tr["final"] & (tr["discount"] > 0)
    if redo.any():
        boot[redo] = q_fn(tr["next_obs"][redo]).max(axis=1)
    return np.abs(tr["ret"] + tr["discount"] * boot - tr["q_taken"]) + eps
