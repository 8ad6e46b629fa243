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
                                                               returns, episodes ended, env restarts)
  CHECKPOINT, _DONE,     control   lead <-> workers            request; RNG state (comm.checkpoint)   checkpoint_every,
  SIGNAL                                                       signal number                          signal, end
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import nets
from drlmpi.actor_critic import LOSS_COLUMNS, ACConfig, build_net, collect, load_policy, loss_row, nstep_loss
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import MEET_SPIN, GradAllreduce
from drlmpi.config import opt, require_choice
from drlmpi.envs import clips_rewards, env_restarts, make_vec
from drlmpi.learner import Learner, Parts
from drlmpi.nets import flat_params
from drlmpi.nets.optim import Adam, RMSprop
from drlmpi.ops.actor_critic import Losses
from drlmpi.ops.schedules import linear
from drlmpi.runtime import RoleSpec, Runtime, wait

LAYOUT = RoleSpec(fixed=(), min_actors=1, serial_ok=True)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]


@dataclass
class Config(ACConfig):
    optimizer: str = opt("rmsprop", "rmsprop (the paper's: alpha 0.99, eps 1e-5) or adam")

    DEFAULTS: ClassVar[dict] = {"num_envs": 4, "lr": 7e-4, "lr_final": 0.0, "entropy_cost": 0.0,
                                "separate_value": True, "activation": "tanh", "orthogonal_init": True,
                                "total_env_steps": 300_000}
    ATARI: ClassVar[dict] = {"n_steps": 5, "lr": 7e-4, "entropy_cost": 0.01, "max_grad_norm": 0.5, "num_envs": 8,
                             "total_env_steps": 10_000_000}
    MINATAR: ClassVar[dict] = {"num_envs": 8}

    def check_own(self):
        require_choice(self, "optimizer", ("rmsprop", "adam"))


def learner_parts(cfg: Config, net: torch.nn.Module) -> Parts:
    """A worker's declared state: the network and its optimizer (RMSProp, alpha 0.99, eps 1e-5; or Adam)."""
    if cfg.optimizer == "adam":
        return Parts({"online": net}, {"adam": Adam(net.parameters(), lr=cfg.lr, eps=1e-5)})
    return Parts({"online": net}, {"rmsprop": RMSprop(net.parameters(), lr=cfg.lr, alpha=0.99, eps=1e-5)})


def learn(net, opt, allreduce: GradAllreduce, unroll: dict, last_obs: np.ndarray, cfg: Config, frac: float,
          control: np.ndarray) -> tuple[Losses, np.ndarray]:
    """One A2C update: the n-step advantage actor-critic loss of this worker's unroll [n_steps, num_envs] (returns
    bootstrapped from V(last_obs [E, ...])) -> backward -> one allreduce: the gradient mean over every worker and
    the sum of `control` -> clipped step at the lr of progress `frac`. Returns (losses, the control sums)."""
    losses = nstep_loss(net, unroll, last_obs, cfg)
    opt.zero_grad(set_to_none=True)
    losses.total.backward()
    sums = allreduce(control)
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    for g in opt.param_groups:
        g["lr"] = linear(cfg.lr, cfg.lr_final, frac)
    opt.step()
    return losses, sums


def run_worker(rt: Runtime, cfg: Config, planes: None, resumed: State | None) -> dict:
    """The `actor` role (a worker): collect -> learn, until total_env_steps (the lead decides the stop)."""
    workers = rt.role_comm
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    parts = learner_parts(cfg, build_net(cfg, env.observation_space, env.action_space))
    net, opt = parts.nets["online"], parts.optims[cfg.optimizer]
    learner = Learner(rt, cfg, "a2c", parts, [*LOSS_COLUMNS, "workers"], resumed, lead_rank=0, actors=[])
    allreduce = GradAllreduce(workers, list(net.parameters()), "mpi", extra=4,  # stop, returns, episodes,
                              meet_spin=MEET_SPIN)  # restarts; workers meet every update
    weights = flat_params(net)  # every worker starts from the lead's weights
    wait(workers.Ibcast(weights, root=0), what="the lead worker's first weights")
    nets.load_flat(net, weights)
    clip, per_update = clips_rewards(cfg), workers.size * cfg.num_envs * cfg.n_steps
    obs, episodes, last = env.reset(), [], {"losses": None}

    def row():  # the metrics of the last update
        return {**loss_row(last["losses"]), "workers": workers.size}

    while True:
        unroll, obs = collect(net, env, obs, cfg, clip, episodes)
        stop = learner.lead and (learner.steps + per_update >= cfg.total_env_steps or bool(learner.signal()))
        last["losses"], (stop_sum, ret_sum, n_eps, restarts) = learn(
            net, opt, allreduce, unroll, obs, cfg, learner.steps / cfg.total_env_steps,
            np.array([stop, sum(episodes), len(episodes), env_restarts()]))
        learner.env_restarts = int(restarts)  # (every worker's own count, summed)
        episodes.clear()
        learner.updates += 1
        learner.steps += per_update
        if learner.lead and n_eps:
            learner.log.episode(ret_sum / n_eps)
        if not stop_sum:
            learner.checkpoint()
        learner.poll(row)
        if stop_sum:
            break
    return learner.finish(row, allreduce, env)


ROLES = {"actor": run_worker, "serial": run_worker}  # (one rank: a worker alone)
