"""Ape-X: distributed prioritized experience replay (Horgan et al., 2018), on the weights and replay planes.

Roles: `learner`s (rank 0 leads), `replay` shards, and `actor`s on the other ranks.
  actor i   steps a vector of envs with epsilon_i = eps^(1 + alpha i / (N - 1)); reads the learner's weights
            from its node window every `weight_sync_every` steps (their version tells the learner's update
            count: an actor pauses when the learner lags `replay_ratio`); builds n-step transitions, gives each an
            initial priority |TD| from its local network, and sends them to the shards in blocks; reports env
            steps, episode returns, frames/s and the weights version that acted to the lead learner
            (Tag.METRICS), and says when it is done (Tag.STOP).
  replay    serves blocks, samples and priority updates until the learner and every actor have stopped.
  learner   once `learning_starts` transitions are stored, trains double DQN with dueling heads on
            prioritized batches (asking for the next one before training on one), sends back priorities,
            publishes its weights every `publish_every` updates, copies its target network every
            `target_update_every` updates, and stops when every actor has finished its share of `total_env_steps`.
            Several learners each sample their own batch and average gradients with one allreduce per
            update (comm.allreduce: MPI on CPU, NCCL on GPU), so their networks stay identical; the
            lead (the first) talks to the actors, publishes and logs, and rides its progress and stop
            flag on the allreduce. An update is one synchronous step of all learners.
Messages: every send and receive below names its Tag; bulk data never travels pickled.
"""

import copy
import hashlib
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import nets
from drlmpi.comm.allreduce import BACKENDS, GradAllreduce
from drlmpi.comm.metrics import ActorReport, ActorStats
from drlmpi.comm.replay import ReplaySampler, ReplayWriter
from drlmpi.comm.weights import NodeWeights, WeightsPush
from drlmpi.config import Common, opt, to_dict
from drlmpi.envs import is_atari, make_vec, spaces
from drlmpi.errors import UserError
from drlmpi.nets import QNetwork, flat_params, greedy, load_arrays, load_flat, q_values, state_arrays
from drlmpi.ops.qlearning import actor_priority, double_dqn_td, weighted_huber
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, PrioritizedReplay, transition_fields
from drlmpi.replay.shard import node_segments, serve
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, context, poll, wait

ROLES = RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=1, serial_ok=False)
PRIORITY_EPS = 1e-6
ACTOR_BATCH = 16  # vector steps an actor's n-step builder decides at once (numpy cost per step shrinks with it)


@dataclass
class Config(Common):
    num_envs: int = opt(4, "environments per actor")
    buffer_size: int = opt(100_000, "replay capacity in n-step transitions, split evenly over the shards")
    batch_size: int = opt(128, "transitions per update")
    lr: float = opt(6e-4, "Adam learning rate at the start")
    lr_final: float = opt(1e-5, "learning rate reached linearly at the end of training")
    gamma: float = opt(0.99, "discount")
    n_step: int = opt(3, "n of the n-step return")
    learning_starts: int = opt(2_000, "transitions stored before the first update")
    replay_ratio: float = opt(0.25, "updates per env step: the learner waits when ahead, actors when the learner "
                                    "lags (0 lets both run free)")
    target_update_every: int = opt(250, "updates between copies of the online net to the target net")
    publish_every: int = opt(10, "updates between weight publications to the actors")
    weight_sync_every: int = opt(50, "actor steps (of its env vector) between weight reads")
    eps_base: float = opt(0.4, "epsilon of the per-actor schedule eps^(1 + alpha i / (N - 1))")
    eps_alpha: float = opt(7.0, "alpha of the per-actor epsilon schedule")
    alpha: float = opt(0.6, "priority exponent")
    beta_start: float = opt(0.4, "importance-weight exponent at the start (annealed to 1)")
    hidden: tuple[int, ...] = opt((256, 256), "MLP hidden sizes (vector observations)")
    dueling: bool = opt(True, "dueling value/advantage head")
    max_grad_norm: float = opt(10.0, "gradient clipping by global norm")
    block_rows: int = opt(64, "transitions per block an actor sends")
    clip_rewards: str = opt("auto", "clip rewards to [-1, 1] for learning: auto (Atari only), on, off")
    allreduce: str = opt("auto", "gradient allreduce between learner ranks: auto (nccl on GPU, else mpi), mpi, "
                                 "gloo, nccl")

    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): Ape-X paper values,
        # scaled to a learner on a CPU: fewer samples per env step than on CartPole (4 instead of 32)
        "batch_size": 64, "replay_ratio": 0.0625, "learning_starts": 20_000, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0}

    def check(self):
        for name in ("num_envs", "buffer_size", "batch_size", "n_step", "target_update_every", "publish_every",
                     "weight_sync_every", "block_rows", "total_env_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise UserError(f"config: gamma must be in (0, 1], got {self.gamma}")
        if self.clip_rewards not in ("auto", "on", "off"):
            raise UserError(f"config: clip_rewards must be auto, on or off, got {self.clip_rewards!r}")
        if self.allreduce not in BACKENDS:
            raise UserError(f"config: allreduce must be one of {', '.join(BACKENDS)}, got {self.allreduce!r}")


def build_net(cfg: Config, obs_space, act_space) -> QNetwork:
    return QNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.dueling)


