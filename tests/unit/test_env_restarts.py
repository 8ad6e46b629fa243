"""A crashing environment is not a crashing job: a failed env of a vector is rebuilt with a fresh seed, marked in
the step's `restarted` (no transition, its episode cut at the observation that acted), and the builders drop it;
the other envs of the vector go on."""

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
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_EXACT", "1")
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_RESET_EVERY", "5")
    monkeypatch.setitem(flaky.COUNTS, "resets", 0)
    envs.set_restart_limit(100)
    return flaky


def test_a_failing_env_is_rebuilt_alone_and_its_step_comes_back_restarted(flaky, monkeypatch):
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_EVERY", "13")
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_RESET_EVERY", "3")  # (a rebuild at one env's reset: they fall out of step)
    env = envs.make_vec(ENV, 2, seed=3)
    obs, before, failed, alone = env.reset(), envs.env_restarts(), 0, 0
    for _ in range(100):
        step = env.step(np.ones(2, np.int64))
        if step.restarted is not None:
            for e in np.flatnonzero(step.restarted):
                failed += 1
                assert step.truncated[e] and not step.terminated[e] and step.reward[e] == 0
                np.testing.assert_array_equal(step.final_obs[e], obs[e])  # cut at the observation that acted
                assert np.abs(step.obs[e]).max() <= 0.05  # its new episode's first observation
            assert len(step.episodes) == int(step.done.sum() - step.restarted.sum())  # (cuts are no episodes)
            alone += int(step.restarted.sum()) == 1  # the other env went on
        obs = step.obs
    assert failed >= 5 and alone and envs.env_restarts() - before >= failed  # (a failed reset counts too)
    env.close()


def test_more_failures_than_the_limit_end_the_job_with_the_last_one(flaky):
    envs.set_restart_limit(2)
    env = envs.make_vec(ENV, 1, seed=0)
    env.reset()
    with pytest.raises(envs.EnvFailure, match="3 environment failures within 10,000 env steps") as e:
        for _ in range(100):
            env.step(np.zeros(1, np.int64))
    assert "flaky simulator" in str(e.value.__cause__)
    envs.set_restart_limit(100)


def test_an_env_failing_on_every_reset_ends_the_job_however_slowly(flaky, monkeypatch):
    monkeypatch.setenv("DRLMPI_TEST_FLAKY_RESET_EVERY", "1")
    with pytest.raises(envs.EnvFailure, match="11 of one env in a row"):
        envs.make_vec(ENV, 1, seed=0).reset()


def test_nstep_builder_drops_the_restarted_step_and_cuts_the_episodes_before_it():
    b = NStepBuilder(1, n=3, gamma=0.5, batch=1)
    obs = [np.full((1, 2), float(i), np.float32) for i in range(4)]
    no = np.zeros(1, bool)
    for t in range(2):  # steps 0 -> 1 -> 2 with reward 1
        b.push(obs[t], np.zeros(1, np.int64), envs.Step(obs[t + 1], np.ones(1, np.float32), no, no, obs[t + 1]))
    cut = envs.Step(obs[3], np.zeros(1, np.float32), no, ~no, obs[2], restarted=~no)
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


def test_nstep_builder_drops_only_the_failed_envs_transition():
    """Two envs: env 1 fails at its third step; env 0's transitions are all kept."""
    b = NStepBuilder(2, n=1, gamma=0.5, batch=1)
    obs = [np.array([[i, 100 + i]], np.float32).reshape(2, 1) for i in range(6)]
    no = np.zeros(2, bool)
    fail = np.array([False, True])
    outs = []
    for t in range(5):
        step = envs.Step(obs[t + 1], np.ones(2, np.float32), no, fail if t == 2 else no, obs[t + 1] if t != 2 else
                         obs[t], restarted=fail if t == 2 else None)
        outs.append(b.push(obs[t], np.zeros(2, np.int64), step))
    outs.append(b.flush())
    got = np.concatenate([o["obs"][:, 0] for o in outs if o is not None])
    assert sorted(got.tolist()) == [0, 1, 2, 3, 100, 101, 103], got  # env 1's step from obs 102 is dropped


def test_sequence_builder_ends_its_sequences_at_a_restart():
    b = SequenceBuilder(1, 4, 0, 0, 0.9, envs.spaces("CartPole-v1")[0], 2)
    obs = [np.full((1, 4), float(i), np.float32) for i in range(4)]
    no, state = np.zeros(1, bool), np.zeros((1, 2, 2), np.float32)
    for t in range(2):
        assert b.push(obs[t], np.zeros(1, np.int64), envs.Step(obs[t + 1], np.ones(1, np.float32), no, no,
                                                               obs[t + 1]), state) is None
    rows = b.push(obs[2], np.zeros(1, np.int64), envs.Step(obs[3], np.zeros(1, np.float32), no, ~no, obs[2],
                                                           restarted=~no), state)
    assert rows["valid"][0].tolist() == [1, 1, 0, 0] and rows["obs"][0, :3, 0].tolist() == [0.0, 1.0, 2.0]


def test_eval_credits_each_return_to_its_own_env_when_another_was_cut():
    """Env 0 fails and env 1 ends an episode on the same step: the return is env 1's (quotas are per env)."""
    from drlmpi.evaluate import episode_returns

    class TwoEnvs:
        num_envs, calls = 2, 0

        def reset(self):
            return np.zeros((2, 1), np.float32)

        def step(self, actions):
            self.calls += 1
            both = np.ones(2, bool)
            if self.calls == 1:  # env 0 cut by a failure, env 1 ends with return 7
                return envs.Step(np.zeros((2, 1)), np.zeros(2), ~both, both, np.zeros((2, 1)), [(7.0, 3)],
                                 restarted=np.array([True, False]))
            return envs.Step(np.zeros((2, 1)), np.zeros(2), both, ~both, np.zeros((2, 1)), [(5.0, 2), (6.0, 2)])

        def close(self):
            pass

    assert episode_returns(TwoEnvs(), lambda obs: np.zeros(2), 2) == [5.0, 7.0]  # env 0's 5, env 1's 7


def test_a_failed_envs_unroll_slot_teaches_nothing():
    """Its reward is V(obs that acted), not gamma V: with discount 0 its return is V and its advantage about 0."""
    from drlmpi.actor_critic import restarted_bootstrap

    no = np.zeros(3, bool)
    step = envs.Step(np.zeros((3, 1)), np.zeros(3), no, np.array([True, True, False]), np.zeros((3, 1)),
                     restarted=np.array([True, False, False]))
    np.testing.assert_allclose(restarted_bootstrap(step, step.truncated, 0.9), [1.0, 0.9])
