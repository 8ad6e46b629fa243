"""V-trace against a slow ground truth written as the IMPALA paper's sums, and on-policy against n-step returns."""

import numpy as np
import pytest
import torch

from drlmpi.ops import vtrace


def slow_vtrace(log_rhos, discounts, rewards, values, bootstrap, rho_bar, pg_rho_bar):
    """v_s = V(x_s) + sum_{t=s}^{T-1} (prod_{i=s}^{t-1} gamma_i c_i) rho'_t (r_t + gamma_t V(x_{t+1}) - V(x_t)),
    element by element in float64; pg_s = min(pg_rho_bar, rho_s) (r_s + gamma_s v_{s+1} - V(x_s))."""
    T, B = log_rhos.shape
    rho = np.exp(log_rhos)
    V = np.concatenate([values, bootstrap[None]], 0)
    vs, pg = np.zeros((T, B)), np.zeros((T, B))
    for b in range(B):
        for s in range(T):
            total = 0.0
            for t in range(s, T):
                weight = np.prod([discounts[i, b] * min(1.0, rho[i, b]) for i in range(s, t)])
                rho_t = rho[t, b] if rho_bar is None else min(rho_bar, rho[t, b])
                total += weight * rho_t * (rewards[t, b] + discounts[t, b] * V[t + 1, b] - V[t, b])
            vs[s, b] = V[s, b] + total
    for b in range(B):
        for s in range(T):
            nxt = vs[s + 1, b] if s + 1 < T else bootstrap[b]
            r = rho[s, b] if pg_rho_bar is None else min(pg_rho_bar, rho[s, b])
            pg[s, b] = r * (rewards[s, b] + discounts[s, b] * nxt - values[s, b])
    return vs, pg


def inputs(T, B, seed, terminal_p=0.1):
    rng = np.random.default_rng(seed)
    log_rhos = rng.normal(0, 0.8, (T, B))  # rho on both sides of 1
    discounts = 0.97 * (rng.random((T, B)) > terminal_p)
    return (log_rhos, discounts, rng.normal(size=(T, B)), rng.normal(size=(T, B)), rng.normal(size=B))


@pytest.mark.parametrize("rho_bar,pg_rho_bar", [(1.0, 1.0), (None, None), (2.0, 0.5), (0.7, None)])
@pytest.mark.parametrize("seed", [0, 1])
def test_vtrace_matches_the_papers_sums(rho_bar, pg_rho_bar, seed):
    x = inputs(7, 5, seed)
    got = vtrace.from_importance_weights(*(torch.as_tensor(a) for a in x), clip_rho_threshold=rho_bar,
                                         clip_pg_rho_threshold=pg_rho_bar)
    want_vs, want_pg = slow_vtrace(*x, rho_bar, pg_rho_bar)
    np.testing.assert_allclose(got.vs.numpy(), want_vs, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.pg_advantages.numpy(), want_pg, rtol=1e-10, atol=1e-10)
    assert isinstance(got, vtrace.VTraceReturns) and got.vs.shape == (7, 5)


def test_on_policy_vtrace_is_the_bootstrapped_n_step_return():
    log_rhos, discounts, rewards, values, bootstrap = inputs(9, 4, 3, terminal_p=0.2)
    got = vtrace.from_importance_weights(*(torch.as_tensor(a) for a in (np.zeros_like(log_rhos), discounts, rewards,
                                                                         values, bootstrap)))
    ret = np.zeros_like(rewards)
    acc = bootstrap.copy()
    for t in range(8, -1, -1):  # G_t = r_t + gamma_t G_{t+1}, G_T = V(x_T)
        acc = rewards[t] + discounts[t] * acc
        ret[t] = acc
    np.testing.assert_allclose(got.vs.numpy(), ret, rtol=1e-10, atol=1e-10)
    nxt = np.concatenate([ret[1:], bootstrap[None]], 0)  # on-policy advantages: r + gamma G_{t+1} - V = G_t - V
    np.testing.assert_allclose(got.pg_advantages.numpy(), rewards + discounts * nxt - values, atol=1e-10)


def test_float32_and_no_gradient():
    x = [torch.as_tensor(a, dtype=torch.float32) for a in inputs(5, 3, 4)]
    x[3].requires_grad_(True)
    got = vtrace.from_importance_weights(*x)
    assert got.vs.dtype == torch.float32 and not got.vs.requires_grad and not got.pg_advantages.requires_grad


def test_the_behaviour_log_probabilities_are_those_of_the_actions_taken():
    from drlmpi.actor_critic import behaviour_log_prob

    rng = np.random.default_rng(5)
    mu = torch.as_tensor(rng.normal(size=(7, 3, 4)))
    actions = torch.as_tensor(rng.integers(0, 4, (7, 3)))
    p_mu = torch.softmax(mu, -1).gather(-1, actions[..., None])[..., 0]
    got = behaviour_log_prob({"logits": mu, "action": actions}, 6)  # (row 6: the bootstrap row, not acted on)
    torch.testing.assert_close(got, torch.log(p_mu[:6]))
    log_prob = torch.as_tensor(rng.normal(size=(7, 3)))  # a Gaussian policy's, as acted
    assert torch.equal(behaviour_log_prob({"log_prob": log_prob, "action": torch.zeros(7, 3, 2)}, 6), log_prob[:6])


def test_shapes_are_asserted():
    log_rhos, discounts, rewards, values, bootstrap = (torch.as_tensor(a) for a in inputs(4, 2, 7))
    with pytest.raises(AssertionError, match=r"\[T, B\]"):
        vtrace.from_importance_weights(log_rhos, discounts[:3], rewards, values, bootstrap)
    with pytest.raises(AssertionError, match="bootstrap_value"):
        vtrace.from_importance_weights(log_rhos, discounts, rewards, values, bootstrap[None])
