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


@pytest.mark.parametrize("n,E,batch", [(1, 1, 1), (3, 1, 1), (5, 1, 1), (3, 4, 1), (5, 3, 16), (3, 4, 16)])
def test_nstep_builder_matches_definition(n, E, batch):
    rng = np.random.default_rng(n + 10 * E + batch)
    T, gamma = 80, 0.9
    # env e's obs at step t identifies both: 10 t + 1000 e; final obs of an episode ending at t: that + 0.5
    obs = np.arange(T + 1, dtype=np.float32)[:, None] * 10 + 1000 * np.arange(E, dtype=np.float32)
    rewards = rng.normal(size=(T, E)).astype(np.float32)
    terminated = rng.random((T, E)) < 0.08
    truncated = (~terminated) & (rng.random((T, E)) < 0.05)
    final_obs = obs + 0.5
    builder = NStepBuilder(E, n, gamma, batch)
    got = []

    def take(tr):
        if tr is None:
            return
        assert (tr["tag"] == tr["obs"][:, 0] + 0.25).all()  # extras travel with their first step
        assert (tr["final"] == (tr["next_obs"][:, 0] % 1 == 0.5)).all()  # next_obs a final obs
        assert (tr["next_tag"] == np.where(tr["final"], 0, tr["next_obs"][:, 0] + 0.25)).all()  # ... and at next_obs
        assert (tr["env"] == tr["obs"][:, 0] // 1000).all()
        got.extend(zip(tr["obs"][:, 0], tr["ret"], tr["next_obs"][:, 0], tr["discount"], tr["action"]))

    for t in range(T):
        done = terminated[t] | truncated[t]
        step = Step(obs=obs[t + 1][:, None], reward=rewards[t], terminated=terminated[t], truncated=truncated[t],
                    final_obs=np.where(done, final_obs[t], obs[t + 1])[:, None])
        take(builder.push(obs[t][:, None], np.full(E, t), step, tag=obs[t] + 0.25))
    take(builder.flush())
    want = []
    for e in range(E):
        want += slow_nstep(obs[:, e], rewards[:, e], terminated[:, e], truncated[:, e], final_obs[:, e], n, gamma)
    want = [w for w in want if (w[0] % 1000) // 10 < T - n]  # every start with n later steps has left
    assert terminated.any() and truncated.any()
    got.sort(key=lambda x: x[0])
    want.sort(key=lambda x: x[0])
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g[0] == w[0]
        assert g[1] == pytest.approx(w[1], rel=1e-5, abs=1e-5)
        assert g[2] == w[2]
        assert g[3] == pytest.approx(w[3])
        assert g[4] == (g[0] % 1000) // 10  # the action taken at the transition's first step


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


def test_nstep_builder_keeps_continuous_actions_and_their_fields():
    """A box of actions: each transition carries the float32 [A] action of its first step; transition_fields
    describes it."""
    import gymnasium as gym

    from drlmpi.replay import transition_fields

    E, A, T = 3, 2, 12
    builder = NStepBuilder(E, 3, 0.9, batch=4)
    rows = []
    for t in range(T):
        obs = np.full((E, 1), t, np.float32) + np.arange(E)[:, None] * 100
        step = Step(obs=obs + 1, reward=np.ones(E, np.float32), terminated=np.zeros(E, bool),
                    truncated=np.zeros(E, bool), final_obs=obs + 1)
        actions = (obs + 0.5 + np.arange(A)).astype(np.float64)  # a float64 policy output is stored as float32
        if (r := builder.push(obs, actions, step)) is not None:
            rows.append(r)
    got = {k: np.concatenate([r[k] for r in rows]) for k in rows[0]}
    assert got["action"].dtype == np.float32 and got["action"].shape == (len(got["obs"]), A)
    np.testing.assert_array_equal(got["action"], got["obs"] + 0.5 + np.arange(A))
    box = gym.spaces.Box(-1, 1, (A,), np.float32)
    f = transition_fields(gym.spaces.Box(-1, 1, (1,), np.float32), box)
    assert f["action"] == ((A,), np.float32)
    assert transition_fields(box, gym.spaces.Discrete(3))["action"] == ((), np.int64)
