"""Networks and their flat-vector round trips (the weights plane's layout)."""

import numpy as np
import pytest
import torch

from drlmpi.nets import QNetwork, flat_params, load_flat, q_values


def test_load_flat_copies_and_never_aliases_the_vector():
    a, b, c = (QNetwork((4,), 2, (8,), dueling=True) for _ in range(3))
    buf = flat_params(a)
    load_flat(b, buf)
    load_flat(c, buf)
    np.testing.assert_array_equal(flat_params(b), flat_params(a))
    buf[:] = 0  # a reader reusing its buffer for the next read (e.g. into a target network) changes no net
    np.testing.assert_array_equal(flat_params(b), flat_params(a))
    np.testing.assert_array_equal(flat_params(c), flat_params(a))
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_array_equal(q_values(b, obs), q_values(a, obs))


@pytest.mark.parametrize("obs_shape", [(4,), (4, 84, 84)])
def test_actor_critic_shapes_time_major(obs_shape):
    from drlmpi.nets import ActorCritic

    net = ActorCritic(obs_shape, 3)
    obs = torch.zeros(5, 2, *obs_shape, dtype=torch.uint8 if len(obs_shape) == 3 else torch.float32)
    logits, value, state = net(obs)
    assert logits.shape == (5, 2, 3) and value.shape == (5, 2) and state == ()


def test_lstm_core_resets_at_episode_starts_and_carries_state_across_calls():
    from drlmpi.nets import ActorCritic

    torch.manual_seed(0)
    net = ActorCritic((4,), 2, hidden=(8,), lstm=16)
    obs = torch.randn(6, 3, 4)
    reset = torch.zeros(6, 3, dtype=torch.bool)
    reset[3, 1] = True  # column 1 starts an episode at t = 3
    logits, value, state = net(obs, net.initial_state(3), reset)
    assert logits.shape == (6, 3, 2) and value.shape == (6, 3) and state[0].shape == (3, 16)
    fresh, _, _ = net(obs[3:, 1:2], net.initial_state(1))  # the same episode seen from its start
    torch.testing.assert_close(logits[3:, 1:2], fresh)
    first, _, mid = net(obs[:2], net.initial_state(3), reset[:2])  # two calls give what one call gives
    second, _, _ = net(obs[2:], mid, reset[2:])
    torch.testing.assert_close(torch.cat([first, second]), logits)
    assert not torch.allclose(logits[3:, 0], fresh[:, 0])  # without a reset the state carries over


def test_state_action_q_shapes_scaling_and_cem_inside_the_bounds():
    """Q(s, a) [B] for a box of actions, image or vector observations; actions enter scaled to [-1, 1]; CEM over
    it returns actions inside the bounds that score at least the box's centre."""
    from drlmpi.nets import StateActionQ
    from drlmpi.ops.cem import cem

    low, high = np.array([-2.0, 0.0], np.float32), np.array([2.0, 10.0], np.float32)
    torch.manual_seed(0)
    q = StateActionQ((3,), low, high, (32, 32))
    obs, act = torch.randn(5, 3), torch.tensor([[-2.0, 0.0], [2.0, 10.0], [0.0, 5.0], [1.0, 1.0], [0.0, 0.0]])
    assert q(obs, act).shape == (5,)
    first = q.mlp.net[0]
    with torch.no_grad():  # the action columns see (a - centre) / half
        h = first(torch.cat([obs, torch.tensor([[-1.0, -1.0], [1.0, 1.0], [0, 0], [0.5, -0.8], [0, -1]])], 1))
        np.testing.assert_allclose(first(torch.cat([obs, (act - q.centre) / q.radius], 1)), h, atol=1e-6)
    a, score = cem(q, obs, torch.as_tensor(low), torch.as_tensor(high), generator=torch.Generator().manual_seed(1))
    assert ((a >= torch.as_tensor(low)) & (a <= torch.as_tensor(high))).all()
    with torch.no_grad():
        assert (q(obs, a) >= q(obs, torch.tensor([[0.0, 5.0]]).expand(5, 2)) - 1e-6).all()
        np.testing.assert_allclose(q(obs, a), score, atol=1e-5)
    img = StateActionQ((4, 84, 84), low, high, (16,))
    assert img(torch.zeros(2, 4, 84, 84, dtype=torch.uint8), act[:2]).shape == (2,)
