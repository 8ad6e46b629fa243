"""CEM (ops.cem): converges to the maximiser of a known quadratic, respects the bounds, batched = per state."""

import pytest
import torch

from drlmpi.ops.cem import cem

LOW, HIGH = torch.tensor([-2.0, -1.0, 0.0]), torch.tensor([2.0, 1.0, 3.0])


def quadratic(obs, act):
    """Q(s, a) = -sum_j w_j (a_j - s_j)^2: maximised at a = s (clipped to the box, per coordinate)."""
    return -(torch.tensor([1.0, 4.0, 0.5]) * (act - obs) ** 2).sum(dim=1)


def test_cem_converges_to_the_maximiser_of_a_quadratic():
    g = torch.Generator().manual_seed(0)
    target = torch.rand(64, 3, generator=g) * (HIGH - LOW) * 0.8 + LOW + 0.1 * (HIGH - LOW)  # inside the box
    # iterations x samples x elites 8 x 256 x 16: the worst error over seeds 0-19 was 0.0014
    act, score = cem(quadratic, target, LOW, HIGH, iterations=8, samples=256, elites=16, generator=g)
    assert (act - target).abs().max() < 0.01, (act - target).abs().max()
    torch.testing.assert_close(score, quadratic(target, act))
    rough, _ = cem(quadratic, target, LOW, HIGH, generator=g)  # the paper's 2 x 64 x 6
    assert (rough - target).abs().mean() < 0.25
    assert (act - target).abs().mean() < (rough - target).abs().mean(), "more iterations did not help"


def test_cem_stays_inside_the_bounds_and_finds_the_corner():
    outside = torch.tensor([[5.0, -3.0, 10.0]]).repeat(8, 1)  # the maximiser over the box: its corner (2, -1, 3)
    act, _ = cem(quadratic, outside, LOW, HIGH, iterations=6, samples=128, elites=10,
                 generator=torch.Generator().manual_seed(1))
    assert ((act >= LOW) & (act <= HIGH)).all()
    assert (act - torch.tensor([2.0, -1.0, 3.0])).abs().max() < 0.01, act


def test_cem_batched_equals_each_state_alone():
    g = torch.Generator().manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Linear(5 + 3, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))

    def q(obs, act):
        return net(torch.cat([obs, act], dim=1)).squeeze(1)

    obs = torch.randn(10, 5, generator=g)
    noise = torch.randn(3, 10, 16, 3, generator=g)
    with torch.no_grad():
        act, score = cem(q, obs, LOW, HIGH, iterations=3, samples=16, elites=4, noise=noise)
        for i in range(10):
            a, s = cem(q, obs[i : i + 1], LOW, HIGH, iterations=3, samples=16, elites=4, noise=noise[:, i : i + 1])
            torch.testing.assert_close(a[0], act[i])
            torch.testing.assert_close(s[0], score[i])


def test_cem_refuses_more_elites_than_samples():
    with pytest.raises(ValueError, match="elites"):
        cem(quadratic, torch.zeros(1, 3), LOW, HIGH, samples=4, elites=5)
