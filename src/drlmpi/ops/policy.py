"""Policy distributions on a network's policy head, as pure functions: categorical (the head gives logits
[..., A]) or diagonal Gaussian (the head gives means [..., A], with a log standard deviation log_std [A] that does
not depend on the state). `log_std` None means categorical everywhere.

A Gaussian policy's actions are the unbounded samples: they are what its log-probabilities and entropy are of, and
what the trajectory carries; the env receives them clipped to its action box (envs.env_actions), a part of the
env's dynamics, as in PPO's reference implementations.
"""

import math

import torch

HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def log_prob(head: torch.Tensor, actions: torch.Tensor, log_std: torch.Tensor | None = None) -> torch.Tensor:
    """log pi(a | x): head [..., A]; actions int64 [...] (categorical) or float [..., A] (Gaussian) -> [...]."""
    if log_std is None:
        assert head.shape[:-1] == actions.shape, "logits [..., A] and actions [...]"
        return torch.log_softmax(head, dim=-1).gather(-1, actions.unsqueeze(-1)).squeeze(-1)
    assert head.shape == actions.shape, "means [..., A] and actions [..., A]"
    z = (actions - head) * torch.exp(-log_std)
    return (-0.5 * z.pow(2) - log_std - HALF_LOG_2PI).sum(-1)


def entropy(head: torch.Tensor, log_std: torch.Tensor | None = None) -> torch.Tensor:
    """H(pi(. | x)): head [..., A] -> [...]."""
    if log_std is None:
        log_pi = torch.log_softmax(head, dim=-1)
        return -(log_pi.exp() * log_pi).sum(-1)
    return (0.5 + HALF_LOG_2PI + log_std).sum(-1).expand(head.shape[:-1])


def sample(head: torch.Tensor, log_std: torch.Tensor | None = None) -> torch.Tensor:
    """A sample of pi(. | x) (torch's generator: seeded per rank): int64 [...] or float [..., A]."""
    if log_std is None:
        flat = head.reshape(-1, head.shape[-1])
        return torch.multinomial(torch.softmax(flat, dim=-1), 1).view(head.shape[:-1])
    return head + torch.exp(log_std) * torch.randn_like(head)


def mode(head: torch.Tensor, log_std: torch.Tensor | None = None) -> torch.Tensor:
    """The greedy action: the most probable (categorical) or the mean (Gaussian)."""
    return head.argmax(-1) if log_std is None else head
