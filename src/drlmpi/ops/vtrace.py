"""V-trace off-policy corrected returns (Espeholt et al., 2018, IMPALA, section 4).

With rho_t = pi(a_t|x_t) / mu(a_t|x_t), truncated weights rho'_t = min(rho_bar, rho_t) and c_t = min(c_bar, rho_t)
(c_bar = 1 as in the paper) and delta_t = rho'_t (r_t + gamma_t V(x_{t+1}) - V(x_t)):

    v_s = V(x_s) + sum_{t >= s} (prod_{i=s}^{t-1} gamma_i c_i) delta_t        (computed backwards:
    v_s - V(x_s) = delta_s + gamma_s c_s (v_{s+1} - V(x_{s+1})))
    pg advantage_s = min(rho_bar_pg, rho_s) (r_s + gamma_s v_{s+1} - V(x_s)),  v_T = bootstrap value V(x_T).

Every tensor is time-major: [T, B]; bootstrap_value [B]. The results carry no gradient (they are targets).
`gamma_t` is the discount after step t: gamma * (1 - terminal_t), so an episode that ends inside the unroll
cuts both sums there. log_rhos = 0 (on-policy) gives the bootstrapped n-step returns.
"""

from typing import NamedTuple

import torch


class VTraceReturns(NamedTuple):
    vs: torch.Tensor  # [T, B] V-trace targets for V(x_s)
    pg_advantages: torch.Tensor  # [T, B] advantages for the policy gradient


@torch.no_grad()
def from_importance_weights(log_rhos: torch.Tensor, discounts: torch.Tensor, rewards: torch.Tensor,
                            values: torch.Tensor, bootstrap_value: torch.Tensor,
                            clip_rho_threshold: float | None = 1.0,
                            clip_pg_rho_threshold: float | None = 1.0) -> VTraceReturns:
    """V-trace from log importance weights log(pi/mu) [T, B]; thresholds None mean no clipping (rho_bar = inf)."""
    T, B = log_rhos.shape
    assert discounts.shape == rewards.shape == values.shape == (T, B), "log_rhos, discounts, rewards, values: [T, B]"
    assert bootstrap_value.shape == (B,), "bootstrap_value: [B]"
    rhos = torch.exp(log_rhos)
    clipped = rhos if clip_rho_threshold is None else torch.clamp(rhos, max=clip_rho_threshold)
    cs = torch.clamp(rhos, max=1.0)
    next_values = torch.cat([values[1:], bootstrap_value[None]], dim=0)
    deltas = clipped * (rewards + discounts * next_values - values)
    acc = torch.zeros_like(bootstrap_value)
    diffs = torch.empty_like(values)  # v_s - V(x_s)
    for t in range(T - 1, -1, -1):
        acc = deltas[t] + discounts[t] * cs[t] * acc
        diffs[t] = acc
    vs = diffs + values
    next_vs = torch.cat([vs[1:], bootstrap_value[None]], dim=0)
    pg_rhos = rhos if clip_pg_rho_threshold is None else torch.clamp(rhos, max=clip_pg_rho_threshold)
    return VTraceReturns(vs, pg_rhos * (rewards + discounts * next_vs - values))
