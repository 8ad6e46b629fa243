"""GA3C: A3C with the model taken away from the actors (Babaeizadeh et al., 2017), on the inference, trajectory and
weights planes.

Roles: a `learner` (the paper's trainers), `inference` ranks (its predictors, spread over the hosts) and `actor`s.
  actor i   holds no model: steps its `num_envs` envs with the actions its predictor answers, one round trip per
            vector step (comm.inference; each actor is served by a predictor on its own host where there is one).
            Reports to the learner; stops at its share of `total_env_steps` or at the learner's LAST request.
  inference batches the observations of its actors (answering at `inference_batch` requests or
            `inference_timeout_ms` after the first), samples actions from its copy of the model, and assembles
            each actor's `n_steps` unroll in place in a slot of its trajectory outbox; a full unroll goes to the
            learner. It reloads the model from its host's window whenever the learner has published a newer one.
            With an LSTM core (`lstm` > 0) it keeps every env's state and stores it at each unroll's start.
  learner   the unroll learner IMPALA's runs too (actor_critic.run_unroll_learner) with this file's `learn`, which has
            no V-trace: batches of `batch_size` unrolls train the n-step advantage actor-critic loss as the acting
            policy's own, which is GA3C's
            known weakness: the policy lag (the learner's version minus the version that acted, in the metrics)
            biases the gradient. Publishes the weights every `publish_every` updates.
Each predictor writes its rates to `<run_dir>/inference-<i>.json` at the end (batches/s, predictions/s, mean
batch size). Defaults are CartPole-v1's; `Config.ATARI` is the Atari preset. An actor imports no torch (no model:
~130 MiB less a rank): the learner's and predictors' functions import what they use of it.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel       from -> to              payload                                when
  INFER_SHM / _REPLY_SHM inference     actor <-> predictor     int64 (k, 0) / (version, k); the       every vector
                                                               request, reply in the actor's segment   step
  INFER_REQUEST / _REPLY inference     actor <-> predictor     request block / reply block (other      every vector
                                                               host)                                   step
  STOP                   inference     actor -> predictor      empty                                  share done
  TRAJECTORY_SHM         trajectories  predictor -> learner    int64 (outbox slot, 0) (same host)     an unroll is full
  TRAJECTORY / _ACK      trajectories  predictor <-> learner   the unroll block / empty (other host)  an unroll is full
  STOP                   trajectories  predictor -> learner    empty                                  its actors done
  METRICS, STOP          reports       actor -> learner        float64 [9] (comm.metrics); empty      every 0.5 s; end
  Ibcast + Bcast         weights       learner -> other hosts' version, float32 weights               publish_every
                                       leaders
  Ibarrier + Bcast       rt.world      learner -> all          JSON: the parameter count (the         set-up
                                                               weights plane's size; actors build none)
  CHECKPOINT, _DONE,     control       learner <-> other ranks request; RNG state (comm.checkpoint)   checkpoint_every,
  SIGNAL                                                       signal number                          signal, end
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from drlmpi import lifecycle
from drlmpi.ac_config import (
    PolicyLag,
    UnrollBatch,
    UnrollPlanes,
    initial_net_unless_actor,
    model_name,
    require_discrete,
)
from drlmpi.central import CentralConfig, answer_batch, central_fields, run_remote_actor
from drlmpi.checkpoint import State
from drlmpi.comm.control import bcast_json
from drlmpi.comm.inference import Assembler, InferencePlane, assign
from drlmpi.comm.metrics import ActorReport
from drlmpi.comm.trajectories import SLOTS, TrajectoryPlane
from drlmpi.comm.weights import WeightsPlane, first_weights
from drlmpi.config import AllreduceOption
from drlmpi.envs import spaces
from drlmpi.runtime import RoleSpec, Runtime
from drlmpi.runtime.context import startup_timeout
from drlmpi.runtime.layout import share_of
from drlmpi.runtime.wait import PEER_TIMEOUT

if TYPE_CHECKING:
    from drlmpi.ops.actor_critic import Losses

LAYOUT = RoleSpec(fixed=(("learner", 1), ("inference", 1)), min_actors=1, serial_ok=False)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]  # noqa: F822 (__getattr__)


def __getattr__(name: str):  # build_net, learner_parts, load_policy: actor_critic's, imported on first use
    return model_name(__name__, name)


@dataclass
class Config(AllreduceOption, PolicyLag, UnrollBatch, CentralConfig):
    """n_steps is GA3C's t_max; the predictors act on the published weights."""

    ATARI: ClassVar[dict] = {"lr": 3e-4, "entropy_cost": 0.01, "max_grad_norm": 40.0, "num_envs": 8, "n_steps": 5,
                             "batch_size": 8, "total_env_steps": 50_000_000}


def learn(net, batch: dict, cfg: Config, device) -> "Losses":
    """GA3C's loss on a batch of unrolls {field: [T + 1, N, ...]} (row T: the bootstrap observation), as if the
    predictors had acted with the learner's own policy (no correction for the policy lag, as in the paper): the
    n-step advantage actor-critic loss on bootstrapped returns. The caller steps (learners_step)."""
    import torch

    from drlmpi.actor_critic import forward_unrolls, policy_terms
    from drlmpi.ops import vtrace
    from drlmpi.ops.actor_critic import actor_critic_loss

    T = cfg.n_steps
    b, logits, values = forward_unrolls(net, batch, T, device)  # [T + 1, N, A], [T + 1, N]
    reward = b["reward"][:T]
    returns = vtrace.from_importance_weights(torch.zeros_like(reward), b["discount"][:T], reward,
                                             values[:T].detach(), values[T].detach())  # log rhos 0: n-step returns
    return actor_critic_loss(*policy_terms(net, logits[:T], b["action"][:T]), values[:T], returns.vs,
                             returns.pg_advantages, cfg.baseline_cost, cfg.entropy_cost)


