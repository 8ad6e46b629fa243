"""Ape-X: distributed prioritized experience replay (Horgan et al., 2018), on the weights and replay planes.

Roles: `learner`s (the first leads), `replay` shards, and `actor`s on the other ranks.
  actor i   the replay actor loop (replay.actor) with epsilon_i = eps^(1 + alpha i / (N - 1)): acts on its
            node window's weights, sends n-step transitions with initial priorities to the shards, reports
            to the lead learner, pauses when the learners lag the replay ratio.
  replay    serves blocks, samples and priority updates until the learners and every actor have stopped.
  learner   once max(learning_starts, batch_size) transitions are stored, trains double DQN with dueling
            heads on prioritized batches (asking for the next one before training on one), sends back
            priorities, publishes its weights (version = updates) every `publish_every` updates, copies
            its target network every `target_update_every` updates, and stops when every actor has
            finished its share of `total_env_steps`. Several learners each sample their own batch and
            average gradients with one allreduce per update (MPI on CPU, NCCL on GPU), so their networks
            stay identical; the lead (the first) hears the actors, publishes and logs, and rides its
            progress and stop flag on the allreduce.
Defaults are CartPole-v1's (greedy return 500 in 150K env steps on 4 ranks); `Config.ATARI` is the Atari preset.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  TRANSITIONS(_SHM)      replay    actor -> replay             transitions + priorities (or the        a block is full,
                                                               outbox slot and rows), Isend            or before a pause
  SAMPLE_REQUEST         replay    learner -> replay           int64 (rows, offset, inbox slot)       before training
  SAMPLE_REPLY(_BLOCK)   replay    replay -> learner           (rows, size, total, min) [+ rows]      per request
  PRIORITIES             replay    learner -> replay           slots, generations, |td| + eps         every update
  STOP                   replay    actor, learner -> replay    empty                                  at the end
  METRICS                reports   actor -> lead learner       float64 [8] (comm.metrics)             every 0.5 s
  STOP                   reports   actor -> lead learner       empty                                  share done
  Ibcast + Bcast         weights   lead -> other hosts'        version, float32 weights               every
                                   leaders                                                            publish_every
  Ibcast                 learners  lead -> learners            int64 go (0: actors finished first)    once
  Ibarrier + Allreduce   learners  learner <-> learners        gradients + (progress, stop)           every update
  CHECKPOINT             control   lead -> actors, learners    int64 (id, env steps, flags)           checkpoint_every,
                         replay    lead -> replay                                                     signal, end
  CHECKPOINT_DONE        control   any rank -> lead            uint8: RNG state, part files written   per request
  SIGNAL                 control   any rank -> lead            int64 signal number                    once, on a signal
Checkpoints, resume and signals: drlmpi.lifecycle (the final checkpoint's request reaches the shards before the
learners' STOP, so they write everything the actors sent).
"""

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle, nets
from drlmpi import value_based as vb
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import BACKENDS, GradAllreduce
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.comm.metrics import ActorStats
from drlmpi.config import opt, require_choice, to_dict
from drlmpi.envs import is_atari
from drlmpi.nets import flat_params
from drlmpi.ops.schedules import linear
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, wait

ROLES = RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=1, serial_ok=False)
build_net, load_policy = vb.build_net, vb.load_policy  # what drlmpi eval and the benchmarks use


@dataclass
class Config(vb.ReplayConfig):
    eps_base: float = opt(0.4, "epsilon of the per-actor schedule eps^(1 + alpha i / (N - 1))")
    eps_alpha: float = opt(7.0, "alpha of the per-actor epsilon schedule")
    allreduce: str = opt("auto", "gradient allreduce between learner ranks: auto (nccl on GPU, else mpi), mpi, "
                                 "gloo, nccl")

    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): Ape-X paper values,
        # scaled to a learner on a CPU: fewer samples per env step than on CartPole (4 instead of 32)
        "batch_size": 64, "replay_ratio": 0.0625, "learning_starts": 20_000, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0}

    def check(self):
        super().check()
        require_choice(self, "allreduce", BACKENDS)


def actor_epsilon(cfg: Config, i: int, n: int) -> float:
    return cfg.eps_base ** (1 + cfg.eps_alpha * i / max(1, n - 1))


