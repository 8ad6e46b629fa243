"""SEED RL: the learner is the inference server (Espeholt et al., 2020), trained with V-trace, on the inference plane.

Roles: `learner`s (the first leads) and `actor`s on the other ranks.
  actor i   holds no model: steps its `num_envs` envs with the actions learner i mod L answers, one round trip
            per vector step (comm.inference: the node segment and a doorbell on the learner's host, buffer
            messages elsewhere). Reports to the lead; stops at its share of `total_env_steps` or at the lead's
            LAST checkpoint request.
  learner   serves its actors: batches their observations (answering at `inference_batch` requests or
            `inference_timeout_ms` after the first), samples actions from the network it trains, and assembles
            each actor's `n_steps` unroll in place in a pool of unrolls on the learner (with an LSTM core it keeps
            every env's state, stored at each unroll's start, so the actors never see it). Once it holds
            `batch_size` full unrolls it copies them into one batch [n_steps + 1, batch_size * num_envs] and trains
            V-trace (IMPALA's loss, rho-bar = c-bar = 1): the unrolls lag by at most the updates made while they were
            assembled. Several learners each serve their own actors and average gradients with one allreduce per
            update (a learner whose actors have all stopped contributes nothing). The lead logs and checkpoints.
Defaults are CartPole-v1's; `Config.ATARI` is the Atari preset. An actor imports no torch (no model: ~130 MiB
less a rank): the learner's functions import what they use of it.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel       from -> to              payload                                when
  INFER_SHM / _REPLY_SHM inference     actor <-> its learner   int64 (k, 0) / (version, k); the       every vector
                                                               request, reply in the actor's segment   step
  INFER_REQUEST / _REPLY inference     actor <-> its learner   request block / reply block (other      every vector
                                                               host)                                   step
  STOP                   inference     actor -> its learner    empty                                  share done
  METRICS, STOP          reports       actor -> lead learner   float64 [9] (comm.metrics); empty      every 0.5 s; end
  Ibarrier + Allreduce   learners      learner <-> learners    gradients + (the lead's progress,      every update
                                                               had a batch, summed policy lag)
  CHECKPOINT, _DONE,     control       lead <-> other ranks    request; RNG state (comm.checkpoint)   checkpoint_every,
  SIGNAL                                                       signal number                          signal, end
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drlmpi import lifecycle
from drlmpi.ac_config import UnrollBatch, VTraceClip, initial_net_unless_actor, model_name, require_discrete
from drlmpi.central import CentralConfig, answer_batch, central_fields, run_remote_actor
from drlmpi.checkpoint import State
from drlmpi.comm.inference import Assembler, InferencePlane
from drlmpi.comm.metrics import ActorReport
from drlmpi.config import AllreduceOption
from drlmpi.envs import spaces
from drlmpi.learner import Learner
from drlmpi.runtime import RoleSpec, Runtime
from drlmpi.runtime.layout import share_of

if TYPE_CHECKING:
    import torch

    from drlmpi.ops.actor_critic import Losses

LAYOUT = RoleSpec(fixed=(("learner", 1),), min_actors=1, serial_ok=False)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]  # noqa: F822 (__getattr__)


def __getattr__(name: str):  # build_net, learner_parts, load_policy: actor_critic's, imported on first use
    return model_name(__name__, name)


@dataclass
class Config(AllreduceOption, VTraceClip, UnrollBatch, CentralConfig):
    DEFAULTS: ClassVar[dict] = {"num_envs": 4, "n_steps": 5, "batch_size": 2, "lr": 7e-4, "lr_final": 0.0,
                                "entropy_cost": 0.0, "separate_value": True, "activation": "tanh",
                                "orthogonal_init": True, "total_env_steps": 400_000}
    ATARI: ClassVar[dict] = {"lr": 6e-4, "entropy_cost": 0.01, "max_grad_norm": 40.0, "num_envs": 8, "n_steps": 20,
                             "batch_size": 8, "total_env_steps": 50_000_000}
    MINATAR: ClassVar[dict] = {"num_envs": 16, "n_steps": 20, "batch_size": 4}


def learn(net, batch: dict, cfg: Config, device) -> "Losses":
    """SEED's loss is IMPALA's (algos.impala.learn: V-trace, rho-bar = c-bar = 1 by default) on the unrolls
    {field: [T + 1, N, ...]} this learner assembled itself; behaviour `logits` are its own at acting time."""
    from drlmpi.algos import impala

    return impala.learn(net, batch, cfg, device)


def validate(cfg: Config) -> None:
    """Rank 0, before the job starts: Discrete actions (the learner, serving inference, samples categorical
    ones)."""
    require_discrete(cfg, "seed")


class UnrollPool:
    """The unrolls a learner assembles in place ({field: [T + 1, E, ...]}, one-row fields [1, E, ...]): `acquire`
    a free one, `emit` marks it full, `take` copies `batch` full ones into the training batch (the one copy) and
    frees them. `count` must cover every actor's partial unroll plus the full ones waiting."""

    def __init__(self, fields: dict, unroll: int, once: tuple[str, ...], count: int, batch: int):
        rows = {k: 1 if k in once else unroll + 1 for k in fields}
        self.bufs = [{k: np.zeros((rows[k], *s), d) for k, (s, d) in fields.items()} for _ in range(count)]
        self.batch = {k: np.zeros((rows[k], batch * s[0], *s[1:]), d) for k, (s, d) in fields.items()}
        self.B, self.E = batch, next(iter(fields.values()))[0][0]
        self.free, self.ready = list(range(count)), []  # buffer indices; (index, version that acted first)

    def acquire(self, j: int) -> tuple[int, dict]:
        k = self.free.pop()
        return k, self.bufs[k]

    def emit(self, j: int, k: int, version: int) -> None:
        self.ready.append((k, version))

    def discard(self, j: int, k: int) -> None:
        self.free.append(k)

    def take(self) -> tuple[dict, np.ndarray]:
        """The next batch {field: [T + 1, B * E, ...]} and the version that acted first in each of its unrolls."""
        taken, self.ready = self.ready[: self.B], self.ready[self.B :]
        for b, (k, _) in enumerate(taken):
            cols = slice(b * self.E, (b + 1) * self.E)
            for name, v in self.bufs[k].items():
                self.batch[name][:, cols] = v
            self.free.append(k)
        return self.batch, np.array([v for _, v in taken], np.int64)


