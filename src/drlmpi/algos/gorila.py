"""GORILA: General Reinforcement Learning Architecture (Nair et al., 2015), on the weights and replay planes.

Roles: `learner`s (the first leads), `ps` shards (the parameter vector in contiguous slices), `replay`
shards, and `actor`s on the other ranks.
  actor     the replay actor loop (replay.actor), epsilon annealed linearly over its share of steps as in
            DQN, acting on the parameter server's node window; pauses when the parameter server's update
            count (the window's version) lags the replay ratio.
  learner   keeps a local copy of the parameters, refreshed from the window every `sync_every` updates,
            and a target network refreshed from it every `target_update_every` updates; computes
            double-DQN gradients on prioritized batches (asking for the next one before training on
            one), clips them and sends each ps shard its slice without waiting for the result: learners
            run asynchronously. Sends priorities back to the replay shards. The lead learner hears the
            actors, logs, leads the checkpoints (its networks and counters; the parameters and their
            optimizer state come from the ps shards' parts), and tells the other learners the env step
            count and when to stop.
  ps        applies every gradient slice it receives with its own optimizer (Adam by default; the paper's
            AdaGrad and RMSProp too) and a learning rate annealed over the expected number of updates,
            and publishes the slice (version = updates applied) into the node windows.
  replay    the prioritized replay plane (the paper's global replay, here prioritized: alpha=0 is uniform).
Throttle: like Ape-X, `replay_ratio` parameter-server updates per env step, within a band, on both sides.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  TRANSITIONS(_SHM), SAMPLE_REQUEST, SAMPLE_REPLY(_BLOCK), PRIORITIES, STOP
                         replay    as in Ape-X (algos/apex.py)
  METRICS, STOP          reports   actor -> lead learner       float64 [8] / empty                    0.5 s / done
  GRADIENT               params    learner -> ps shard         float32 gradient slice, Isend          every update
  STOP                   params    learner -> ps shard         empty                                  learner done
  Ibcast + Bcast         weights   ps shard -> other hosts'    version, float32 slice                 every
                                   leaders                                                            publish_every
  CONTROL                control   lead -> other learners      float64 (env steps, stop), Isend       each lead poll
  STOP                   control   ps shard -> lead learner    int64 updates applied                  at the end
  CHECKPOINT, CHECKPOINT_DONE, SIGNAL
                         control   as in Ape-X; the ps shards get their requests on `params` and write
                                   their slice and optimizer state as part files (param_server)
"""

import copy
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from mpi4py import MPI

from drlmpi import lifecycle, nets, param_server
from drlmpi import value_based as vb
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.comm.metrics import ActorStats
from drlmpi.comm.ps import isend_gradient, isend_stop
from drlmpi.comm.tags import Tag
from drlmpi.config import opt, to_dict
from drlmpi.envs import is_atari
from drlmpi.errors import CheckpointError, UserError
from drlmpi.nets import flat_params, load_flat
from drlmpi.ops.optim import OPTIMIZERS
from drlmpi.ops.schedules import linear
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, poll, wait, wait_all
from drlmpi.runtime.context import startup_timeout

ROLES = RoleSpec(fixed=(("learner", 1), ("ps", 1), ("replay", 1)), min_actors=1, serial_ok=False)
build_net, load_policy = vb.build_net, vb.load_policy  # what drlmpi eval and the benchmarks use


@dataclass
class Config(vb.AnnealedEpsilon, vb.ReplayConfig):
    optimizer: str = opt("adam", "parameter-server optimizer: adam, adagrad (the paper's), rmsprop")
    lr_final: float = opt(1e-5, "learning rate reached linearly after replay_ratio * total_env_steps updates")
    sync_every: int = opt(1, "learner updates between refreshes of its parameters from the parameter server")
    publish_every: int = opt(1, "parameter-server updates between publications to the windows")

    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): DQN-paper values,
        # with fewer samples per env step (2) for a learner on a CPU
        "batch_size": 32, "replay_ratio": 0.0625, "learning_starts": 20_000, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0}
    POSITIVE: ClassVar[tuple[str, ...]] = vb.ReplayConfig.POSITIVE + ("sync_every",)

    def check(self):
        super().check()
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"config: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")


def run_ps(rt: Runtime, cfg: Config, planes, resumed: State | None) -> None:
    expected = cfg.replay_ratio * cfg.total_env_steps  # updates the whole run should make

    def lr(updates: int) -> float:
        return linear(cfg.lr, cfg.lr_final, updates / expected) if expected > 0 else cfg.lr

    init, start = flat_params(planes.net), None
    if resumed:
        start = param_server.restore(resumed, len(init))
        if start is None:
            raise CheckpointError(f"{resumed.path}: no parameter-server parts")
        init = start["w"]
    opt_kwargs = {"eps": 1e-5} if cfg.optimizer != "adagrad" else {}
    param_server.run_ps(rt, planes.weights, init, vb.lead_learner(rt), len(rt.layout.ranks("learner")),
                        cfg.optimizer, lr, cfg.publish_every, cfg.run_dir, start, **opt_kwargs)


