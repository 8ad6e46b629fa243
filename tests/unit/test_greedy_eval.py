"""The lead learner's greedy evaluation during training (evaluate.GreedyEval): the same returns as `drlmpi eval` of
the same weights, at eval_every env steps, in slices that never pause the learner and within its time budget."""

import math
import time

import numpy as np
import torch

from drlmpi import config, envs
from drlmpi.algos import dqn
from drlmpi.evaluate import GreedyEval, episode_returns
from drlmpi.learner import Parts
from drlmpi.nets import state_arrays


def evaluator(**sets):
    cfg = config.build(dqn.Config, None, [f"{k}={v}" for k, v in sets.items()], env="CartPole-v1")
    torch.manual_seed(0)
    obs_space, act_space = envs.spaces(cfg.env)
    net = dqn.build_net(cfg, obs_space, act_space)
    return cfg, net, GreedyEval(cfg, "dqn", Parts({"online": net}))


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
    env = envs.make_vec(cfg.env, 8, seed=GreedyEval.SEED)
    want = episode_returns(env, dqn.load_policy(cfg, weights, env), 10)
    assert ev.row() == {"eval_return": float(np.mean(want)), "eval_env_steps": 1003}
    assert ev.next_at == 2000
    ev.poll(1500)
    assert ev.run is None  # the next one at 2,000
    ev.poll(4100)
    assert ev.run is not None and ev.next_at == 5000


def test_it_never_pauses_the_learner_and_keeps_to_its_share_of_the_time():
    _, _, ev = evaluator(eval_every=1, eval_episodes=16)
    ev.poll(1)
    longest, t_begin = 0.0, time.perf_counter()
    while ev.run is not None:
        t0 = time.perf_counter()
        ev.poll(1)
        longest = max(longest, time.perf_counter() - t0)
        time.sleep(0.001)  # the learner's own work between polls
    elapsed = time.perf_counter() - t_begin
    # one slice and one last vector step (2 ms and well under 1 ms here), with a margin for a shared machine; the
    # evaluation itself took 10 times the time it used
    assert longest < 0.1 and longest < elapsed / 10, (longest, elapsed)
    assert ev.spent <= GreedyEval.BUDGET * elapsed + 0.1, (ev.spent, elapsed)
    assert ev.row()["eval_return"] > 0
