"""DQN on one rank: double DQN, dueling heads, n-step returns, a target network, prioritized replay.

The single-process baseline every distributed algorithm is measured against.
Vector observations get an MLP, Atari frames the Nature CNN. Defaults are tuned for
CartPole-v1 (greedy return 500 within 100K env steps): at gamma 0.99 its greedy policies drift
off the track (episodes end at |x| > 2.4 after 250-450 steps), a cost too far ahead to see; a
long horizon (0.998) plus two updates per 4 env steps fixes both the drift and the precision
it needs. `Config.ATARI` holds DQN-paper values for ALE/ envs.

Roles: one `serial` rank acts and learns.
"""

import copy
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import checkpoint, lifecycle, nets
from drlmpi.checkpoint import State
from drlmpi.config import opt, to_dict
from drlmpi.envs import make_vec
from drlmpi.nets import greedy
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, PrioritizedReplay, transition_fields
from drlmpi.replay.actor import clips_rewards
from drlmpi.replay.plane import restore_shard, save_part
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime
from drlmpi.value_based import AnnealedEpsilon, ValueConfig, build_net, load_policy, new_priorities, td_loss

ROLES = RoleSpec(single_process=True)
__all__ = ["ROLES", "Config", "build_net", "load_policy", "run"]


@dataclass
class Config(AnnealedEpsilon, ValueConfig):
    gamma: float = opt(0.998, "discount")
    learning_starts: int = opt(2_000, "env steps collected before the first update")
    replay_ratio: float = opt(0.5, "updates per env step")

    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): DQN-paper values
        "gamma": 0.99, "batch_size": 32, "replay_ratio": 0.25, "learning_starts": 20_000, "lr": 1e-4,
        "lr_final": 1e-5, "target_update_every": 2500}


def learn(net, target, opt, replay: PrioritizedReplay, cfg: Config, beta: float, device) -> float:
    """One prioritized double-DQN update: sample -> loss -> sgd -> priorities; returns the loss."""
    batch, idx, weights = replay.sample(cfg.batch_size, beta)
    loss, td = td_loss(net, target, batch, weights, device)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    opt.step()
    replay.update_priorities(idx, new_priorities(td))
    return float(loss.detach())


def run_serial(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict:
    """Act and learn on this rank until total_env_steps (or a signal); returns the final summary."""
    device = nets.device(cfg.device)
    torch.manual_seed(rt.torch_seed())
    rng = rt.gen
    lifecycle.restore_rng(resumed, rt.who, rng)
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rng.integers(2**31)))
    clip = clips_rewards(cfg)
    net = build_net(cfg, env.observation_space, env.action_space).to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    replay = PrioritizedReplay(cfg.buffer_size, transition_fields(env.observation_space), cfg.alpha, rng)
    steps = updates = 0
    if resumed:
        updates = lifecycle.restore_learner(resumed, {"online": net, "target": target}, {"adam": opt})
        steps = resumed.env_steps
        restore_shard(replay, resumed, 0, 1)
    nstep = NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma)
    log = RunLog(cfg.run_dir, "dqn", to_dict(cfg), ["loss", "epsilon", "replay_size"],
                 frames_per_step=4 if env.atari else 1, resumed=resumed)
    life = lifecycle.Lifecycle(cfg, log, None, resumed)

    def state():
        return lifecycle.snapshot("dqn", cfg, log, {"env_steps": steps, "updates": updates},
                                  {"online": net, "target": target}, {"adam": opt}, rng, rt.who,
                                  lifecycle.layout_dict(rt))

    def replay_part(ckpt_id: int, env_steps: int) -> dict:  # written here, before the main file
        if not cfg.checkpoint_replay:
            return {}
        rel = checkpoint.part_file(ckpt_id, "replay-0")
        return {"replay-0": {"file": rel, "sha256": save_part(life.dir / rel, replay, 0, 1)}}

    obs = env.reset()
    debt, loss, eps = 0.0, float("nan"), cfg.epsilon(steps / cfg.total_env_steps)
    while steps < cfg.total_env_steps and not life.signal():
        frac = steps / cfg.total_env_steps
        eps = cfg.epsilon(frac)
        actions = greedy(net, obs, device)
        explore = rng.random(cfg.num_envs) < eps
        actions[explore] = rng.integers(0, env.action_space.n, explore.sum())
        step = env.step(actions)
        if clip:  # for learning only: episode returns were summed unclipped by the env
            step.reward = np.clip(step.reward, -1, 1)
        steps += cfg.num_envs
        for ret, _ in step.episodes:
            log.episode(ret)
        transitions = nstep.push(obs, actions, step)
        if transitions is not None:
            replay.add(transitions)
        obs = step.obs
        if steps >= cfg.learning_starts and replay.size >= cfg.batch_size:
            debt += cfg.num_envs * cfg.replay_ratio
            for g in opt.param_groups:
                g["lr"] = linear(cfg.lr, cfg.lr_final, frac)
            while debt >= 1:
                loss = learn(net, target, opt, replay, cfg, linear(cfg.beta_start, 1.0, frac), device)
                updates += 1
                debt -= 1
                if updates % cfg.target_update_every == 0:
                    target.load_state_dict(net.state_dict())
        metrics = {"loss": loss, "epsilon": eps, "replay_size": replay.size}
        log.tick(steps, updates, cfg.total_env_steps, metrics)
        if life.due():
            life.begin(steps, state, parts=replay_part)
    life.begin(steps, state, last=True, parts=replay_part,
               final_row=(updates, {"loss": loss, "epsilon": eps, "replay_size": replay.size}))
    env.close()
    return life.close(steps, updates)


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict:
    return run_serial(rt, cfg, resumed)
