"""The lead learner's greedy evaluation during training (evaluate.GreedyEval): the same returns as `drlmpi eval` of
the same weights, at eval_every env steps, in slices that never pause the learner and within its time budget."""

import math
import time

import gymnasium as gym
import numpy as np
import torch

from drlmpi import config, envs
from drlmpi.algos import dqn
from drlmpi.evaluate import EVAL_SEED, GreedyEval, episode_returns
from drlmpi.learner import Parts
from drlmpi.nets import state_arrays


def evaluator(**sets):
    cfg = config.build(dqn.Config, None, [f"{k}={v}" for k, v in sets.items()], env="CartPole-v1")
    torch.manual_seed(0)
    obs_space, act_space = envs.spaces(cfg.env)
    net = dqn.build_net(cfg, obs_space, act_space)
    return cfg, net, GreedyEval.make(cfg, "dqn", Parts({"online": net}))


def test_it_returns_what_drlmpi_eval_returns_for_the_same_weights_at_its_seed():
    cfg, net, ev = evaluator(eval_every=1000, eval_episodes=10)
    ev.poll(999)
    assert ev.run is None and math.isnan(ev.row()["eval_return"])  # not yet
    ev.poll(1003)
    weights = {"online": {k: v.copy() for k, v in state_arrays(net).items()}}
    with torch.no_grad():
        for p in net.parameters():  # training goes on: the evaluation plays the weights of its start
            p.add_(1.0)
    while ev.run is not None:
        ev.poll(1003)
        time.sleep(0.0005)
    env = envs.make_vec(cfg.env, 8, seed=EVAL_SEED)
    want = episode_returns(env, dqn.load_policy(cfg, weights, env), 10)
    assert ev.row() == {"eval_return": float(np.mean(want)), "eval_env_steps": 1003}
    assert ev.next_at == 2000
    ev.poll(1500)
    assert ev.run is None  # the next one at 2,000
    ev.poll(4100)
    assert ev.run is not None and ev.next_at == 5000


def test_it_never_pauses_the_learner_and_keeps_to_its_share_of_the_time():
    _, _, ev = evaluator(eval_every=1, eval_episodes=200)
    t_begin, longest, total = time.perf_counter(), 0.0, 0.0
    ev.poll(1)
    while ev.run is not None:
        t0 = time.thread_time()  # (this thread's CPU time: a descheduled moment on a shared machine does not count)
        ev.poll(1)
        longest = max(longest, time.thread_time() - t0)
        total += time.thread_time() - t0
        time.sleep(0.001)  # the learner's own work between polls
    elapsed = time.perf_counter() - t_begin
    # one slice (2 ms) and one last vector step (well under 1 ms) at most, against about 0.1 s of evaluation
    assert longest < 0.01 and total > 10 * longest, (longest, total)
    assert ev.spent <= GreedyEval.BUDGET * elapsed + 0.05, (ev.spent, elapsed)
    assert ev.row()["eval_return"] > 0


def test_a_resumed_run_keeps_the_grid_and_training_draws_the_same_random_numbers():
    _, _, ev = evaluator(eval_every=1000)
    resumed = GreedyEval.make(ev.cfg, "dqn", ev.parts, steps=2500)
    assert resumed.next_at == 3000
    torch.manual_seed(7)
    resumed.poll(3001)  # an evaluation begins: its policy's net is built under a forked generator
    assert resumed.run is not None
    after = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(after, torch.rand(3))


def test_an_algorithm_without_a_module_or_load_policy_trains_without_evaluations(capsys):
    cfg, net, _ = evaluator()
    assert GreedyEval.make(cfg, "my_algo", Parts({"online": net})) is None
    assert "no greedy evaluation during training" in capsys.readouterr().err


class Broken(gym.Env):
    """CartPole's spaces; every step raises."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(4, np.float32), {}

    def step(self, action):
        raise RuntimeError("broken simulator")


def test_its_envs_failures_are_not_trainings_and_a_broken_one_drops_the_evaluation(capsys):
    gym.register("BrokenCartPole-v1", entry_point=Broken, max_episode_steps=500)
    cfg = config.build(dqn.Config, None, ["eval_every=10", "eval_episodes=2"], env="BrokenCartPole-v1")
    net = dqn.build_net(cfg, Broken.observation_space, Broken.action_space)
    ev = GreedyEval.make(cfg, "dqn", Parts({"online": net}))
    before, deadline = envs.env_restarts(), time.monotonic() + 30
    ev.poll(10)
    while ev.run is not None and time.monotonic() < deadline:  # (11 failures of an env in a row end it)
        time.sleep(0.002)
        ev.poll(10)
    err = capsys.readouterr().err
    assert envs.env_restarts() == before and "greedy evaluation: BrokenCartPole-v1 raised" in err
    assert "greedy evaluation at 10 env steps dropped" in err and ev.run is None
    assert math.isnan(ev.row()["eval_return"])