@dataclass
class Planes:
    inference: InferencePlane
    fields: tuple  # central_fields: request, reply, unroll fields, one-row fields
    net: "torch.nn.Module | None"  # the initial network, the same on every learner (an actor has none)

    def close(self) -> None:
        self.inference.free()


def setup(rt: Runtime, cfg: Config) -> Planes:
    """Collective: the inference plane (actors' segments on every host); the initial network on the learners."""
    obs_space, act_space = spaces(cfg.env)
    net = initial_net_unless_actor(rt, cfg, obs_space, act_space)
    fields = central_fields(cfg, obs_space, act_space)
    inference = InferencePlane.create(rt.channels.inference, rt.node, fields[0], fields[1], actor=rt.role == "actor")
    return Planes(inference, fields, net)


def run_actor(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    actors, learners = rt.layout.ranks("actor"), rt.layout.ranks("learner")
    i = rt.layout.index(rt.rank)
    run_remote_actor(rt, cfg, planes.inference.client(learners[i % len(learners)], i),
                     ActorReport(rt.channels.reports, learners[0], i), lifecycle.client(rt, learners[0]),
                     share_of(cfg.total_env_steps, i, len(actors)),
                     share_of(resumed.env_steps if resumed else 0, i, len(actors)))


def serve(server, pool: UnrollPool, asm: Assembler, net, states: list, learner: Learner, cfg: Config, device,
          row) -> bool:
    """Act for this learner's actors until a batch of unrolls is full: True; False once every one has stopped."""
    while len(pool.ready) < cfg.batch_size:
        js = server.collect(on_idle=lambda: learner.poll(row))
        if js is None:
            return False
        answer_batch(net, server, js, asm, learner.updates, states, cfg, device)
    return True


def run_learner(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> dict:
    """The `learner` role: serve the actors until a batch is full -> learn -> allreduce and step
    (comm.allreduce.learners_step) -> the lead logs and checkpoints; until no learner has a batch."""
    from drlmpi import nets
    from drlmpi.actor_critic import LOSS_COLUMNS, learner_parts, loss_row
    from drlmpi.comm.allreduce import GradAllreduce, learners_step

    device = nets.device(cfg.device)
    learners = rt.role_comm
    mine = [a for k, a in enumerate(rt.layout.ranks("actor")) if k % learners.size == learners.rank]
    parts = learner_parts(cfg, planes.net.to(device))
    net, opt = parts.nets["online"], parts.optims["rmsprop"]
    learner = Learner(rt, cfg, "seed", parts, [*LOSS_COLUMNS, "learner_lag", "inference_batch_mean", "learners"],
                      resumed)
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=3)  # progress, has, lag
    server = planes.inference.server(mine, cfg.inference_batch, cfg.inference_timeout_ms / 1000)
    _, _, fields, once = planes.fields
    pool = UnrollPool(fields, cfg.n_steps, once, 2 * len(mine) + cfg.batch_size, cfg.batch_size)
    asm = Assembler(len(mine), cfg.n_steps, pool.acquire, pool.emit, pool.discard)
    states = [net.initial_state(cfg.num_envs, device) for _ in mine]
    last = {"losses": None, "lag": 0.0}

    def row():
        return {**loss_row(last["losses"]), "learner_lag": last["lag"],
                "inference_batch_mean": server.requests * cfg.num_envs / max(1, server.batches),
                "learners": learners.size}

    serving = True
    while True:
        serving = serving and serve(server, pool, asm, net, states, learner, cfg, device, row)
        has, lag = len(pool.ready) >= cfg.batch_size, 0.0
        opt.zero_grad(set_to_none=True)
        if has:
            batch, versions = pool.take()
            last["losses"] = learn(net, batch, cfg, device)
            last["losses"].total.backward()
            lag = float((learner.updates - versions).mean())
        lag_sum = learners_step(net, opt, allreduce, learner.progress, has, lag, cfg)
        if lag_sum is None:
            break  # no learner has a batch: every actor has stopped
        learner.updates += 1
        last["lag"] = lag_sum / learners.size  # the learners' mean (one that had no batch counts 0)
        learner.checkpoint()
        learner.poll(row)
    return learner.finish(row, server, asm, allreduce)


ROLES = {"actor": run_actor, "learner": run_learner}
