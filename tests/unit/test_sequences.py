"""Recurrent replay: the sequence builder, value rescaling and sequence targets against slow ground truth."""

import gymnasium as gym
import numpy as np
import pytest
import torch

from drlmpi.envs import Step
from drlmpi.ops.qlearning import rescale, sequence_priority, sequence_targets, unrescale
from drlmpi.replay import SequenceBuilder
from drlmpi.replay.sequence import unstack


def stream(T, E, seed, p_term=0.04, p_trunc=0.03):
    rng = np.random.default_rng(seed)
    obs = (np.arange(T + 1)[:, None] * 10 + 1000 * np.arange(E)).astype(np.float32)  # obs [T+1, E] id (t, e)
    terminated = rng.random((T, E)) < p_term
    truncated = ~terminated & (rng.random((T, E)) < p_trunc)
    return obs, rng.normal(size=(T, E)).astype(np.float32), terminated, truncated


def slow_sequences(obs, reward, terminated, truncated, L, O, B, gamma):
    """Every sequence by definition: per env and episode, windows starting every L - O steps."""
    T, E = reward.shape
    done = terminated | truncated
    out = []
    for e in range(E):
        t0 = 0
        while t0 < T:
            ends = [t for t in range(t0, T) if done[t, e]]
            t_end = ends[0] if ends else T - 1  # the episode's last step in the stream
            k = 0
            while True:
                s = t0 + k * (L - O)
                n = min(L, t_end + 1 - s)
                if n <= 0:
                    break
                last = s + n - 1
                nxt = obs[last, e] + 0.5 if done[last, e] else obs[last + 1, e]  # final obs: id + 0.5
                if n > (0 if k == 0 else B):  # else nothing after its burn-in: not stored
                    out.append({"obs": [*obs[s : s + n, e], nxt], "action": list(np.arange(s, s + n) % 3),
                                "reward": list(reward[s : s + n, e]),
                                "discount": [0.0 if terminated[t, e] else gamma for t in range(s, s + n)],
                                "valid": n, "burn": 0 if k == 0 else B, "state": s + 0.01 * e})
                if n < L or done[last, e]:
                    break
                k += 1
            t0 = t_end + 1
    return out


@pytest.mark.parametrize("L,O,B,E", [(5, 2, 2, 1), (8, 4, 4, 3), (6, 0, 0, 2), (4, 3, 1, 2)])
def test_sequence_builder_matches_definition(L, O, B, E):
    T, gamma, H = 120, 0.9, 3
    obs, reward, terminated, truncated = stream(T, E, seed=L * 10 + O)
    space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
    builder = SequenceBuilder(E, L, O, B, gamma, space, H)
    rows = []
    for t in range(T):
        step = Step(obs[t + 1][:, None], reward[t], terminated[t], truncated[t], (obs[t] + 0.5)[:, None])
        state = np.broadcast_to((t + 0.01 * np.arange(E))[:, None, None], (E, 2, H)).astype(np.float32)
        out = builder.push(obs[t][:, None], np.full(E, t % 3), step, state)
        rows += [{k: v[i] for k, v in out.items()} for i in range(len(out["action"]))] if out else []
    out = builder.flush()
    rows += [{k: v[i] for k, v in out.items()} for i in range(len(out["action"]))] if out else []

    def key(seq_obs0, state):
        return round(float(seq_obs0), 3), round(float(state), 3)

    want = {key(s["obs"][0], s["state"]): s for s in slow_sequences(obs, reward, terminated, truncated, L, O, B,
                                                                    gamma)}
    got = {key(r["obs"][0, 0], r["state"][0, 0]): r for r in rows}
    assert sorted(got) == sorted(want)
    for k, w in want.items():
        r, n = got[k], w["valid"]
        np.testing.assert_array_equal(r["valid"], [1.0] * n + [0.0] * (L - n))
        np.testing.assert_allclose(r["obs"][: n + 1, 0], w["obs"])
        assert not r["obs"][n + 1 :].any() and not r["reward"][n:].any() and not r["discount"][n:].any()
        np.testing.assert_array_equal(r["action"][:n], w["action"])
        np.testing.assert_allclose(r["reward"][:n], w["reward"])
        np.testing.assert_allclose(r["discount"][:n], w["discount"])
        assert r["burn"] == w["burn"] and np.allclose(r["state"], w["state"]), (r["burn"], w["burn"])


