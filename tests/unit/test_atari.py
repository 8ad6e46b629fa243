"""The Atari preset against gymnasium's reference pipeline, frame for frame, and each intended difference checked
(envs module docstring): an episode's first stack padded with zeros, one frame of FIRE after each reset, the
no-op and sticky-action draws from ale-py's own generators (reproducible per seed). Then what the learner sees:
the Nature CNN's layers and input scaling, and the replay's compact frames giving back the env's own stacks."""

import ale_py
import cv2  # (gymnasium's AtariPreprocessing resizes with it; the test extra installs it)
import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

from drlmpi import envs, nets
from drlmpi.replay import NStepBuilder, PrioritizedReplay, transition_fields
from drlmpi.replay import frames as fr
from drlmpi.replay.frames import FrameReplay
from drlmpi.replay.shard import reply_layout

gym.register_envs(ale_py)


def reference(game: str):
    """gymnasium's pipeline: raw frames (no skip, no sticky actions), AtariPreprocessing (frame skip 4 with
    max-pool, 84x84 grey, no life-loss ends), FrameStackObservation of 4 padded with zeros."""
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0)
    env = AtariPreprocessing(env, noop_max=0, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
    return FrameStackObservation(env, 4, padding_type="zero")


@pytest.mark.parametrize("game,steps", [("Breakout", 450), ("Pong", 150)])
def test_the_atari_preset_steps_frame_for_frame_as_gymnasiums_reference_wrappers(game, steps):
    """No sticky actions, no no-ops, no fire reset: observations, rewards, terminations, the last observation of an
    episode, the next episode's first, and episode returns are exactly the reference's, env by env."""
    E, seed = 2, 5
    vec = envs.make_vec(f"ALE/{game}-v5", E, seed=seed, sticky=0.0, noop_max=0, fire_reset=False)
    refs = [reference(game) for _ in range(E)]
    obs, ref_obs = vec.reset(), [r.reset(seed=seed + i)[0] for i, r in enumerate(refs)]
    rng, returns, ref_returns, totals = np.random.default_rng(0), [], [], np.zeros(E)
    for _ in range(steps):
        np.testing.assert_array_equal(obs, np.stack(ref_obs))
        actions = rng.integers(0, vec.action_space.n, E)
        step = vec.step(actions)
        returns += [ret for ret, _ in step.episodes]
        for i, r in enumerate(refs):
            o, reward, term, trunc, _ = r.step(int(actions[i]))
            totals[i] += reward
            assert (step.reward[i], step.terminated[i], step.truncated[i]) == (reward, term, trunc)
            if term or trunc:
                np.testing.assert_array_equal(step.final_obs[i], o)
                ref_returns.append(totals[i])
                totals[i], o = 0.0, r.reset()[0]
            ref_obs[i] = o
        obs = step.obs
    assert sorted(returns) == sorted(ref_returns)
    assert game != "Breakout" or len(returns) >= 2, "no episode ended: the boundary went untested"


def test_fire_reset_is_one_frame_of_fire_whose_screen_starts_the_episode():
    """The preset's first stack: three zero frames, then the screen after one frame of FIRE following the reset,
    grey and resized as AtariPreprocessing does (INTER_AREA); without fire reset, the reset screen itself."""
    seed = 2
    first = {fire: envs.make_vec("ALE/Breakout-v5", 1, seed=seed, sticky=0.0, noop_max=0, fire_reset=fire).reset()[0]
             for fire in (True, False)}
    env = gym.make("ALE/Breakout-v5", frameskip=1, repeat_action_probability=0.0)
    env.reset(seed=seed)
    ale = env.unwrapped.ale
    shrink = lambda screen: cv2.resize(screen, (84, 84), interpolation=cv2.INTER_AREA)  # noqa: E731
    at_reset = shrink(ale.getScreenGrayscale())
    assert env.unwrapped.get_action_meanings()[1] == "FIRE"
    ale.act(1)
    after_fire = shrink(ale.getScreenGrayscale())
    for fire, stack in first.items():
        assert not stack[:3].any()
        np.testing.assert_array_equal(stack[3], after_fire if fire else at_reset)
    assert not np.array_equal(after_fire, at_reset)


def test_no_op_starts_and_sticky_actions_are_reproducible_per_seed_and_differ_between_seeds():
    def trajectory(seed: int) -> np.ndarray:
        vec = envs.make_vec("ALE/Pong-v5", 2, seed=seed)  # the preset: sticky 0.25, up to 30 no-ops
        frames, rng = [vec.reset()], np.random.default_rng(0)
        for _ in range(60):
            frames.append(vec.step(rng.integers(0, vec.action_space.n, 2)).obs)
        return np.stack(frames)

    a = trajectory(1)
    np.testing.assert_array_equal(a, trajectory(1))
    assert not np.array_equal(a, trajectory(2))


def test_the_nature_cnn_has_the_papers_layers_and_sees_pixels_over_255():
    cnn = nets.NatureCNN(4)
    convs = [m for m in cnn.net if isinstance(m, torch.nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(32, (8, 8), (4, 4)), (64, (4, 4), (2, 2)),
                                                                          (64, (3, 3), (1, 1))]
    fc = [m for m in cnn.net if isinstance(m, torch.nn.Linear)][0]
    assert (fc.in_features, fc.out_features) == (64 * 7 * 7, 512)
    x = torch.randint(0, 256, (3, 4, 84, 84), dtype=torch.uint8)
    torch.testing.assert_close(cnn(x), cnn.net(x.float() / 255.0), rtol=0, atol=0)
    q = nets.QNetwork((4, 84, 84), 6)
    assert torch.isfinite(q(x)).all() and q(x).abs().max() < 10  # at initialisation: finite, moderate


def test_compact_frames_give_the_learner_exactly_the_stacks_pong_produced():
    """Pong's own stacks (E = 2, the preset) through the actor's env-major n-step builder, compact frames and a
    frame replay: every stored transition gathers back to the full-stack transition, frame for frame."""
    E, space = 2, envs.spaces("ALE/Pong-v5")[0]
    fields, stacks = transition_fields(space), ("obs", "next_obs")
    vec = envs.make_vec("ALE/Pong-v5", E, seed=0)
    builder = NStepBuilder(E, 3, 0.99, batch=fr.ENV_BLOCK, env_major=True)
    full = PrioritizedReplay(2_000, fields, 0.6, np.random.default_rng(0))
    comp = FrameReplay(2_000, fields, stacks, 0.6, np.random.default_rng(0), fr.pool_frames(2_000, 64, fields, stacks))
    obs, rng = vec.reset(), np.random.default_rng(0)
    for _ in range(600):
        actions = rng.integers(0, vec.action_space.n, E)
        step = vec.step(actions)
        block = builder.push(obs, actions, step)
        if block is not None:
            rows = {f: block[f] for f in fields}
            full.add(rows, np.ones(len(rows["ret"])))
            comp.add(fr.compact(rows, stacks), np.ones(len(rows["ret"])))
        obs = step.obs
    assert full.size == comp.size > 1_000
    slots = np.arange(comp.size)
    layout = reply_layout(fields, len(slots))
    _, out = layout.views(layout.new())
    comp.fetch(slots, out, 0)
    for k in fields:
        np.testing.assert_array_equal(out[k], full.data[k][slots], err_msg=k)
    assert (comp.pool.count > 0).sum() < 1.2 * comp.size  # about one frame a transition, against 8
