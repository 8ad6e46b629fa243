"""Ape-X: distributed prioritized experience replay (Horgan et al., 2018), on the weights and replay planes.

Roles: `learner` (rank 0), `replay` shards, and `actor`s on the other ranks.
  actor i   steps a vector of envs with epsilon_i = eps^(1 + alpha i / (N - 1)); reads the learner's weights
            from its node window every `weight_sync_every` steps (their version tells the learner's update
            count: an actor pauses when the learner lags `replay_ratio`); builds n-step transitions, gives each an
            initial priority |TD| from its local network, and sends them to the shards in blocks; reports env
            steps and episode returns to the learner (Tag.METRICS) and says when it is done (Tag.STOP).
  replay    serves blocks, samples and priority updates until the learner and every actor have stopped.
  learner   once `learning_starts` transitions are stored, trains double DQN with dueling heads on
            prioritized batches (prefetched), sends back priorities, publishes its weights every
            `publish_every` updates, copies its target network every `target_update_every` updates, and
            stops when every actor has finished its share of `total_env_steps`.
Messages: every send and receive below names its Tag; bulk data never travels pickled.
"""

import copy
import time
from dataclasses import dataclass

import numpy as np
import torch
from mpi4py import MPI

from drlmpi import nets
from drlmpi.comm.replay import Prefetcher, ReplaySampler, ReplayWriter
from drlmpi.comm.tags import Tag
from drlmpi.comm.weights import NodeWeights, WeightsPush
from drlmpi.config import Common, opt, to_dict
from drlmpi.envs import is_atari, make_vec, spaces
from drlmpi.errors import UserError
from drlmpi.nets import QNetwork, flat_params, greedy, load_arrays, load_flat, state_arrays
from drlmpi.ops.qlearning import double_dqn_td, double_q_target, weighted_huber
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, PrioritizedReplay
from drlmpi.replay.shard import node_segments, serve
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, context, poll, wait

ROLES = RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=1, serial_ok=False)
PRIORITY_EPS = 1e-6


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

    def check(self):
        for name in ("num_envs", "buffer_size", "batch_size", "n_step", "target_update_every", "publish_every",
                     "weight_sync_every", "block_rows", "total_env_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise UserError(f"config: gamma must be in (0, 1], got {self.gamma}")
        if self.clip_rewards not in ("auto", "on", "off"):
            raise UserError(f"config: clip_rewards must be auto, on or off, got {self.clip_rewards!r}")


def build_net(cfg: Config, obs_space, act_space) -> QNetwork:
    return QNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.dueling)