def run_learner(rt: Runtime, cfg: Config, planes, resumed: State | None) -> dict | None:
    device = nets.device(cfg.device)
    control_ch, window = rt.channels.control, planes.weights.window
    learners, ps_ranks, n_actors = rt.layout.ranks("learner"), rt.layout.ranks("ps"), len(rt.layout.ranks("actor"))
    lead = rt.rank == learners[0]
    net = planes.net.to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    flat = np.empty(window.n, np.float32)

    def pull(into) -> int:  # the parameter server's vector, into a network
        v = window.read(flat)
        load_flat(into, flat)
        return v

    poll(lambda: True if window.published() else None, startup_timeout(rt.size), "the parameter server's weights")
    pull(net)
    pull(target)
    updates = 0
    if resumed:  # the parameters come from the parameter server's parts; the target network from the lead's
        updates = lifecycle.restore_learner(resumed, {"target": target}, {})
    sampler = planes.replay.sampler(rt.gen)
    gate = vb.throttle(cfg, n_actors, planes.rows)
    grads = [np.zeros(window.n, np.float32) for _ in range(2)]  # double-buffered gradient sends
    grad_reqs: list[list] = [[], []]
    stats = ActorStats(rt.channels.reports, n_actors, frames_per_step=4 if is_atari(cfg.env) else 1,
                       steps=resumed.env_steps if resumed else 0)
    control = np.array([stats.steps, 0], np.float64)  # env steps, stop: the lead's word (Tag.CONTROL)
    control_bufs = [np.zeros(2, np.float64) for _ in learners]  # lead: one message in flight per learner
    control_reqs = [MPI.REQUEST_NULL] * len(learners)
    waiting = vb.Stopwatch()

    def isend_control(j: int) -> None:
        control_bufs[j][:] = control
        control_reqs[j] = control_ch.Isend(control_bufs[j], dest=learners[j], tag=Tag.CONTROL)

    if lead:
        log = RunLog(cfg.run_dir, "gorila", to_dict(cfg), ["loss", "replay_size", "replay_fill", "sample_rate",
                                                            "ps_updates", *ActorStats.COLUMNS, "learner_waiting"],
                     frames_per_step=stats.frames_per_step, world_size=rt.size, resumed=resumed)
        life = lifecycle.Lifecycle(cfg, log, CheckpointCollector(control_ch, lifecycle.targets(rt, rt.rank)), resumed)
    else:
        ckpt = lifecycle.client(rt, learners[0])
    loss, size = float("nan"), 0

    def state():  # the lead's, for a checkpoint (the parameters themselves are in the ps parts)
        return lifecycle.snapshot("gorila", cfg, log, {"env_steps": stats.steps, "updates": updates,
                                                       "ps_updates": window.version},
                                  {"online": net, "target": target}, {}, rt.gen, rt.who, lifecycle.layout_dict(rt))

    def listen():  # lead: hear the actors and tell the other learners; others: hear the lead
        if lead:
            stats.drain(window.version, log.episode)
            if life.signal():
                life.stop_actors(stats.steps)  # they stop and answer the final checkpoint; training ends
            life.poll()
            control[:] = stats.steps, stats.all_done
            for j in range(1, len(learners)):
                if control_reqs[j].Test():
                    isend_control(j)
            log.tick(stats.steps, updates, cfg.total_env_steps, row)
        else:
            ckpt.poll()
            while control_ch.Iprobe(learners[0], Tag.CONTROL):
                control_ch.Recv(control, source=learners[0], tag=Tag.CONTROL)

    def row():
        return {"loss": loss, "replay_size": size, "replay_fill": round(size / cfg.buffer_size, 4),
                "sample_rate": round(log.rates[1] * cfg.batch_size * len(learners), 1), "ps_updates": window.version,
                **stats.row(), "learner_waiting": waiting.fraction()}

    vb.wait_for_replay(sampler, cfg, lambda: bool(control[1]), listen)
    sampler.request(cfg.batch_size)  # close() receives it if training never starts
    while True:
        listen()
        if control[1]:
            break
        if gate.learners_wait(window.version, control[0]):  # the learners are ahead of the actors
            t0 = time.monotonic()
            time.sleep(0.001)
            waiting.add(time.monotonic() - t0)
            continue
        if updates % cfg.sync_every == 0:
            pull(net)
        batch = sampler.receive(linear(cfg.beta_start, 1.0, control[0] / cfg.total_env_steps))
        sampler.request(cfg.batch_size)  # the shards gather the next batch while this one trains
        loss_t, td = vb.td_loss(net, target, batch.data, batch.weights, device)
        net.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        turn = updates % 2
        wait_all(grad_reqs[turn], what="previous gradient sends")
        grads[turn][:] = torch.nn.utils.parameters_to_vector([p.grad for p in net.parameters()]).cpu().numpy()
        grad_reqs[turn] = isend_gradient(rt.channels.params, grads[turn], ps_ranks, window.bounds)  # async
        sampler.update_priorities(batch, vb.new_priorities(td))
        updates += 1
        loss, size = float(loss_t.detach()), batch.size
        if updates % cfg.target_update_every == 0:
            pull(target)
        if lead and life.due():
            life.begin(stats.steps, state)
    if lead:  # the final checkpoint's request: the shards must have it before the STOPs of the sampler and below
        life.ask_last(stats.steps)
    sampler.close()  # receives the batch still asked for, then STOP to every replay shard
    wait_all(grad_reqs[0] + grad_reqs[1], what="gradient sends")
    isend_stop(rt.channels.params, ps_ranks)
    if lead:  # the last word is stop, said once (messages from one sender with one tag arrive in order)
        for j in range(1, len(learners)):
            wait(control_reqs[j], what="control message")
            if not control_bufs[j][1]:  # that learner has not been told to stop yet
                isend_control(j)
        wait_all(control_reqs, what="control messages")
    if not lead:
        ckpt.close()
        return None
    versions = param_server.final_updates(rt, life, window)
    pull(net)
    life.begin(stats.steps, state, last=True, final_row=(updates, row()))
    return {**life.close(stats.steps, updates), "updates": min(versions)}


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    """Set up the planes (collective), then run this rank's role; the ps shards publish the weights."""
    return vb.run_roles(rt, cfg, rt.layout.ranks("ps"), lambda steps, share: cfg.epsilon(steps / share), resumed,
                        learner=run_learner, ps=run_ps)
