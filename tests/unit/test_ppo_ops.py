"""PPO's math (ops.ppo, ops.policy) and running statistics (nets.RunningMoments) against direct computations."""

import math

import numpy as np
import pytest
import torch

from drlmpi.nets import ActorCritic, RunningMoments, moments
from drlmpi.ops import policy as pi
from drlmpi.ops.ppo import clipped_loss, gae, normalized


def test_gae_matches_the_sum_of_discounted_td_errors():
    g = torch.Generator().manual_seed(0)
    T, B, lam = 7, 3, 0.9
    rewards, values = torch.randn(T, B, generator=g), torch.randn(T, B, generator=g)
    discounts = torch.full((T, B), 0.99)
    discounts[3, 1] = 0.0  # an episode ends after step 3 of env 1
    boot = torch.randn(B, generator=g)
    adv, ret = gae(rewards, discounts, values, boot, lam)
    nxt = torch.cat([values[1:], boot[None]])
    delta = rewards + discounts * nxt - values
    for b in range(B):
        for t in range(T):
            want, w = 0.0, 1.0
            for k in range(t, T):
                want += w * float(delta[k, b])
                w *= float(discounts[k, b]) * lam
            assert float(adv[t, b]) == pytest.approx(want, abs=1e-5)
    assert torch.allclose(ret, adv + values)
    one, _ = gae(rewards, discounts, values, boot, 1.0)  # lambda 1: the discounted return minus V
    assert float(one[0, 0]) == pytest.approx(sum(float(rewards[k, 0]) * 0.99**k for k in range(T))
                                             + 0.99**T * float(boot[0]) - float(values[0, 0]), abs=1e-4)


def test_clipped_surrogate_stops_the_gradient_outside_the_trust_region():
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0])
    old = torch.zeros(4)
    log_pi = torch.tensor([0.5, 0.05, -0.5, 0.05], requires_grad=True)  # ratio e^0.5 > 1.2: clipped for A > 0
    z = torch.zeros(4)
    losses = clipped_loss(log_pi, old, adv, z, z, z, z, clip=0.2)
    losses.pg.backward()
    grad = log_pi.grad.numpy()
    assert grad[0] == 0 and grad[2] == 0, "ratios past 1 +- clip in the advantage's direction get no gradient"
    assert grad[1] < 0 and grad[3] > 0
    assert float(losses.clip_frac) == 0.5
    at_one = clipped_loss(torch.zeros(4), old, adv, z, z, z, z, clip=0.2)
    assert float(at_one.pg) == pytest.approx(-float(adv.mean())) and float(at_one.approx_kl) == 0


def test_value_clipping_takes_the_larger_error():
    v, old, ret = torch.tensor([1.0], requires_grad=True), torch.tensor([0.0]), torch.tensor([2.0])
    z = torch.zeros(1)
    plain = clipped_loss(z, z, z, v, old, ret, z, clip=0.2, value_clip=0.0)
    clipped = clipped_loss(z, z, z, v, old, ret, z, clip=0.2, value_clip=0.5)
    assert plain.baseline.item() == pytest.approx(0.5 * 1.0)
    assert clipped.baseline.item() == pytest.approx(0.5 * 1.5**2), "V_old + clip(V - V_old) = 0.5, error 1.5"


def test_advantage_normalisation():
    x = torch.tensor([1.0, 2.0, 3.0, 6.0])
    n = normalized(x)
    assert float(n.mean()) == pytest.approx(0, abs=1e-6) and float(n.std()) == pytest.approx(1, abs=1e-5)
    assert float(normalized(torch.tensor([5.0]))) == 0.0


def test_policy_ops_agree_with_torch_distributions():
    g = torch.Generator().manual_seed(1)
    logits, actions = torch.randn(5, 4, generator=g), torch.tensor([0, 3, 1, 2, 2])
    cat = torch.distributions.Categorical(logits=logits)
    assert torch.allclose(pi.log_prob(logits, actions), cat.log_prob(actions), atol=1e-6)
    assert torch.allclose(pi.entropy(logits), cat.entropy(), atol=1e-6)
    means, log_std = torch.randn(5, 2, generator=g), torch.tensor([-0.5, 0.3])
    a = torch.randn(5, 2, generator=g)
    normal = torch.distributions.Normal(means, log_std.exp())
    assert torch.allclose(pi.log_prob(means, a, log_std), normal.log_prob(a).sum(-1), atol=1e-5)
    assert torch.allclose(pi.entropy(means, log_std), normal.entropy().sum(-1), atol=1e-6)
    assert torch.equal(pi.mode(means, log_std), means) and torch.equal(pi.mode(logits), logits.argmax(-1))
    torch.manual_seed(0)
    draws = pi.sample(torch.zeros(20000, 1), torch.tensor([math.log(2.0)]))
    assert abs(float(draws.std()) - 2.0) < 0.05 and abs(float(draws.mean())) < 0.05


def test_gaussian_head_learns_its_log_std_and_is_initialised_as_ppo_does():
    torch.manual_seed(0)
    net = ActorCritic((3,), 2, (64, 64), continuous=True, separate=True, activation="tanh", orthogonal=True)
    assert net.log_std.shape == (2,) and float(net.log_std.detach().abs().sum()) == 0
    w = net.policy.weight.detach()
    assert torch.allclose(w @ w.T, 0.01**2 * torch.eye(2), atol=1e-6), "policy head: orthogonal, gain 0.01"
    head, v, _ = net(torch.zeros(4, 5, 3))
    assert head.shape == (4, 5, 2) and v.shape == (4, 5)
    assert set(net.value_torso.state_dict()) == set(net.torso.state_dict()), "a torso of its own for the value"
    pi.log_prob(head, torch.zeros(4, 5, 2), net.log_std).sum().backward()
    assert net.log_std.grad is not None and float(net.log_std.grad.abs().sum()) > 0


def test_running_moments_merged_in_parts_equal_the_whole():
    rng = np.random.default_rng(0)
    x = rng.normal(3.0, 2.0, (1000, 4))
    rm = RunningMoments(4)
    for part in np.array_split(x, [10, 11, 500]):
        m = moments(part)
        rm.merge(m[0], m[1:5], m[5:])
    assert float(rm.count) == 1000
    assert np.allclose(rm.mean.numpy(), x.mean(0)) and np.allclose(rm.var.numpy(), x.var(0))
    z = rm.normalize(x)
    assert np.allclose(z.mean(0), 0, atol=1e-5) and np.allclose(z.std(0), 1, atol=1e-3)
    assert rm.normalize(np.full((1, 4), 1e6)).max() == rm.clip