def actor_epsilon(cfg: Config, i: int, n: int) -> float:
    return cfg.eps_base ** (1 + cfg.eps_alpha * i / max(1, n - 1))


def run_actor(rt: Runtime, cfg: Config, plane: dict) -> None:
    actors = rt.layout.ranks("actor")
    i, learner = actors.index(rt.rank), rt.layout.ranks("learner")[0]
    torch.manual_seed(rt.torch_seed())
    rng = rt.rng()
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rng.integers(2**31)))
    clip = cfg.clip_rewards == "on" or (cfg.clip_rewards == "auto" and is_atari(cfg.env))
    net = build_net(cfg, env.observation_space, env.action_space).requires_grad_(False)
    weights = np.empty(plane["n_params"], np.float32)
    window: NodeWeights = plane["window"]
    poll(lambda: True if window.version >= 1 else None, 120, "the learner's first weights")
    version = window.read(weights)
    load_flat(net, weights)

    def q_fn(o):
        return q_values(net, o)

    writer = ReplayWriter(plane["rcomm"], rt.layout.ranks("replay"), plane["fields"], cfg.block_rows,
                          plane["outbox"], first=i)
    nstep = NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma, batch=ACTOR_BATCH)
    eps = actor_epsilon(cfg, i, len(actors))
    share = cfg.total_env_steps // len(actors) + (i < cfg.total_env_steps % len(actors))
    report = ActorReport(plane["world"], learner)  # Tag.METRICS, Tag.STOP to the lead learner

    obs = env.reset()
    steps = vsteps = 0
    in_flight = len(actors) * cfg.num_envs * (cfg.n_step + ACTOR_BATCH)  # steps whose transitions wait in builders

    allowed = 0.0  # env steps of all actors that the learner's last known update count allows

    def learner_lags() -> bool:  # our share of env steps would push the replay ratio under its target
        nonlocal allowed
        if cfg.replay_ratio <= 0 or steps * len(actors) <= allowed:
            return False  # (allowed only grows: no need to read the window)
        allowed = cfg.learning_starts + in_flight + (window.version - 1 + cfg.publish_every) / cfg.replay_ratio
        return steps * len(actors) > allowed

    while steps < share:
        if learner_lags():
            writer.flush()  # the learner may be waiting for these to reach learning_starts,
            report.send()  # and for our steps to allow more updates
            poll(lambda: None if learner_lags() else True, 600, "the learner to catch up")
        if vsteps % cfg.weight_sync_every == 0 and window.version > version:
            version = window.read(weights)
            load_flat(net, weights)
        q = q_values(net, obs)
        actions = q.argmax(axis=1)
        explore = rng.random(cfg.num_envs) < eps
        actions[explore] = rng.integers(0, env.action_space.n, explore.sum())
        step = env.step(actions)
        if clip:  # for learning only: episode returns were summed unclipped by the env
            step.reward = np.clip(step.reward, -1, 1)
        steps += cfg.num_envs
        vsteps += 1
        report.step(cfg.num_envs, [r for r, _ in step.episodes], version)
        tr = nstep.push(obs, actions, step, q_taken=q[np.arange(cfg.num_envs), actions], v=q.max(axis=1))
        if tr is not None:  # initial priorities from the Q-values computed when acting
            writer.add(tr, actor_priority(tr, q_fn, PRIORITY_EPS))
        obs = step.obs
        report.maybe_send()
    tr = nstep.flush()
    if tr is not None:
        writer.add(tr, actor_priority(tr, q_fn, PRIORITY_EPS))
    writer.close()  # flush, then STOP to every shard
    report.close()
    env.close()


def run_replay(rt: Runtime, cfg: Config, plane: dict) -> None:
    shards = rt.layout.ranks("replay")
    s = shards.index(rt.rank)
    capacity = cfg.buffer_size // len(shards) + (s < cfg.buffer_size % len(shards))
    storage = PrioritizedReplay(capacity, plane["fields"], cfg.alpha, rt.rng())
    clients = len(rt.layout.ranks("actor")) + len(rt.layout.ranks("learner"))
    serve(plane["rcomm"], storage, plane["fields"], cfg.block_rows, cfg.batch_size, clients, plane["outbox"],
          plane["inbox"])


