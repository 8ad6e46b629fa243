"""n-step transitions, prioritized storage and Q-learning ops against slow ground truth."""

import numpy as np
import pytest
import torch

from drlmpi.envs import Step
from drlmpi.ops.qlearning import double_q_target
from drlmpi.replay import NStepBuilder, PrioritizedReplay


def slow_nstep(obs, rewards, terminated, truncated, final_obs, n, gamma):
    """One env's stream of T steps -> [(obs_t, R, next_obs, discount)] for every transition complete by step T."""
    out = []
    T = len(rewards)
    for t in range(T):
        R = 0.0
        for k in range(n):
            if t + k >= T:
                break  # still pending when the stream stops
            R += gamma**k * rewards[t + k]
            if terminated[t + k] or truncated[t + k]:
                out.append((obs[t], R, final_obs[t + k], 0.0 if terminated[t + k] else gamma ** (k + 1)))
                break
        else:
            out.append((obs[t], R, obs[t + n], gamma**n))
    return out


@pytest.mark.parametrize("n", [1, 3, 5])
def test_nstep_builder_matches_definition(n):
    rng = np.random.default_rng(n)
    T, gamma = 60, 0.9
    obs = np.arange(T + 1, dtype=np.float32)[:, None] * 10  # obs[t] identifies the step
    rewards = rng.normal(size=T).astype(np.float32)
    terminated = rng.random(T) < 0.08
    truncated = (~terminated) & (rng.random(T) < 0.05)
    final_obs = obs + 0.5  # last obs of an episode ending at step t: final_obs[t], distinct from every obs
    builder = NStepBuilder(1, n, gamma)
    got = []
    for t in range(T):
        done = terminated[t] or truncated[t]
        step = Step(obs=obs[t + 1][None], reward=rewards[t : t + 1], terminated=terminated[t : t + 1],
                    truncated=truncated[t : t + 1], final_obs=(final_obs[t] if done else obs[t + 1])[None])
        tr = builder.push(obs[t][None], np.array([t]), step)
        if tr is not None:
            got += list(zip(tr["obs"][:, 0], tr["ret"], tr["next_obs"][:, 0], tr["discount"]))
    want = slow_nstep(obs[:, 0], rewards, terminated, truncated, final_obs[:, 0], n, gamma)
    assert terminated.any() and truncated.any()
    got.sort(key=lambda x: x[0])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0]
        assert g[1] == pytest.approx(w[1], rel=1e-5, abs=1e-5)
        assert g[2] == w[2]
        assert g[3] == pytest.approx(w[3])


def test_prioritized_replay_probabilities_and_weights():
    rng = np.random.default_rng(0)
    rb = PrioritizedReplay(8, {"x": ((), np.int64)}, alpha=0.5, rng=rng, eps=0.0)
    rb.add({"x": np.arange(6)}, priority=np.array([1.0, 4.0, 9.0, 16.0, 25.0, 36.0]))
    p = np.sqrt([1.0, 4.0, 9.0, 16.0, 25.0, 36.0])
    prob = p / p.sum()
    n = 60_000
    batch, idx, w = rb.sample(n, beta=0.7)
    np.testing.assert_array_equal(batch["x"], idx)
    freq = np.bincount(idx, minlength=6) / n
    np.testing.assert_allclose(freq, prob, atol=0.01)
    expected_w = (6 * prob[idx]) ** -0.7 / (6 * prob.min()) ** -0.7
    np.testing.assert_allclose(w, expected_w, rtol=1e-5)
    assert w.max() <= 1.0
    # ring overwrite: capacity 8, 4 more rows wrap to slots 6, 7, 0, 1
    slots = rb.add({"x": np.arange(100, 104)})
    np.testing.assert_array_equal(slots, [6, 7, 0, 1])
    assert rb.size == 8 and rb.data["x"][0] == 102


def test_double_q_target():
    q_online = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    q_target = torch.tensor([[10.0, 20.0], [30.0, 40.0]])
    y = double_q_target(q_online, q_target, torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]))
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 20.0, 2.0]))
