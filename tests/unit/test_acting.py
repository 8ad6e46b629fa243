"""drlmpi.acting: the numpy actor-critic and Q-network are the torch ones (same flat layout, same outputs), the
sampling follows the policy, an unroll acted in numpy carries what the learner's loss reads, and Ape-X's actors and
shards build no torch network on vector observations."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from drlmpi import acting
from drlmpi import value_config as vc
from drlmpi.actor_critic import TorchPolicy, build_net
from drlmpi.algos import impala
from drlmpi.envs import make_vec, spaces
from drlmpi.nets import QNetwork, flat_params, q_values
from drlmpi.ops import policy as pi

gym.register("DrlmpiCartPole10-v1", entry_point="gymnasium.envs.classic_control.cartpole:CartPoleEnv",
             max_episode_steps=10)


def cfg_of(**kw) -> impala.Config:
    return impala.Config(env="CartPole-v1", **kw)


CASES = [  # (obs shape, action space, config)
    ((4,), gym.spaces.Discrete(2), cfg_of()),  # IMPALA's CartPole defaults: separate tanh torsos, orthogonal
    ((4,), gym.spaces.Discrete(2), cfg_of(separate_value=False, activation="relu", hidden=(32,))),
    ((3, 2), gym.spaces.Discrete(5), cfg_of(hidden=(16, 8, 4))),  # a 2-D observation, flattened
    ((11,), gym.spaces.Box(-1.0, 1.0, (3,), np.float32), cfg_of()),  # a Gaussian
    ((6,), gym.spaces.Box(-2.0, 2.0, (2,), np.float32), cfg_of(separate_value=False, hidden=(64, 64))),
]


@pytest.mark.parametrize("obs_shape, act_space, cfg", CASES)
def test_the_numpy_network_is_the_torch_one_from_the_same_flat_vector(obs_shape, act_space, cfg):
    torch.manual_seed(0)
    obs_space = gym.spaces.Box(-10.0, 10.0, obs_shape, np.float32)
    net = build_net(cfg, obs_space, act_space)
    with torch.no_grad():
        for p in net.parameters():  # not the initialisation's zeros: every parameter shows in the outputs
            p.add_(0.1 * torch.randn_like(p))
    flat = flat_params(net)
    mine = acting.MLPActorCritic.of(cfg, obs_space, act_space)
    assert mine.n == len(flat) == acting.param_count(cfg, obs_space, act_space) == acting.param_count(
        cfg, obs_space, act_space, net)
    mine.load(flat)
    flat[:] = 0  # the numpy network holds a copy
    obs = np.random.default_rng(1).normal(size=(7, *obs_shape)).astype(np.float32)
    head, value = mine(obs)
    with torch.no_grad():
        t_head, t_value, _ = net(torch.as_tensor(obs)[None])
    np.testing.assert_allclose(head, t_head[0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, t_value[0].numpy(), rtol=1e-5, atol=1e-5)
    if net.log_std is not None:
        np.testing.assert_array_equal(mine.log_std, net.log_std.detach().numpy())
    assert head.dtype == value.dtype == np.float32 and value.shape == (7,)


def test_a_wrong_length_vector_is_refused():
    mine = acting.MLPActorCritic(4, 2, (8,))
    with pytest.raises(ValueError, match="weights for a network of"):
        mine.load(np.zeros(mine.n + 1, np.float32))


def test_categorical_samples_follow_the_softmax():
    logits = np.array([[0.0, 1.0, 2.0], [5.0, -5.0, 0.0]], np.float32)
    gen = np.random.default_rng(0)
    n = 40_000
    draws = np.stack([acting.categorical(logits, gen) for _ in range(n)])  # [n, 2]
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for row in range(2):
        freq = np.bincount(draws[:, row], minlength=3) / n
        np.testing.assert_allclose(freq, p[row], atol=4 * math.sqrt(0.25 / n))
    assert draws.dtype == np.int64


def test_the_gaussian_log_probability_is_ops_policys():
    gen = np.random.default_rng(2)
    mean, action = gen.normal(size=(5, 3)).astype(np.float32), gen.normal(size=(5, 3)).astype(np.float32)
    log_std = np.array([-0.5, 0.0, 0.3], np.float32)
    expected = pi.log_prob(torch.as_tensor(mean), torch.as_tensor(action), torch.as_tensor(log_std)).numpy()
    np.testing.assert_allclose(acting.gaussian_log_prob(mean, action, log_std), expected, rtol=1e-5, atol=1e-5)


def test_gaussian_actions_spread_by_the_policys_standard_deviation():
    net = acting.MLPActorCritic(2, 2, (4,), continuous=True)
    flat = np.zeros(net.n, np.float32)
    flat[:2] = np.log([0.5, 2.0])  # log_std, the first parameter; the means are 0
    net.load(flat)
    policy = acting.NumpyPolicy(net, np.random.default_rng(3))
    actions = np.concatenate([policy.act(np.zeros((64, 2), np.float32))[0] for _ in range(200)])
    np.testing.assert_allclose(actions.std(0), [0.5, 2.0], rtol=0.05)
    np.testing.assert_allclose(actions.mean(0), [0.0, 0.0], atol=0.05)


@pytest.mark.parametrize("numpy_policy", [True, False])
def test_an_unroll_carries_the_actions_behaviour_logits_and_bootstrapped_time_limits(numpy_policy):
    """CartPole cut at 10 steps: a truncated step's reward is 1 + gamma V(final obs) (not 1) and its discount 0; the
    logits are the policy's at each obs; actions are valid."""
    cfg = cfg_of(num_envs=2, n_steps=25)
    env = make_vec("DrlmpiCartPole10-v1", 2, seed=0)
    net = build_net(cfg, env.observation_space, env.action_space)
    policy = (acting.NumpyPolicy(acting.MLPActorCritic.of(cfg, env.observation_space, env.action_space),
                                 np.random.default_rng(0)) if numpy_policy else TorchPolicy(net))
    policy.load(flat_params(net))
    fields = {"obs": ((2, 4), np.float32), "reward": ((2,), np.float32), "discount": ((2,), np.float32),
              **acting.behaviour_field(2, env.action_space)}
    out = {k: np.zeros((cfg.n_steps, *shape), dtype) for k, (shape, dtype) in fields.items()}
    episodes = []
    u, obs = acting.unroll(policy, env, env.reset(), cfg, False, episodes, out=out)
    env.close()
    assert u is out and obs.shape == (2, 4) and set(np.unique(u["action"])) <= {0, 1}
    with torch.no_grad():
        logits = net(torch.as_tensor(u["obs"]))[0].numpy()
    np.testing.assert_allclose(u["logits"], logits, rtol=1e-5, atol=1e-5)
    ended, bootstrapped = u["discount"] == 0, u["reward"] != 1.0
    assert len(episodes) >= 4 and bootstrapped.any(), u["reward"]  # 50 steps, episodes of at most 10
    assert np.all(ended[bootstrapped]), "only an episode's last step is bootstrapped"
    assert np.all(u["discount"][~ended] == np.float32(cfg.gamma))