def run_learner(rt: Runtime, cfg: Config, plane: dict) -> dict:
    device = nets.device(cfg.device)
    world, learners = plane["world"], rt.role_comm  # role_comm: the learner ranks
    lead = learners.rank == 0
    actors = rt.layout.ranks("actor")
    net = plane["net"].to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=2)  # + progress, stop
    push: WeightsPush = plane["push"]
    if lead:
        push.push(flat_params(net), 1)
    sampler = ReplaySampler(plane["rcomm"], rt.layout.ranks("replay"), plane["fields"], cfg.batch_size, rt.rng(),
                            plane["inbox"])
    frac = 0.0  # the lead's progress: every learner anneals the same way
    stats = ActorStats(world, actors, frames_per_step=4 if is_atari(cfg.env) else 1)  # lead: actors' reports
    if lead:
        log = RunLog(cfg.run_dir, "apex", to_dict(cfg), ["loss", "replay_size", "replay_fill", "sample_rate",
                                                          *ActorStats.COLUMNS, "learners"],
                     frames_per_step=stats.frames_per_step, world_size=rt.size)
    updates = 0

    def drain_actor_messages():
        stats.drain(updates + 1, log.episode)

    def row():  # the current loss and size
        return {"loss": loss, "replay_size": size, "replay_fill": round(size / cfg.buffer_size, 4),
                "sample_rate": round(log.rates[1] * cfg.batch_size * learners.size, 1), **stats.row(),
                "learners": learners.size}

    loss, size = float("nan"), 0
    go = np.ones(1, np.int64)  # the lead says whether training starts at all (0: the actors finished first)
    if lead:
        while not stats.all_done:  # wait for learning_starts transitions
            drain_actor_messages()
            size = int(sampler.stats()[0].sum())
            if size >= max(cfg.learning_starts, cfg.batch_size):
                break
            log.tick(stats.steps, 0, cfg.total_env_steps, row)
            time.sleep(0.01)
        go[0] = not stats.all_done
    wait(learners.Ibcast(go, root=0), what="the lead learner's start")
    if go[0]:
        sampler.request(cfg.batch_size)
    while go[0]:
        stop = False
        if lead:  # wait while ahead of the actors (replay ratio), unless they are done
            while True:
                drain_actor_messages()
                stop = stats.all_done
                if stop or cfg.replay_ratio <= 0 or updates < cfg.replay_ratio * stats.steps:
                    break
                log.tick(stats.steps, updates, cfg.total_env_steps, row)
                time.sleep(0.001)
        batch = sampler.receive(linear(cfg.beta_start, 1.0, frac))
        sampler.request(cfg.batch_size)  # the shards gather the next batch while this one trains
        t = {k: torch.as_tensor(v, device=device) for k, v in batch.data.items()}
        td = double_dqn_td(net, target, t["obs"], t["action"], t["ret"], t["next_obs"], t["discount"])
        loss_t = weighted_huber(td, torch.as_tensor(batch.weights, device=device))
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
        sampler.update_priorities(batch, td.detach().abs().cpu().numpy().astype(np.float64) + PRIORITY_EPS)
        updates += 1
        size = batch.size
        if updates % cfg.target_update_every == 0:
            target.load_state_dict(net.state_dict())
        if not lead:
            continue
        loss = float(loss_t.detach())
        if updates % cfg.publish_every == 0:
            push.push(flat_params(net), updates + 1)
        log.tick(stats.steps, updates, cfg.total_env_steps, row)
        if log.checkpoint_due():
            log.save_checkpoint(stats.steps, {"online": state_arrays(net)}, {"updates": updates})
    sampler.close()  # receives the batch still asked for, then STOP to every shard
    allreduce.close()
    weights = flat_params(net)
    summary = {"updates": updates, "weights_sha256": hashlib.sha256(weights.tobytes()).hexdigest()}
    if not lead:
        return summary
    push.push(weights, updates + 1)
    path = log.save_checkpoint(stats.steps, {"online": state_arrays(net)}, {"updates": updates})
    log.close(stats.steps, updates, row())
    return {**summary, "env_steps": stats.steps, "recent_return": log.recent_return, "checkpoint": str(path),
            "seconds": time.monotonic() - log.start}


def run(rt: Runtime, cfg: Config) -> dict | None:
    """Set up the planes (collective), then run this rank's role."""
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)  # the same initial network on every rank; the learner's is published
    net = build_net(cfg, obs_space, act_space)
    n_params = sum(p.numel() for p in net.parameters())
    node = context.node_comm(rt.world)
    window = NodeWeights(node, n_params)
    push = WeightsPush(rt.world, node, window, writer=rt.layout.ranks("learner")[0])
    fields = transition_fields(obs_space)
    outbox, inbox = node_segments(rt.world, node, fields, cfg.block_rows, cfg.batch_size,
                                  writer=rt.role == "actor", learner=rt.role == "learner")
    plane = {"world": rt.world, "rcomm": rt.world.Dup(), "window": window, "push": push, "fields": fields,
             "outbox": outbox, "inbox": inbox, "n_params": n_params, "net": net}
    summary = None  # the learners' summary (the lead's is printed)
    if rt.role == "actor":
        run_actor(rt, cfg, plane)
    elif rt.role == "replay":
        run_replay(rt, cfg, plane)
    else:
        summary = run_learner(rt, cfg, plane)
    push.close()
    return summary


def load_policy(cfg: Config, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] from checkpoint weights (raises ValueError on mismatch)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    return lambda obs: greedy(net, obs, torch.device("cpu"))
