"""A2C: synchronous advantage actor-critic (Mnih et al., 2016, the synchronous variant), workers allreducing.

Roles: every rank is a worker (`actor`); the first leads (logs, checkpoints, decides the stop).
  worker    steps its `num_envs` envs `n_steps` steps with the current weights, computes the n-step advantage
            actor-critic gradient on that unroll [n_steps, num_envs] (returns bootstrapped from V of the last
            obs, and from V(final obs) where an episode was truncated), and averages it with every other
            worker in one allreduce per update; every worker then applies the same clipped RMSProp step, so
            all hold the same weights without a parameter server or a weights plane.
Why no learner rank: with a learner, the workers would send unrolls and wait for new weights every update, a
round trip of the whole unroll plus the weights, while the allreduce moves only the gradient (the same size as
the weights) and lets every worker compute on its own unroll at once; the learner's work would also be serial.
Defaults are CartPole-v1's (greedy return 500 on 4 ranks); `Config.ATARI` is the Atari preset.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  Ibarrier + Allreduce   workers   worker <-> workers          gradients + (stop, sum of episode      every update
                                                               returns, episodes ended)
  CHECKPOINT, _DONE,     control   lead <-> workers            request; RNG state (comm.checkpoint)   checkpoint_every,
  SIGNAL                                                       signal number                          signal, end
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle, nets
from drlmpi.actor_critic import ACConfig, build_net, collect, load_policy, nstep_loss
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import GradAllreduce
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.config import opt, to_dict
from drlmpi.envs import clips_rewards, make_vec
from drlmpi.errors import UserError
from drlmpi.nets import flat_params
from drlmpi.ops.schedules import linear
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, wait

ROLES = RoleSpec(fixed=(), min_actors=1, serial_ok=True)
__all__ = ["ROLES", "Config", "build_net", "load_policy", "run"]


@dataclass
class Config(ACConfig):
    optimizer: str = opt("rmsprop", "rmsprop (the paper's: alpha 0.99, eps 1e-5) or adam")

    ATARI: ClassVar[dict] = {"n_steps": 5, "lr": 7e-4, "entropy_cost": 0.01, "max_grad_norm": 0.5,
                             "total_env_steps": 10_000_000}

    def check(self):
        super().check()
        if self.optimizer not in ("rmsprop", "adam"):
            raise UserError(f"config: optimizer must be rmsprop or adam, got {self.optimizer!r}")


def make_optimizer(cfg: Config, params) -> torch.optim.Optimizer:
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, eps=1e-5)
    return torch.optim.RMSprop(params, lr=cfg.lr, alpha=0.99, eps=1e-5)


def run_worker(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    workers = rt.role_comm
    lead = workers.rank == 0
    lifecycle.seed_rank(rt, resumed)
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    net = build_net(cfg, env.observation_space, env.action_space)
    opt = make_optimizer(cfg, net.parameters())
    updates, steps = 0, 0
    if resumed:
        updates = lifecycle.restore_learner(resumed, {"online": net}, {cfg.optimizer: opt})
        steps = resumed.env_steps
    allreduce = GradAllreduce(workers, list(net.parameters()), "mpi", extra=3)  # stop, returns, episodes
    weights = flat_params(net)  # every worker starts from the lead's weights
    wait(workers.Ibcast(weights, root=0), what="the lead worker's first weights")
    nets.load_flat(net, weights)
    clip = clips_rewards(cfg)
    per_update = workers.size * cfg.num_envs * cfg.n_steps
    if lead:
        log = RunLog(cfg.run_dir, "a2c", to_dict(cfg), ["loss", "pg_loss", "baseline_loss", "entropy", "workers"],
                     frames_per_step=4 if env.atari else 1, world_size=rt.size, resumed=resumed)
        life = lifecycle.Lifecycle(cfg, log, CheckpointCollector(rt.channels.control, lifecycle.targets(rt, rt.rank))
                                   if rt.size > 1 else None, resumed)
    else:
        ckpt = lifecycle.client(rt, 0)

    def state():  # the lead's, for a checkpoint
        return lifecycle.snapshot("a2c", cfg, log, {"env_steps": steps, "updates": updates}, {"online": net},
                                  {cfg.optimizer: opt}, rt.gen, rt.who, lifecycle.layout_dict(rt))

    def row():  # the metrics of the last update
        return {"loss": float(losses.total.detach()), "pg_loss": float(losses.pg.detach()),
                "baseline_loss": float(losses.baseline.detach()), "entropy": float(losses.entropy.detach()),
                "workers": workers.size}

    obs, episodes, losses = env.reset(), [], None
    while True:
        frac = steps / cfg.total_env_steps
        u, obs = collect(net, env, obs, cfg, clip, episodes)
        losses = nstep_loss(net, u, obs, cfg)
        opt.zero_grad(set_to_none=True)
        losses.total.backward()
        stop = lead and (steps + per_update >= cfg.total_env_steps or bool(life.signal()))
        stop_sum, ret_sum, n_eps = allreduce(np.array([stop, sum(episodes), len(episodes)]))
        episodes.clear()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        for g in opt.param_groups:
            g["lr"] = linear(cfg.lr, cfg.lr_final, frac)
        opt.step()
        updates += 1
        steps += per_update
        if lead:
            if n_eps:
                log.episode(ret_sum / n_eps)
            log.tick(steps, updates, cfg.total_env_steps, row)
            if not stop_sum and life.due():
                life.begin(steps, state)
            life.poll()
        else:
            ckpt.poll()
        if stop_sum:
            break
    summary = lifecycle.close_learner(net, updates, allreduce, env, ckpt=None if lead else ckpt)
    if not lead:
        return summary
    life.begin(steps, state, last=True, final_row=(updates, row()))
    return life.close(steps, updates, summary)


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    return run_worker(rt, cfg, resumed)
