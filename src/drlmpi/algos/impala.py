"""IMPALA: actors with local model copies send unrolls to learners, which correct the policy lag with V-trace
(Espeholt et al., 2018), on the weights and trajectory planes.

Roles: `learner`s (the first leads) and `actor`s on the other ranks.
  actor i   reads the newest weights from its node window before every unroll, steps its `num_envs` envs
            `n_steps` steps sampling from the policy, writes the unroll (obs, actions, rewards, discounts, its
            behaviour logits, the version that acted) in place into a slot of its outbox and rings learner
            i mod L (comm.trajectories; a buffer message when that learner is on another host); it waits politely
            for a free slot when the learner is behind. Reports to the lead learner; stops at its share of
            `total_env_steps` or at the lead's LAST checkpoint request.
  learner   assembles batches of `batch_size` unrolls from its actors ([n_steps + 1, batch_size * num_envs]),
            computes V-trace targets and advantages with its current network (rho-bar = c-bar = 1), and trains
            the policy gradient, baseline and entropy losses. Several learners average gradients with one
            allreduce per update (a learner whose actors have all stopped contributes nothing and the mean is
            over the others); the lead publishes the weights every `publish_every` updates, hears the actors,
            logs and checkpoints. Training ends when no learner has a batch left.
Defaults are CartPole-v1's (greedy return 500 on 4 ranks); `Config.ATARI` is the Atari preset.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel       from -> to              payload                                when
  TRAJECTORY_SHM         trajectories  actor -> its learner    int64 (outbox slot, 0); the unroll in  an unroll is full
                                                               the slot (same host)
  TRAJECTORY / _ACK      trajectories  actor <-> its learner   the unroll block / empty (other host)  an unroll is full
  STOP                   trajectories  actor -> its learner    empty                                  share done
  METRICS, STOP          reports       actor -> lead learner   float64 [9] (comm.metrics); empty      every 0.5 s; end
  Ibcast + Bcast         weights       lead -> other hosts'    version, float32 weights               publish_every
                                       leaders
  Ibarrier + Allreduce   learners      learner <-> learners    gradients + (the lead's progress,      every update
                                                               had a batch, unrolls dropped)
  CHECKPOINT, _DONE,     control       lead <-> other ranks    request; RNG state (comm.checkpoint)   checkpoint_every,
  SIGNAL                                                       signal number                          signal, end
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drlmpi import lifecycle
from drlmpi.ac_config import (
    ACConfig,
    PolicyLag,
    UnrollBatch,
    UnrollPlanes,
    VTraceClip,
    initial_net_unless_actor,
    model_name,
)
from drlmpi.acting import actor_policy, acts_without_torch, behaviour_field, param_count, unroll
from drlmpi.checkpoint import State
from drlmpi.comm.metrics import ActorReport
from drlmpi.comm.trajectories import TrajectoryPlane
from drlmpi.comm.weights import WeightsPlane, first_weights
from drlmpi.config import AllreduceOption
from drlmpi.envs import clips_rewards, make_vec, spaces
from drlmpi.runtime import RoleSpec, Runtime
from drlmpi.runtime.context import startup_timeout
from drlmpi.runtime.layout import share_of

if TYPE_CHECKING:
    from drlmpi.ops.actor_critic import Losses

LAYOUT = RoleSpec(fixed=(("learner", 1),), min_actors=1, serial_ok=False)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]  # noqa: F822 (__getattr__)


def __getattr__(name: str):  # build_net, learner_parts, load_policy: actor_critic's, imported on first use
    return model_name(__name__, name)


@dataclass
class Config(AllreduceOption, VTraceClip, PolicyLag, UnrollBatch, ACConfig):
    DEFAULTS: ClassVar[dict] = {"num_envs": 2, "n_steps": 5, "lr": 7e-4, "lr_final": 0.0, "entropy_cost": 0.0,
                                "separate_value": True, "activation": "tanh", "orthogonal_init": True,
                                "total_env_steps": 400_000}
    ATARI: ClassVar[dict] = {"lr": 6e-4, "entropy_cost": 0.01, "max_grad_norm": 40.0, "batch_size": 8,
                             "num_envs": 8, "n_steps": 20, "total_env_steps": 50_000_000}
    MINATAR: ClassVar[dict] = {"num_envs": 8, "n_steps": 20, "batch_size": 1,  # one unroll an update keeps
                               "lr": 4e-3}  # the learner level with 3 actors on 2 cores (BENCHMARKS: MinAtar)


def learn(net, batch: dict, cfg: Config, device) -> "Losses":
    """IMPALA's loss on a batch of unrolls {field: [T + 1, N, ...]} (row T: the bootstrap observation) acted by
    the behaviour policy (its logits [T, N, A], or its log-probabilities [T, N] of Gaussian actions): V-trace
    targets vs and policy-gradient advantages from the log ratio of the target policy's (the learner's) and the
    behaviour's log-probabilities, then the policy gradient, baseline and entropy losses. The caller steps
    (learners_step)."""
    from drlmpi.actor_critic import behaviour_log_prob, forward_unrolls, policy_terms
    from drlmpi.ops import vtrace
    from drlmpi.ops.actor_critic import actor_critic_loss

    T = cfg.n_steps
    b, head, values = forward_unrolls(net, batch, T, device)  # [T + 1, N, A], [T + 1, N]
    log_pi, entropy = policy_terms(net, head[:T], b["action"][:T])
    vt = vtrace.from_importance_weights(log_pi.detach() - behaviour_log_prob(b, T), b["discount"][:T],
                                        b["reward"][:T], values[:T].detach(), values[T].detach(), *cfg.vtrace_clip())
    return actor_critic_loss(log_pi, entropy, values[:T], vt.vs, vt.pg_advantages, cfg.baseline_cost,
                             cfg.entropy_cost)


Planes = UnrollPlanes  # the lead learner's weights, the actors' unrolls


def setup(rt: Runtime, cfg: Config) -> Planes:
    """Collective: the weights plane (written by the lead learner) and the trajectory plane; the initial network on
    the learners, and on the actors that act with it (images: not acting.acts_without_torch)."""
    obs_space, act_space = spaces(cfg.env)
    net = initial_net_unless_actor(rt, cfg, obs_space, act_space, not acts_without_torch(cfg, obs_space.shape))
    E = cfg.num_envs
    fields = {"obs": ((E, *obs_space.shape), obs_space.dtype), "reward": ((E,), np.float32),
              "discount": ((E,), np.float32), **behaviour_field(E, act_space)}
    n = param_count(cfg, obs_space, act_space, net)
    weights = WeightsPlane.create(rt.channels.weights, rt.node, n, rt.layout.ranks("learner")[:1])
    traj = TrajectoryPlane.create(rt.channels.trajectories, rt.node, fields, cfg.n_steps, actor=rt.role == "actor")
    return Planes(weights, traj, net)


def run_actor(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    actors, learners = rt.layout.ranks("actor"), rt.layout.ranks("learner")
    i = rt.layout.index(rt.rank)
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    policy = actor_policy(rt, cfg, env.observation_space, env.action_space, planes.net)
    window = planes.weights.window
    version, flat = first_weights(window, startup_timeout(rt.size), "the learners' first weights")
    policy.load(flat)
    writer = planes.trajectories.writer(learners[i % len(learners)], i)
    report = ActorReport(rt.channels.reports, learners[0], i)
    ckpt = lifecycle.client(rt, learners[0])
    clip = clips_rewards(cfg)
    share = share_of(cfg.total_env_steps, i, len(actors))
    steps = share_of(resumed.env_steps if resumed else 0, i, len(actors))
    obs, episodes = env.reset(), []
    while steps < share:
        ckpt.poll()
        if ckpt.last:
            break
        if window.version > version:
            version = window.read(flat)
            policy.load(flat)
        slot, u = writer.acquire(on_wait=ckpt.poll)
        _, obs = unroll(policy, env, obs, cfg, clip, episodes, out=u)
        u["obs"][cfg.n_steps] = obs  # the bootstrap observation
        writer.post(slot, version)
        steps += cfg.num_envs * cfg.n_steps
        report.step(cfg.num_envs * cfg.n_steps, episodes, version)
        episodes.clear()
        report.maybe_post()
    writer.close(on_wait=ckpt.poll)  # the learner took every unroll; then STOP
    report.close()
    ckpt.close()
    env.close()


def run_learner(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> dict:
    """The `learner` role: actor_critic.run_unroll_learner around `learn`, on the unrolls of its share of the
    actors."""
    from drlmpi.actor_critic import run_unroll_learner

    return run_unroll_learner(rt, cfg, planes, resumed, "impala", learn, rt.layout.ranks("actor"))


ROLES = {"actor": run_actor, "learner": run_learner}