def run_learner(rt: Runtime, cfg: Config, planes, resumed: State | None) -> dict:
    device = nets.device(cfg.device)
    learners = rt.role_comm  # the learner ranks
    lead = learners.rank == 0
    n_actors = len(rt.layout.ranks("actor"))
    net = planes.net.to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    updates = 0
    if resumed:
        updates = lifecycle.restore_learner(resumed, {"online": net, "target": target}, {"adam": opt})
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=2)  # + progress, stop
    if lead:
        planes.weights.bcast(flat_params(net), updates)  # version = updates
    sampler = planes.replay.sampler(rt.gen)
    gate = vb.throttle(cfg, n_actors)
    stats = ActorStats(rt.channels.reports, n_actors, frames_per_step=4 if is_atari(cfg.env) else 1,
                       steps=resumed.env_steps if resumed else 0)  # the lead's
    waiting = vb.Stopwatch()
    if lead:
        log = RunLog(cfg.run_dir, "apex", to_dict(cfg), ["loss", "replay_size", "replay_fill", "sample_rate",
                                                          *ActorStats.COLUMNS, "learner_waiting", "learners"],
                     frames_per_step=stats.frames_per_step, world_size=rt.size, resumed=resumed)
        life = lifecycle.Lifecycle(cfg, log, CheckpointCollector(rt.channels.control, lifecycle.targets(rt, rt.rank)),
                                   resumed)
    else:
        ckpt = lifecycle.client(rt, vb.lead_learner(rt))
    frac, loss, size = 0.0, float("nan"), 0

    def row():  # the current loss and size
        return {"loss": loss, "replay_size": size, "replay_fill": round(size / cfg.buffer_size, 4),
                "sample_rate": round(log.rates[1] * cfg.batch_size * learners.size, 1), **stats.row(),
                "learner_waiting": waiting.fraction(), "learners": learners.size}

    def state():  # the lead's, for a checkpoint
        return lifecycle.snapshot("apex", cfg, log, {"env_steps": stats.steps, "updates": updates},
                                  {"online": net, "target": target}, {"adam": opt}, rt.gen, rt.who,
                                  lifecycle.layout_dict(rt))

    def hear_actors():
        stats.drain(updates, log.episode)
        log.tick(stats.steps, updates, cfg.total_env_steps, row)
        if life.signal():
            life.stop_actors(stats.steps)  # they stop and answer the final checkpoint; training ends
        life.poll()

    go = np.zeros(1, np.int64)  # the lead says whether training starts at all (0: the actors finished first)
    if lead:
        go[0] = vb.wait_for_replay(sampler, cfg, lambda: stats.all_done, hear_actors)
    wait(learners.Ibcast(go, root=0), what="the lead learner's start")
    if go[0]:
        sampler.request(cfg.batch_size)
    while go[0]:
        stop = False
        if lead:  # wait while ahead of the actors (replay ratio), unless they are done
            t0 = time.monotonic()
            while True:
                hear_actors()
                stop = stats.all_done
                if stop or not gate.learners_wait(updates, stats.steps):
                    break
                time.sleep(0.001)
            waiting.add(time.monotonic() - t0)
        else:
            ckpt.poll()
        batch = sampler.receive(linear(cfg.beta_start, 1.0, frac))
        sampler.request(cfg.batch_size)  # the shards gather the next batch while this one trains
        loss_t, td = vb.td_loss(net, target, batch.data, batch.weights, device)
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        progress, stop_sum = allreduce(np.array([stats.steps / cfg.total_env_steps, stop]) if lead else None)
        if stop_sum:
            break
        frac = float(progress)
        for g in opt.param_groups:
            g["lr"] = linear(cfg.lr, cfg.lr_final, frac)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        opt.step()
        sampler.update_priorities(batch, vb.new_priorities(td))
        updates += 1
        size = batch.size
        if updates % cfg.target_update_every == 0:
            target.load_state_dict(net.state_dict())
        if not lead:
            continue
        loss = float(loss_t.detach())
        if updates % cfg.publish_every == 0:
            planes.weights.bcast(flat_params(net), updates)
        if life.due():
            life.begin(stats.steps, state)
    if lead:  # the final checkpoint: the shards must have its request before the sampler's STOP
        life.begin(stats.steps, state, last=True)
    sampler.close()  # receives the batch still asked for, then STOP to every shard
    allreduce.close()
    weights = flat_params(net)
    summary = {"updates": updates, "weights_sha256": hashlib.sha256(weights.tobytes()).hexdigest()}
    if not lead:
        ckpt.close()
        return summary
    planes.weights.bcast(weights, updates)
    return life.close(stats.steps, updates, row(), summary)


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    """Set up the planes (collective), then run this rank's role."""
    eps = actor_epsilon(cfg, rt.layout.index(rt.rank), len(rt.layout.ranks("actor")))  # if this rank acts
    return vb.run_roles(rt, cfg, rt.layout.ranks("learner")[:1], lambda steps, share: eps, resumed,
                        learner=run_learner)