def validate(cfg: Config) -> None:
    """Rank 0, before the job starts: Discrete actions (the predictors sample categorical ones)."""
    require_discrete(cfg, "ga3c")


@dataclass
class Planes(UnrollPlanes):
    """+ the inference plane (actors <-> predictors); the trajectories go predictors -> learner."""

    inference: InferencePlane | None = None
    server_of: dict[int, int] | None = None  # actor rank -> its predictor's rank

    def close(self) -> None:
        UnrollPlanes.close(self)
        self.inference.free()


def setup(rt: Runtime, cfg: Config) -> Planes:
    """Collective: the weights, inference and trajectory planes; the initial network on the learner and the
    predictors (an actor builds none: the learner tells every rank the weights plane's size)."""
    obs_space, act_space = spaces(cfg.env)
    net = initial_net_unless_actor(rt, cfg, obs_space, act_space)
    lead = rt.layout.ranks("learner")[0]
    n = bcast_json(rt.world, sum(p.numel() for p in net.parameters()) if rt.rank == lead else None, root=lead,
                   what="the learner's parameter count (its torch import)", timeout=PEER_TIMEOUT)
    request, reply, unroll, once = central_fields(cfg, obs_space, act_space)
    actors, servers = rt.layout.ranks("actor"), rt.layout.ranks("inference")
    server_of = assign(actors, servers, rt.layout.host_ids())
    most = max(list(server_of.values()).count(s) for s in servers)
    weights = WeightsPlane.create(rt.channels.weights, rt.node, n, rt.layout.ranks("learner")[:1])
    inference = InferencePlane.create(rt.channels.inference, rt.node, request, reply, actor=rt.role == "actor")
    traj = TrajectoryPlane.create(rt.channels.trajectories, rt.node, unroll, cfg.n_steps,
                                  actor=rt.role == "inference", slots=most + SLOTS, once=once)
    return Planes(weights, traj, net, inference, server_of)


def run_actor(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    actors, lead = rt.layout.ranks("actor"), rt.layout.ranks("learner")[0]
    i = rt.layout.index(rt.rank)
    run_remote_actor(rt, cfg, planes.inference.client(planes.server_of[rt.rank], i),
                     ActorReport(rt.channels.reports, lead, i), lifecycle.client(rt, lead),
                     share_of(cfg.total_env_steps, i, len(actors)),
                     share_of(resumed.env_steps if resumed else 0, i, len(actors)))


def run_inference(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    """A predictor: batches its actors' observations through its copy of the model (reloaded whenever the learner
    published a newer one), answers them, and assembles their unrolls for the learner."""
    import torch

    from drlmpi.nets import load_flat

    mine = [a for a, s in planes.server_of.items() if s == rt.rank]
    i, lead = rt.layout.index(rt.rank), rt.layout.ranks("learner")[0]
    net, window = planes.net.requires_grad_(False), planes.weights.window
    version, flat = first_weights(window, startup_timeout(rt.size), "the learner's first weights")
    load_flat(net, flat)
    ckpt = lifecycle.client(rt, lead)
    writer = planes.trajectories.writer(lead, i)
    server = planes.inference.server(mine, cfg.inference_batch, cfg.inference_timeout_ms / 1000)
    asm = Assembler(len(mine), cfg.n_steps, acquire=lambda j: writer.acquire(on_wait=ckpt.poll),
                    emit=lambda j, slot, v: writer.post(slot, v), discard=lambda j, slot: writer.discard(slot))
    states = [net.initial_state(cfg.num_envs) for _ in mine]
    t0 = time.monotonic()
    while (js := server.collect(on_idle=ckpt.poll)) is not None:
        ckpt.poll()  # also when requests never let gather idle
        if window.version > version:
            version = window.read(flat)
            load_flat(net, flat)
        answer_batch(net, server, js, asm, version, states, cfg, torch.device("cpu"))
    seconds = time.monotonic() - t0
    server.close()
    asm.close()
    writer.close(on_wait=ckpt.poll)  # the learner took every unroll; then STOP
    ckpt.close()
    if cfg.run_dir and mine:
        predictions = server.requests * cfg.num_envs  # one per env step
        rates = {"actors": len(mine), "seconds": seconds, "batches": server.batches, "requests": server.requests,
                 "predictions": predictions, "unrolls": asm.emitted, "batches_per_s": server.batches / seconds,
                 "predictions_per_s": predictions / seconds,
                 "mean_batch_requests": server.requests / max(1, server.batches)}
        Path(cfg.run_dir, f"inference-{i}.json").write_text(json.dumps(rates, indent=1))


def run_learner(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> dict:
    """The unroll learner (actor_critic.run_unroll_learner) with `learn`, on the predictors' unrolls."""
    from drlmpi.actor_critic import run_unroll_learner

    return run_unroll_learner(rt, cfg, planes, resumed, "ga3c", learn, rt.layout.ranks("inference"))


ROLES = {"actor": run_actor, "inference": run_inference, "learner": run_learner}
