"""A crashing environment is not a crashing job: envs.VecEnv rebuilds failed envs with a fresh seed, reports the
step as `restarted` (no transition, every episode cut at the observation that acted), and the builders drop it."""

import sys

import numpy as np
import pytest
from helpers import ROOT

from drlmpi import envs
from drlmpi.replay.nstep import NStepBuilder
from drlmpi.replay.sequence import SequenceBuilder

sys.path.insert(0, str(ROOT / "tests" / "envs"))  # flaky:..., as PYTHONPATH gives it to a drlmpi process
ENV = "flaky:FlakyCartPole-v1"


@pytest.fixture
def flaky(monkeypatch):
    import flaky

    monkeypatch.setenv("DRLMPI_TEST_FLAKY_EVERY", "7")
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_RESET_EVERY", "5")
    monkeypatch.setitem(flaky.COUNTS, "steps", 0)
    monkeypatch.setitem(flaky.COUNTS, "resets", 0)
    envs.set_restart_limit(100)
    return flaky


def test_a_failing_step_rebuilds_the_envs_and_comes_back_restarted(flaky):
    env = envs.make_vec(ENV, 2, seed=3)
    obs, before = env.reset(), envs.env_restarts()
    failed = []
    for t in range(40):
        step = env.step(np.zeros(2, np.int64))
        if step.restarted:
            failed.append(t)
            assert step.truncated.all() and not step.terminated.any() and step.episodes == []
            np.testing.assert_array_equal(step.final_obs, obs)  # cut at the observation that acted
            assert (step.reward == 0).all() and np.abs(step.obs).max() <= 0.05  # new episodes' first obs
        obs = step.obs
    assert len(failed) >= 5 and envs.env_restarts() - before >= len(failed)  # (a failed reset counts too)
    env.close()


def test_more_failures_than_the_limit_end_the_job_with_the_last_one(flaky):
    envs.set_restart_limit(2)
    env = envs.make_vec(ENV, 1, seed=0)
    env.reset()
    with pytest.raises(envs.EnvFailure, match="3 environment failures within 60 s") as e:
        for _ in range(100):
            env.step(np.zeros(1, np.int64))
    assert "flaky simulator" in str(e.value.__cause__)
    envs.set_restart_limit(100)


def test_an_env_failing_on_every_reset_ends_the_job_however_slowly(flaky, monkeypatch):
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_RESET_EVERY", "1")
    with pytest.raises(envs.EnvFailure, match="11 in a row"):
        envs.make_vec(ENV, 1, seed=0).reset()


def test_nstep_builder_drops_the_restarted_step_and_cuts_the_episodes_before_it():
    b = NStepBuilder(1, n=3, gamma=0.5, batch=1)
    obs = [np.full((1, 2), float(i), np.float32) for i in range(4)]
    no = np.zeros(1, bool)
    for t in range(2):  # steps 0 -> 1 -> 2 with reward 1
        b.push(obs[t], np.zeros(1, np.int64), envs.Step(obs[t + 1], np.ones(1, np.float32), no, no, obs[t + 1]))
    cut = envs.Step(obs[3], np.zeros(1, np.float32), no, ~no, obs[2], restarted=True)
    assert b.push(obs[2], np.zeros(1, np.int64), cut) is None
    outs, new = [], [np.full((1, 2), 10.0 + i, np.float32) for i in range(5)]  # a new episode from obs 10
    for t in range(4):
        outs.append(b.push(new[t], np.zeros(1, np.int64), envs.Step(new[t + 1], np.ones(1, np.float32), no, no,
                                                                    new[t + 1])))
    outs.append(b.flush())
    out = {k: np.concatenate([o[k] for o in outs if o is not None]) for k in ("obs", "ret", "next_obs", "discount")}
    np.testing.assert_array_equal(out["obs"][:, 0], [0.0, 1.0, 10.0])  # no transition from obs 2
    np.testing.assert_allclose(out["ret"][:2], [1.5, 1.0])
    np.testing.assert_array_equal(out["next_obs"][:2, 0], [2.0, 2.0])  # both bootstrap from obs 2 (a cut)
    np.testing.assert_allclose(out["discount"][:2], [0.25, 0.5])


def test_sequence_builder_ends_its_sequences_at_a_restart():
    b = SequenceBuilder(1, 4, 0, 0, 0.9, envs.spaces("CartPole-v1")[0], 2)
    obs = [np.full((1, 4), float(i), np.float32) for i in range(4)]
    no, state = np.zeros(1, bool), np.zeros((1, 2, 2), np.float32)
    for t in range(2):
        assert b.push(obs[t], np.zeros(1, np.int64), envs.Step(obs[t + 1], np.ones(1, np.float32), no, no,
                                                               obs[t + 1]), state) is None
    rows = b.push(obs[2], np.zeros(1, np.int64), envs.Step(obs[3], np.zeros(1, np.float32), no, ~no, obs[2],
                                                           restarted=True), state)
    assert rows["valid"][0].tolist() == [1, 1, 0, 0] and rows["obs"][0, :3, 0].tolist() == [0.0, 1.0, 2.0]
