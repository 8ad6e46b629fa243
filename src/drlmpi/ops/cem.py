"""The cross-entropy method over a box of actions (QT-Opt's policy, Kalashnikov et al., 2018, section 4.2).

For each state: start from a Gaussian centred on the box with std half its width; each iteration draws
`samples` actions from it, clipped to [low, high], scores them with Q(s, a), and refits the Gaussian's mean
and std to the `elites` best. Defaults 2 x 64 x 6 as in the paper. The action returned is the best-scoring
sample of any iteration, so it is always inside the box and never worse than what was tried.

Batched over states: one Q forward of [B * samples] (state, action) pairs per iteration. The Gaussian
noise can be given (`noise` [iterations, B, samples, A]), so a batch's result equals each state's alone.
"""

from collections.abc import Callable

import torch


def cem(q: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], obs: torch.Tensor, low: torch.Tensor,
        high: torch.Tensor, iterations: int = 2, samples: int = 64, elites: int = 6,
        noise: torch.Tensor | None = None, generator: torch.Generator | None = None,
        min_std: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """argmax_a q(obs, a) over [low, high] by CEM: (actions [B, A], their scores [B]).

    q: (obs [M, ...], actions [M, A]) -> [M]; obs [B, ...]; low, high [A]; noise: standard normal
    [iterations, B, samples, A] (drawn from `generator` if None). std is floored at min_std of the box width.
    """
    if not 0 < elites <= samples or iterations < 1:
        raise ValueError(f"cem: need 0 < elites ({elites}) <= samples ({samples}) and iterations ({iterations}) >= 1")
    b, a_dim = obs.shape[0], low.shape[0]
    low, high = low.to(obs.device, torch.float32), high.to(obs.device, torch.float32)
    if noise is None:
        noise = torch.randn(iterations, b, samples, a_dim, generator=generator, device=obs.device)
    mean = ((low + high) / 2).expand(b, a_dim)
    std = ((high - low) / 2).expand(b, a_dim)
    floor = min_std * (high - low)
    rep = obs.repeat_interleave(samples, dim=0)  # [B * samples, ...]: state i's copies are rows i*N .. i*N+N-1
    best_a = mean.clone()
    best_q = torch.full((b,), -torch.inf, device=obs.device)
    rows = torch.arange(b, device=obs.device)
    for it in range(iterations):
        acts = torch.maximum(torch.minimum(mean[:, None] + std[:, None] * noise[it], high), low)  # [B, N, A]
        scores = q(rep, acts.reshape(b * samples, a_dim)).reshape(b, samples)
        top = scores.topk(elites, dim=1).indices  # [B, elites]
        elite = acts[rows[:, None], top]  # [B, elites, A]
        mean, std = elite.mean(dim=1), torch.maximum(elite.std(dim=1, unbiased=False), floor)
        better = scores[rows, top[:, 0]] > best_q
        best_a = torch.where(better[:, None], acts[rows, top[:, 0]], best_a)
        best_q = torch.where(better, scores[rows, top[:, 0]], best_q)
    return best_a, best_q