def transition_fields(obs_space) -> dict:
    return {"obs": (obs_space.shape, obs_space.dtype), "next_obs": (obs_space.shape, obs_space.dtype),
            "action": ((), np.int64), "ret": ((), np.float32), "discount": ((), np.float32)}


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
    writer = ReplayWriter(plane["rcomm"], rt.layout.ranks("replay"), plane["fields"], cfg.block_rows,
                          plane["outbox"], first=i)
    nstep = NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma)
    eps = actor_epsilon(cfg, i, len(actors))
    share = cfg.total_env_steps // len(actors) + (i < cfg.total_env_steps % len(actors))
    metrics, metrics_req = np.zeros(3, np.float64), MPI.REQUEST_NULL
    pending = np.zeros(3, np.float64)  # env steps, episodes, return sum not yet reported

    def report():  # env steps and returns to the learner (Tag.METRICS), one message in flight at a time
        nonlocal metrics_req
        wait(metrics_req, what="metrics")
        metrics[:], pending[:] = pending, 0
        metrics_req = plane["world"].Isend(metrics, dest=learner, tag=Tag.METRICS)

    last_report = time.monotonic()
    obs = env.reset()
    steps = vsteps = 0
    in_flight = len(actors) * cfg.num_envs * cfg.n_step  # steps whose transitions wait in n-step builders

    def learner_lags() -> bool:  # our share of env steps would push the replay ratio under its target
        updates = window.version - 1 + cfg.publish_every
        allowed = cfg.learning_starts + in_flight + updates / cfg.replay_ratio
        return cfg.replay_ratio > 0 and steps * len(actors) > allowed

    while steps < share:
        if learner_lags():
            writer.flush()  # the learner may be waiting for these to reach learning_starts,
            report()  # and for our steps to allow more updates
            poll(lambda: None if learner_lags() else True, 600, "the learner to catch up")
        if vsteps % cfg.weight_sync_every == 0 and window.version > version:
            version = window.read(weights)
            load_flat(net, weights)
        actions = greedy(net, obs, torch.device("cpu"))
        explore = rng.random(cfg.num_envs) < eps
        actions[explore] = rng.integers(0, env.action_space.n, explore.sum())
        step = env.step(actions)
        if clip:  # for learning only: episode returns were summed unclipped by the env
            step.reward = np.clip(step.reward, -1, 1)
        steps += cfg.num_envs
        vsteps += 1
        pending += (cfg.num_envs, len(step.episodes), sum(r for r, _ in step.episodes))
        tr = nstep.push(obs, actions, step)
        if tr is not None:
            with torch.no_grad():  # initial priorities from the local network (online net as its own target)
                t = {k: torch.as_tensor(v) for k, v in tr.items()}
                nq = net(t["next_obs"])
                y = double_q_target(nq, nq, t["ret"], t["discount"])
                q = net(t["obs"]).gather(1, t["action"][:, None]).squeeze(1)
            writer.add(tr, (y - q).abs().numpy().astype(np.float64) + PRIORITY_EPS)
        obs = step.obs
        if time.monotonic() - last_report > 0.5 and metrics_req.Test():
            report()
            last_report = time.monotonic()
    writer.close()  # flush, then STOP to every shard
    report()
    wait(metrics_req, what="metrics")
    plane["world"].Send(np.zeros(0, np.uint8), dest=learner, tag=Tag.STOP)
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
    world = plane["world"]
    actors = rt.layout.ranks("actor")
    net = plane["net"].to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, eps=1e-5)
    push: WeightsPush = plane["push"]
    push.push(flat_params(net), 1)
    sampler = ReplaySampler(plane["rcomm"], rt.layout.ranks("replay"), plane["fields"], cfg.batch_size, rt.rng(),
                            plane["inbox"])
    log = RunLog(cfg.run_dir, "apex", to_dict(cfg), ["loss", "replay_size", "policy_lag"],
                 frames_per_step=4 if is_atari(cfg.env) else 1, world_size=rt.size)
    metrics, status = np.zeros(3, np.float64), MPI.Status()
    state = {"steps": 0, "done": 0}

    def drain_actor_messages():
        while world.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, status):
            if status.tag == Tag.METRICS:
                world.Recv(metrics, source=status.source, tag=Tag.METRICS)
                state["steps"] += int(metrics[0])
                if metrics[1]:
                    log.episode(metrics[2] / metrics[1])
            elif status.tag == Tag.STOP:
                world.Recv(np.zeros(0, np.uint8), source=status.source, tag=Tag.STOP)
                state["done"] += 1
            else:
                raise RuntimeError(f"learner: unexpected tag {status.tag} from rank {status.source}")

    def frac():
        return state["steps"] / cfg.total_env_steps

    while state["done"] < len(actors):  # wait for learning_starts transitions
        drain_actor_messages()
        if sampler.stats()[0].sum() >= max(cfg.learning_starts, cfg.batch_size):
            break
        time.sleep(0.01)
    prefetch = Prefetcher(sampler, cfg.batch_size, lambda: linear(cfg.beta_start, 1.0, frac()))
    updates, loss, size = 0, float("nan"), 0
    while state["done"] < len(actors):
        drain_actor_messages()
        if cfg.replay_ratio > 0 and updates >= cfg.replay_ratio * state["steps"]:
            time.sleep(0.001)  # the learner is ahead of the actors
            log.tick(state["steps"], updates, cfg.total_env_steps)
            continue
        batch = prefetch.next()
        size = batch.size
        for g in opt.param_groups:
            g["lr"] = linear(cfg.lr, cfg.lr_final, frac())
        t = {k: torch.as_tensor(v, device=device) for k, v in batch.data.items()}
        td = double_dqn_td(net, target, t["obs"], t["action"], t["ret"], t["next_obs"], t["discount"])
        loss_t = weighted_huber(td, torch.as_tensor(batch.weights, device=device))
        opt.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        opt.step()
        sampler.update_priorities(batch, td.detach().abs().cpu().numpy().astype(np.float64) + PRIORITY_EPS)
        updates += 1
        loss = float(loss_t.detach())
        if updates % cfg.target_update_every == 0:
            target.load_state_dict(net.state_dict())
        if updates % cfg.publish_every == 0:
            push.push(flat_params(net), updates + 1)
        log.tick(state["steps"], updates, cfg.total_env_steps, {"loss": loss, "replay_size": size})
        if log.checkpoint_due():
            log.save_checkpoint(state["steps"], {"online": state_arrays(net)}, {"updates": updates})
    prefetch.close()
    sampler.close()  # STOP to every shard
    push.push(flat_params(net), updates + 1)
    path = log.save_checkpoint(state["steps"], {"online": state_arrays(net)}, {"updates": updates})
    log.close(state["steps"], updates, {"loss": loss, "replay_size": size})
    return {"env_steps": state["steps"], "updates": updates, "recent_return": log.recent_return,
            "checkpoint": str(path), "seconds": time.monotonic() - log.start}


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
    summary = None
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
