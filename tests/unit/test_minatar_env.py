"""MinAtar as an env family: ids registered on demand, channel-first bool observations identical to the game's own
state, the MinAtar paper's network chosen from the observation shape, and the MinAtar preset between the
defaults and everything given."""

import numpy as np
import pytest
import torch
from minatar import Environment

from drlmpi import config, envs, nets

GAMES = {"Asterix": "asterix", "Breakout": "breakout", "Freeway": "freeway", "Seaquest": "seaquest",
         "SpaceInvaders": "space_invaders"}


@pytest.mark.parametrize("game", sorted(GAMES))
def test_a_vector_of_minatar_envs_steps_exactly_as_the_game_itself(game):
    """The same seed and actions: the vector's observations are the game's state [10, 10, C] transposed to
    [C, 10, 10], with the game's rewards and terminations (sticky actions 0.1, its own RNG)."""
    E, steps, seed = 2, 1000, 11
    vec = envs.make_vec(f"MinAtar/{game}-v1", E, seed=seed)
    ref = [Environment(GAMES[game], sticky_action_prob=0.1) for _ in range(E)]
    for i, g in enumerate(ref):
        g.seed(seed + i)
        g.reset()
    minimal = ref[0].minimal_action_set()
    assert vec.action_space.n == len(minimal) and vec.observation_space.dtype == bool
    obs = vec.reset()
    assert obs.dtype == bool and obs.shape == (E, ref[0].state_shape()[2], 10, 10)
    rng, ended = np.random.default_rng(0), 0
    for _ in range(steps):
        np.testing.assert_array_equal(obs, np.stack([g.state().transpose(2, 0, 1) for g in ref]))
        actions = rng.integers(0, len(minimal), E)
        step = vec.step(actions)
        for i, g in enumerate(ref):
            r, done = g.act(minimal[actions[i]])
            assert step.reward[i] == r and step.terminated[i] == done
            if done:
                np.testing.assert_array_equal(step.final_obs[i], g.state().transpose(2, 0, 1))
                g.reset()  # (the vector's autoreset: the same RandomState, not reseeded)
                ended += 1
        obs = step.obs
    assert not step.truncated.any()
    assert ended > 0 or game == "Freeway", "no episode ended: autoreset untested"  # (Freeway: 2,500 steps)


def test_v0_has_all_six_actions_and_v1_the_minimal_set():
    assert envs.spaces("MinAtar/Breakout-v0")[1].n == 6
    assert envs.spaces("MinAtar/Breakout-v1")[1].n == 3


@pytest.mark.parametrize("shape,torso", [((4, 10, 10), nets.MinAtarCNN), ((7, 10, 10), nets.MinAtarCNN),
                                         ((4, 84, 84), nets.NatureCNN)])
def test_the_convolutional_torso_follows_the_observation_shape(shape, torso):
    q = nets.QNetwork(shape, 3)
    assert type(q.torso) is torso
    obs = torch.zeros(5, *shape, dtype=torch.bool if torso is nets.MinAtarCNN else torch.uint8)
    assert q(obs).shape == (5, 3)
    if torso is nets.MinAtarCNN:  # the MinAtar paper's: 16 filters of 3x3, stride 1, then 128 units
        conv, fc = q.torso.net[0], q.torso.net[3]
        assert (conv.out_channels, conv.kernel_size, conv.stride) == (16, (3, 3), (1, 1))
        assert (fc.in_features, fc.out_features) == (16 * 8 * 8, 128)
    ac = nets.ActorCritic(shape, 3, lstm=8)
    logits, value, _ = ac(obs[None], ac.initial_state(5))
    assert type(ac.torso) is torso and logits.shape == (1, 5, 3) and value.shape == (1, 5)
    r = nets.RecurrentQNetwork(shape, 3, lstm=8)
    assert type(r.torso) is torso and r(obs[None], r.initial_state(5))[0].shape == (1, 5, 3)


def test_a_minatar_grid_is_seen_as_zero_one_floats():
    torso = nets.MinAtarCNN((4, 10, 10))
    grid = torch.rand(3, 4, 10, 10) < 0.3
    assert torch.equal(torso(grid), torso(grid.float()))


def test_the_minatar_preset_sits_between_defaults_and_everything_given(tmp_path):
    from drlmpi.algos import a2c, apex, appo, dqn, impala, r2d2

    build = config.build
    assert build(apex.Config, env="CartPole-v1").batch_size == 128
    cfg = build(apex.Config, env="MinAtar/Breakout-v1")
    assert (cfg.batch_size, cfg.buffer_size, cfg.target_update_every) == (32, 100_000, 1_000)
    assert build(apex.Config, env="ALE/Pong-v5").batch_size == apex.Config.ATARI["batch_size"]  # Atari's own
    assert build(dqn.Config, env="MinAtar/Breakout-v1").eps_fraction == 0.02  # a mixin's preset merges too
    cfg = build(r2d2.Config, env="MinAtar/Breakout-v1")
    assert (cfg.buffer_size, cfg.lr, cfg.target_update_every) == (10_000, 1e-3, 250)  # nearer classes win
    assert build(a2c.Config, env="MinAtar/Breakout-v1").lr == 3e-4  # the actor-critic family's
    assert build(impala.Config, env="MinAtar/Breakout-v1").lr == 4e-3  # IMPALA's own, nearer, wins
    cfg = build(appo.Config, env="MinAtar/Breakout-v1")
    assert (cfg.lr, cfg.entropy_cost) == (4e-3, 0.03)
    toml = tmp_path / "run.toml"
    toml.write_text('env = "MinAtar/Asterix-v1"\nbatch_size = 48\n')
    assert build(apex.Config, str(toml)).batch_size == 48
    assert build(apex.Config, str(toml), ["batch_size=8"]).batch_size == 8


def test_es_flattens_a_minatar_grid_for_its_numpy_policy():
    from drlmpi.algos import es

    env = es.flat_env("MinAtar/Breakout-v1")
    obs, _ = env.reset(seed=0)
    assert obs.dtype == np.float32 and obs.shape == (400,) and set(np.unique(obs)) <= {0.0, 1.0}
    assert es.flat_env("CartPole-v1").observation_space.shape == (4,)


def test_a_minatar_episode_ends_at_the_step_limit_even_where_the_game_never_ends():
    """Seaquest's submarine that never dives lives forever: the episode is truncated at MINATAR_MAX_STEPS."""
    vec = envs.make_vec("MinAtar/Seaquest-v1", 1, seed=0)
    vec.reset()
    noop = np.zeros(1, np.int64)  # (action 0 of the minimal set: stay at the surface)
    for t in range(1, envs.MINATAR_MAX_STEPS + 1):
        step = vec.step(noop)
        assert not step.terminated[0], f"the game ended at step {t}"
        if step.truncated[0]:
            break
    assert t == envs.MINATAR_MAX_STEPS and step.episodes == [(0.0, t)]


def test_es_refuses_atari_whose_frames_its_one_env_episodes_would_not_preprocess():
    from drlmpi.algos import es
    from drlmpi.errors import UserError

    with pytest.raises(UserError, match="vector observations"):
        es.validate(config.build(es.Config, env="ALE/Pong-v5"))
    es.validate(config.build(es.Config, env="MinAtar/Breakout-v1"))  # (a grid, flattened)


def test_one_minatar_env_registers_the_family_itself():
    import subprocess
    import sys

    code = "from drlmpi.envs import make_one; print(make_one('MinAtar/Asterix-v1').observation_space.shape)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "(4, 10, 10)" in r.stdout, r.stderr