@pytest.mark.parametrize("obs_shape, hidden, dueling", [((4,), (256, 256), True), ((3, 2), (16,), False),
                                                        ((8,), (32, 16), True)])
def test_the_numpy_q_network_is_the_torch_one_from_the_same_flat_vector(obs_shape, hidden, dueling):
    torch.manual_seed(0)
    net = QNetwork(obs_shape, 3, hidden, dueling)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    mine = acting.MLPQNetwork(int(np.prod(obs_shape)), 3, hidden, dueling)
    assert mine.n == sum(p.numel() for p in net.parameters())
    mine.load(flat_params(net))
    obs = np.random.default_rng(1).normal(size=(5, *obs_shape)).astype(np.float32)
    np.testing.assert_allclose(mine(obs), q_values(net, obs), rtol=1e-5, atol=1e-5)


def test_ape_x_actors_and_shards_build_no_network_on_vector_observations_and_do_on_images():
    from drlmpi.algos import apex

    cfg = apex.Config(env="CartPole-v1")
    rows = vc.transitions(cfg, *spaces("CartPole-v1"))
    assert not rows.needs_net("actor") and not rows.needs_net("replay") and rows.needs_net("learner")
    assert rows.n_params == sum(p.numel() for p in vc.build_net(cfg, *spaces("CartPole-v1")).parameters())
    policy = rows.actor_policy()  # no network built
    assert isinstance(policy.q, acting.MLPQNetwork)
    with pytest.raises(Exception, match="built no network"):
        print(rows.net)
    image = gym.spaces.Box(0, 1, (4, 10, 10), np.uint8)
    rows = vc.transitions(apex.Config(env="MinAtar/Breakout-v1"), image, gym.spaces.Discrete(3))
    assert rows.needs_net("actor") and rows.needs_net("replay") and rows.n_params is None


def test_a_rank_runs_numpys_blas_on_one_thread():
    """drlmpi sets OPENBLAS_NUM_THREADS=1 before numpy loads OpenBLAS (unless the user set it): a numpy actor's matmul
    starts no thread per core in every rank of a node."""
    import os
    import subprocess
    import sys

    code = ("import drlmpi, numpy as np, os\n"
            "a = np.ones((512, 512), np.float32)\n"
            "a @ a\n"
            "print(len(os.listdir('/proc/self/task')))\n")
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and r.stdout.strip() == "1", r.stdout + r.stderr