def test_frame_stacks_are_stored_once_and_rebuilt():
    """uint8 stacks [4, 6, 6]: a sequence stores L + 4 frames; unstack gives back every stack it acted on."""
    E, L, O, C = 2, 6, 3, 4
    rng = np.random.default_rng(0)
    space = gym.spaces.Box(0, 255, (C, 6, 6), np.uint8)
    builder = SequenceBuilder(E, L, O, O, 0.99, space, 2)
    assert builder.fields["frames"][0] == (L + C, 6, 6) and "obs" not in builder.fields

    def new_stack():
        return rng.integers(0, 256, (C, 6, 6), dtype=np.uint8)

    stacks = np.stack([new_stack() for _ in range(E)])
    seen, rows = {}, []
    for t in range(40):
        nxt = np.concatenate([stacks[:, 1:], rng.integers(0, 256, (E, 1, 6, 6), dtype=np.uint8)], axis=1)
        term = np.array([t == 17, t == 30])
        after = nxt.copy()
        for e in np.flatnonzero(term):
            after[e] = new_stack()
        out = builder.push(stacks, np.zeros(E, np.int64), Step(after, np.zeros(E, np.float32), term, ~term & False,
                                                               nxt), np.zeros((E, 2, 2), np.float32))
        for e in range(E):
            seen[stacks[e].tobytes()] = True
        if out:
            rows.append(out)
        stacks = after
    frames = np.concatenate([r["frames"] for r in rows])
    valid = np.concatenate([r["valid"] for r in rows])
    rebuilt = unstack(frames, C)
    assert rebuilt.shape == (len(frames), L + 1, C, 6, 6)
    for i in range(len(frames)):
        for t in range(int(valid[i].sum())):
            assert rebuilt[i, t].tobytes() in seen
    torch.testing.assert_close(unstack(torch.from_numpy(frames), C), torch.from_numpy(np.ascontiguousarray(rebuilt)))
    with pytest.raises(ValueError, match="shift by one frame"):
        builder.push(stacks, np.zeros(E, np.int64), Step(np.stack([new_stack() for _ in range(E)]),
                                                         np.zeros(E, np.float32), np.zeros(E, bool),
                                                         np.zeros(E, bool), stacks), np.zeros((E, 2, 2), np.float32))


def test_value_rescaling_is_inverted_exactly():
    x = torch.linspace(-5000, 5000, 100_001, dtype=torch.float64)
    torch.testing.assert_close(unrescale(rescale(x)), x, atol=1e-8, rtol=1e-10)
    assert rescale(np.array([0.0, 3.0]))[1] == pytest.approx(1 + 3e-3)


def slow_targets(r, d, valid, boot, n, t, b):
    ret, g, k = 0.0, 1.0, 0
    while k < n and t + k < len(r) and valid[t + k, b]:
        ret += g * r[t + k, b]
        g *= d[t + k, b]
        k += 1
    return float(rescale(ret + g * unrescale(boot[t + k, b])))


@pytest.mark.parametrize("n", [1, 3, 5])
def test_sequence_targets_match_definition(n):
    g = torch.Generator().manual_seed(n)
    T, B = 12, 5
    r = torch.randn(T, B, generator=g, dtype=torch.float64) * 3
    d = torch.where(torch.rand(T, B, generator=g) < 0.2, 0.0, 0.97).double()
    lengths = [12, 7, 1, 12, 4]
    valid = torch.tensor([[1.0 if t < L else 0.0 for L in lengths] for t in range(T)], dtype=torch.float64)
    boot = torch.randn(T + 1, B, generator=g, dtype=torch.float64)
    y = sequence_targets(r, d, valid, boot, n)
    for b in range(B):
        for t in range(lengths[b]):
            assert float(y[t, b]) == pytest.approx(slow_targets(r, d, valid, boot, n, t, b), rel=1e-9, abs=1e-9)


def test_sequence_priority_mixes_max_and_mean_over_valid_steps():
    td = torch.tensor([[1.0, -4.0], [-3.0, 2.0], [100.0, 1.0]])
    mask = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0]])
    p = sequence_priority(td, mask, eta=0.9)
    torch.testing.assert_close(p, torch.tensor([0.9 * 3 + 0.1 * 2, 0.9 * 4 + 0.1 * 7 / 3]))
