"""DQN on one rank: double DQN, dueling heads, n-step returns, a target network, prioritized replay.

The single-process baseline every distributed algorithm is measured against.
Vector observations get an MLP, Atari frames the Nature CNN. Defaults are tuned for
CartPole-v1 (greedy return 500 within 100K env steps): at gamma 0.99 its greedy policies drift
off the track (episodes end at |x| > 2.4 after 250-450 steps), a cost too far ahead to see; a
long horizon (0.998) plus two updates per 4 env steps fixes both the drift and the precision
it needs. `Config.ATARI` holds DQN-paper values for ALE/ envs.

Roles: one `serial` rank acts and learns.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from drlmpi import checkpoint, nets
from drlmpi.checkpoint import State
from drlmpi.envs import clips_rewards, make_vec
from drlmpi.learner import Learner
from drlmpi.nets import greedy
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, PrioritizedReplay, transition_fields
from drlmpi.replay.plane import restore_shard, save_part
from drlmpi.runtime import RoleSpec, Runtime
from drlmpi.value_based import (
    AnnealedEpsilon,
    ValueConfig,
    build_net,
    learner_parts,
    load_policy,
    new_priorities,
    td_loss,
)

LAYOUT = RoleSpec(single_process=True)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]


@dataclass
class Config(AnnealedEpsilon, ValueConfig):
    DEFAULTS: ClassVar[dict] = {"gamma": 0.998, "replay_ratio": 0.5}
    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): DQN-paper values
        "gamma": 0.99, "batch_size": 32, "replay_ratio": 0.25, "learning_starts": 20_000, "lr": 1e-4,
        "lr_final": 1e-5, "target_update_every": 2500}


def learn(net, target, opt, replay: PrioritizedReplay, cfg: Config, beta: float, device) -> float:
    """One prioritized double-DQN update: sample [batch_size] -> loss -> sgd -> priorities; returns the loss."""
    batch, idx, weights = replay.sample(cfg.batch_size, beta)
    loss, td = td_loss(net, target, batch, weights, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    opt.step()
    replay.update_priorities(idx, new_priorities(td))
    return float(loss.detach())


def train(learner: Learner, replay: PrioritizedReplay, cfg: Config, frac: float, debt: float, device) -> tuple:
    """The updates owed (replay_ratio per env step), with the lr and beta of progress `frac` and the target copied
    every target_update_every updates; returns (debt left, the last loss or None)."""
    net, target, opt = learner.parts.nets["online"], learner.parts.nets["target"], learner.parts.optims["adam"]
    for g in opt.param_groups:
        g["lr"] = linear(cfg.lr, cfg.lr_final, frac)
    loss = None
    while debt >= 1:
        loss = learn(net, target, opt, replay, cfg, linear(cfg.beta_start, 1.0, frac), device)
        learner.updates += 1
        debt -= 1
        if learner.updates % cfg.target_update_every == 0:
            target.load_state_dict(net.state_dict())
    return debt, loss


def act(net, env, obs, eps: float, rng: np.random.Generator, device, clip: bool):
    """One epsilon-greedy vector step: (actions [E], the env's Step, rewards clipped for learning if `clip`)."""
    actions = greedy(net, obs, device)
    explore = rng.random(len(actions)) < eps
    actions[explore] = rng.integers(0, env.action_space.n, explore.sum())
    step = env.step(actions)
    if clip:  # for learning only: episode returns were summed unclipped by the env
        step.reward = np.clip(step.reward, -1, 1)
    return actions, step


def run_serial(rt: Runtime, cfg: Config, planes: None, resumed: State | None) -> dict:
    """Act and learn on this rank until total_env_steps (or a signal); returns the final summary."""
    device = nets.device(cfg.device)
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    replay = PrioritizedReplay(cfg.buffer_size, transition_fields(env.observation_space), cfg.alpha, rt.gen)
    if resumed:
        restore_shard(replay, resumed, 0, 1)

    def replay_part(ckpt_id: int, env_steps: int) -> dict:  # this rank's part file, written before the main file
        if not cfg.checkpoint_replay:
            return {}
        rel = checkpoint.part_file(ckpt_id, "replay-0")
        return {"replay-0": {"file": rel, "sha256": save_part(Path(cfg.run_dir, "checkpoints", rel), replay, 0, 1)}}

    parts = learner_parts(cfg, build_net(cfg, env.observation_space, env.action_space).to(device))
    learner = Learner(rt, cfg, "dqn", parts, ["loss", "epsilon", "replay_size"], resumed, lead_rank=0, actors=[],
                      part_files=replay_part)
    nstep, clip = NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma), clips_rewards(cfg)
    obs, debt = env.reset(), 0.0
    m = {"loss": float("nan"), "epsilon": cfg.epsilon(learner.progress), "replay_size": replay.size}
    while learner.steps < cfg.total_env_steps and not learner.signal():
        frac = learner.steps / cfg.total_env_steps
        m["epsilon"] = cfg.epsilon(frac)
        actions, step = act(parts.nets["online"], env, obs, m["epsilon"], rt.gen, device, clip)
        learner.steps += cfg.num_envs
        for ret, _ in step.episodes:
            learner.log.episode(ret)
        if (transitions := nstep.push(obs, actions, step)) is not None:
            replay.add(transitions)
        obs = step.obs
        if learner.steps >= cfg.learning_starts and replay.size >= cfg.batch_size:
            debt, loss = train(learner, replay, cfg, frac, debt + cfg.num_envs * cfg.replay_ratio, device)
            m["loss"] = m["loss"] if loss is None else loss
        m["replay_size"] = replay.size
        learner.poll(lambda: m)
        learner.checkpoint()
    env.close()
    return learner.finish(lambda: m)


ROLES = {"serial": run_serial}
