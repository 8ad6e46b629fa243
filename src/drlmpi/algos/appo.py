"""APPO: asynchronous PPO, IMPALA's architecture with PPO's clipped surrogate on V-trace-corrected advantages and
several passes over each batch (as Sample Factory and RLlib define it), on the weights and trajectory planes.

Roles: `learner`s (the first leads) and `actor`s on the other ranks.
  actor     IMPALA's actor (algos.impala.run_actor): the newest weights from its node window before every unroll,
            `n_steps` steps of its `num_envs` envs, the unroll (with the behaviour policy: logits, or the
            log-probabilities of Gaussian actions) into a slot of its outbox for learner i mod L.
  learner   assembles batches of `batch_size` unrolls ([n_steps + 1, batch_size * num_envs]) and learns from each
            in `epochs` passes of `minibatches` minibatches of whole unrolls (actor_critic.run_unroll_learner with
            `minibatches`), one update each: V-trace targets from the learner's current values and its log ratio
            to the behaviour policy (rho-bar = c-bar = 1), advantages r_t + gamma_t v_{t+1} - V(x_t) (normalised
            over the minibatch), and the clipped surrogate of the ratio pi / mu to the behaviour policy, the value
            loss to the V-trace targets and the entropy bonus. Several learners average gradients with one
            allreduce per update; `max_policy_lag` drops unrolls acted on weights too old, as in IMPALA. Updates
            (the weights' version, `publish_every`, `max_policy_lag`) count minibatch steps: epochs x minibatches a
            batch.
Defaults are CartPole-v1's (greedy return 475+ on 4 ranks).

Messages: IMPALA's, every one (algos.impala's table: TRAJECTORY_SHM, TRAJECTORY / _ACK and STOP on the trajectories
channel, METRICS and STOP on reports, the weights' Ibcast + Bcast across hosts, the learners' Ibarrier + Allreduce,
CHECKPOINT, _DONE and SIGNAL on control), but the learners' allreduce runs once per minibatch, `epochs` x
`minibatches` times a batch, instead of once.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drlmpi.ac_config import ACConfig, PolicyLag, Surrogate, UnrollBatch, model_name
from drlmpi.algos import impala
from drlmpi.checkpoint import State
from drlmpi.config import AllreduceOption, Hparam
from drlmpi.errors import UserError
from drlmpi.runtime import RoleSpec, Runtime

if TYPE_CHECKING:
    from drlmpi.ops.ppo import PPOLosses

LAYOUT = RoleSpec(fixed=(("learner", 1),), min_actors=1, serial_ok=False)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]  # noqa: F822 (__getattr__)


def __getattr__(name: str):  # build_net, learner_parts, load_policy: actor_critic's, imported on first use
    return model_name(__name__, name)


@dataclass
class Config(AllreduceOption, PolicyLag, UnrollBatch, Surrogate, ACConfig):
    """minibatches: of whole unrolls."""

    DEFAULTS: ClassVar[dict] = {"epochs": 2, "minibatches": 2, "num_envs": 2, "n_steps": 5, "batch_size": 4,
                                "lr": 7e-4, "lr_final": 0.0,
                                "entropy_cost": 0.0, "separate_value": True, "activation": "tanh",
                                "orthogonal_init": True, "total_env_steps": 200_000}
    ATARI: ClassVar[dict] = {"lr": 2.5e-4, "entropy_cost": 0.01, "max_grad_norm": 0.5, "batch_size": 8,
                             "num_envs": 8, "n_steps": 20, "clip": 0.1, "total_env_steps": 50_000_000}
    MINATAR: ClassVar[dict] = {"num_envs": 8, "n_steps": 20, "lr": 4e-3,  # IMPALA's lr; entropy 0.03 keeps Freeway
                               "entropy_cost": 0.03}  # exploring at that lr (docs/minatar.md)
    SEARCH: ClassVar[dict] = {"clip": Hparam(("clip",), 0.05, 0.5)}

    def check_own(self):
        if self.minibatches > self.batch_size * self.num_envs:
            raise UserError(f"config: minibatches ({self.minibatches}) must be at most the unrolls of a batch "
                            f"(batch_size * num_envs = {self.batch_size * self.num_envs})")


def learn(net, batch: dict, cfg: Config, device) -> "PPOLosses":
    """APPO's loss on a minibatch of unrolls {field: [T + 1, N, ...]} (row T: the bootstrap observation) acted by
    the behaviour policy mu: V-trace targets vs from the learner's values and log ratio log pi - log mu, the
    advantages r_t + gamma_t vs_{t+1} - V(x_t) (the importance weight is the surrogate's ratio, not in the
    advantage), then PPO's clipped surrogate, value and entropy losses over the T * N steps."""
    import torch

    from drlmpi.actor_critic import behaviour_log_prob, forward_unrolls, policy_terms
    from drlmpi.ops import vtrace
    from drlmpi.ops.ppo import clipped_loss, normalized

    T = cfg.n_steps
    b, head, values = forward_unrolls(net, batch, T, device)  # [T + 1, N, A], [T + 1, N]
    log_pi, entropy = policy_terms(net, head[:T], b["action"][:T])
    log_mu = behaviour_log_prob(b, T)
    reward, discount, v = b["reward"][:T], b["discount"][:T], values[:T].detach()
    vt = vtrace.from_importance_weights(log_pi.detach() - log_mu, discount, reward, v, values[T].detach(), 1.0, 1.0)
    adv = reward + discount * torch.cat([vt.vs[1:], values[T:].detach()]) - v
    return clipped_loss(log_pi.flatten(), log_mu.flatten(), normalized(adv.flatten()), values[:T].flatten(),
                        v.flatten(), vt.vs.flatten(), entropy.flatten(), cfg.clip, 0.0, cfg.baseline_cost,
                        cfg.entropy_cost)


def minibatches(cfg: Config, gen: np.random.Generator):
    """split(batch {field: [rows, N, ...]}) -> `epochs` passes of `minibatches` minibatches of whole unrolls (a
    random split of the N columns each pass); for None, as many Nones."""
    def split(batch: dict | None) -> list:
        if batch is None:
            return [None] * (cfg.epochs * cfg.minibatches)
        n = batch["discount"].shape[1]
        return [{k: v[:, idx] for k, v in batch.items()} for _ in range(cfg.epochs)
                for idx in np.array_split(gen.permutation(n), cfg.minibatches)]

    return split


setup = impala.setup  # the lead learner's weights, the actors' unrolls: IMPALA's planes
run_actor = impala.run_actor  # IMPALA's actor


def run_learner(rt: Runtime, cfg: Config, planes, resumed: State | None) -> dict:
    """The `learner` role: actor_critic.run_unroll_learner around `learn`, each batch in `epochs` x
    `minibatches` updates, on the unrolls of its share of the actors."""
    from drlmpi.actor_critic import run_unroll_learner

    gen = np.random.default_rng(rt.gen.integers(2**63))
    return run_unroll_learner(rt, cfg, planes, resumed, "appo", learn, rt.layout.ranks("actor"),
                              minibatches(cfg, gen))


ROLES = {"actor": run_actor, "learner": run_learner}
