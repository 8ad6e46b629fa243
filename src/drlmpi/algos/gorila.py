"""GORILA: General Reinforcement Learning Architecture (Nair et al., 2015), on the weights and replay planes.

Roles: `learner`s (rank 0 leads), `ps` shards (the parameter vector in contiguous slices), `replay`
shards, and `actor`s on the other ranks.
  actor     steps a vector of envs epsilon-greedily (epsilon annealed linearly over its share of
            steps, as in DQN) with a local network it refreshes from the parameter server's node
            window every `weight_sync_every` vector steps; builds n-step transitions with initial
            priorities from that network and sends them to the replay shards; reports to the lead
            learner (Tag.METRICS) and stops (Tag.STOP) when its share of `total_env_steps` is done.
            It waits when the learners lag the replay ratio (the parameter server's update count,
            read from the window's version, against the env steps of all actors).
  learner   keeps a local copy of the parameters, refreshed from the window every `sync_every`
            updates, and a target network refreshed from it every `target_update_every` updates;
            computes double-DQN gradients on prioritized batches (asking for the next one before
            training on one), clips them and sends each ps shard its slice (Tag.GRADIENT, buffer
            Isend) without waiting for the result:
            learners run asynchronously. Sends priorities back to the replay shards. The lead
            learner hears the actors, logs, tells the other learners the env step count and when to
            stop (Tag.CONTROL), and writes the checkpoint from the parameter server's final vector.
  ps        applies every gradient slice it receives with its own optimizer (Adam by default; the
            paper's AdaGrad and RMSProp are there too) and a learning rate annealed over the
            expected number of updates, and publishes the slice into the node windows (WeightsPush).
  replay    the prioritized replay plane (the paper's global replay, here prioritized: set alpha=0
            for its uniform sampling).
Throttle: like Ape-X, `replay_ratio` parameter-server updates per env step, on both sides.
"""

import copy
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from mpi4py import MPI

from drlmpi import nets
from drlmpi.comm.metrics import ActorReport, ActorStats
from drlmpi.comm.ps import send_gradient, send_stop, serve_shard
from drlmpi.comm.replay import ReplaySampler, ReplayWriter
from drlmpi.comm.tags import Tag
from drlmpi.comm.weights import NodeWeights, WeightsPush
from drlmpi.config import Common, opt, to_dict
from drlmpi.envs import is_atari, make_vec, spaces
from drlmpi.errors import UserError
from drlmpi.nets import QNetwork, flat_params, greedy, load_arrays, load_flat, q_values
from drlmpi.ops.optim import OPTIMIZERS
from drlmpi.ops.qlearning import actor_priority, double_dqn_td, weighted_huber
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, PrioritizedReplay, transition_fields
from drlmpi.replay.shard import node_segments, serve
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, context, poll, probe, wait, wait_all

ROLES = RoleSpec(fixed=(("learner", 1), ("ps", 1), ("replay", 1)), min_actors=1, serial_ok=False)
PRIORITY_EPS = 1e-6
ACTOR_BATCH = 16  # vector steps an actor's n-step builder decides at once (numpy cost per step shrinks with it)


@dataclass
class Config(Common):
    num_envs: int = opt(4, "environments per actor")
    buffer_size: int = opt(100_000, "replay capacity in n-step transitions, split evenly over the shards")
    batch_size: int = opt(128, "transitions per gradient")
    optimizer: str = opt("adam", "parameter-server optimizer: adam, adagrad (the paper's), rmsprop")
    lr: float = opt(6e-4, "parameter-server learning rate at the start")
    lr_final: float = opt(1e-5, "learning rate reached linearly after replay_ratio * total_env_steps updates")
    gamma: float = opt(0.99, "discount")
    n_step: int = opt(3, "n of the n-step return")
    learning_starts: int = opt(2_000, "transitions stored before the first gradient")
    replay_ratio: float = opt(0.25, "parameter-server updates per env step: learners wait when ahead, actors when "
                                    "the learners lag (0 lets both run free)")
    sync_every: int = opt(1, "learner updates between refreshes of its parameters from the parameter server")
    target_update_every: int = opt(250, "learner updates between refreshes of its target network from the server")
    publish_every: int = opt(1, "parameter-server updates between publications to the windows")
    weight_sync_every: int = opt(50, "actor steps (of its env vector) between parameter reads")
    eps_start: float = opt(1.0, "actor epsilon at the start")
    eps_end: float = opt(0.01, "final actor epsilon")
    eps_fraction: float = opt(0.2, "fraction of an actor's steps over which epsilon decays linearly")
    alpha: float = opt(0.6, "priority exponent (0: uniform replay, as in the paper)")
    beta_start: float = opt(0.4, "importance-weight exponent at the start (annealed to 1)")
    hidden: tuple[int, ...] = opt((256, 256), "MLP hidden sizes (vector observations)")
    dueling: bool = opt(True, "dueling value/advantage head")
    max_grad_norm: float = opt(10.0, "gradient clipping by global norm, on the learner")
    block_rows: int = opt(64, "transitions per block an actor sends")
    clip_rewards: str = opt("auto", "clip rewards to [-1, 1] for learning: auto (Atari only), on, off")

    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): DQN-paper values,
        # with fewer samples per env step (2) for a learner on a CPU
        "batch_size": 32, "replay_ratio": 0.0625, "learning_starts": 20_000, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0}

    def check(self):
        for name in ("num_envs", "buffer_size", "batch_size", "n_step", "sync_every", "target_update_every",
                     "publish_every", "weight_sync_every", "block_rows", "total_env_steps"):
            if getattr(self, name) < 1:
                raise UserError(f"config: {name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.gamma <= 1:
            raise UserError(f"config: gamma must be in (0, 1], got {self.gamma}")
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"config: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.clip_rewards not in ("auto", "on", "off"):
            raise UserError(f"config: clip_rewards must be auto, on or off, got {self.clip_rewards!r}")


def build_net(cfg: Config, obs_space, act_space) -> QNetwork:
    return QNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.dueling)


def run_actor(rt: Runtime, cfg: Config, plane: dict) -> None:
    actors = rt.layout.ranks("actor")
    i, lead = actors.index(rt.rank), rt.layout.ranks("learner")[0]
    torch.manual_seed(rt.torch_seed())
    rng = rt.rng()
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rng.integers(2**31)))
    clip = cfg.clip_rewards == "on" or (cfg.clip_rewards == "auto" and is_atari(cfg.env))
    net = build_net(cfg, env.observation_space, env.action_space).requires_grad_(False)
    weights = np.empty(plane["n_params"], np.float32)
    window: NodeWeights = plane["window"]
    version = window.read(weights)  # every ps shard published its initial slice before the plane was up
    load_flat(net, weights)

    def q_fn(o):
        return q_values(net, o)

    writer = ReplayWriter(plane["rcomm"], rt.layout.ranks("replay"), plane["fields"], cfg.block_rows,
                          plane["outbox"], first=i)
    nstep = NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma, batch=ACTOR_BATCH)
    share = cfg.total_env_steps // len(actors) + (i < cfg.total_env_steps % len(actors))
    report = ActorReport(plane["world"], lead)  # Tag.METRICS, Tag.STOP to the lead learner
    obs = env.reset()
    steps = vsteps = 0
    in_flight = len(actors) * cfg.num_envs * (cfg.n_step + ACTOR_BATCH)  # steps whose transitions wait in builders

    allowed = 0.0  # env steps of all actors that the learners' last known update count allows

    def learners_lag() -> bool:  # our share of env steps would push the replay ratio under its target
        nonlocal allowed
        if cfg.replay_ratio <= 0 or steps * len(actors) <= allowed:
            return False  # (allowed only grows: no need to read the window)
        allowed = cfg.learning_starts + in_flight + (window.version + cfg.publish_every) / cfg.replay_ratio
        return steps * len(actors) > allowed

    while steps < share:
        if learners_lag():
            writer.flush()  # the learners may be waiting for these, and the lead for our step count
            report.send()
            poll(lambda: None if learners_lag() else True, 600, "the learners to catch up")
        if vsteps % cfg.weight_sync_every == 0 and window.version > version:
            version = window.read(weights)
            load_flat(net, weights)
        q = q_values(net, obs)
        actions = q.argmax(axis=1)
        explore = rng.random(cfg.num_envs) < linear(cfg.eps_start, cfg.eps_end, steps / (cfg.eps_fraction * share))
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


def run_ps(rt: Runtime, cfg: Config, plane: dict) -> None:
    s = rt.layout.ranks("ps").index(rt.rank)
    lo, hi = plane["window"].bounds[s], plane["window"].bounds[s + 1]
    expected = cfg.replay_ratio * cfg.total_env_steps  # updates the whole run should make

    def lr(updates: int) -> float:
        return linear(cfg.lr, cfg.lr_final, updates / expected) if expected > 0 else cfg.lr

    opt_kwargs = {"eps": 1e-5} if cfg.optimizer != "adagrad" else {}
    _, updates = serve_shard(plane["world"], plane["pushes"][s], plane["init"][lo:hi],
                             len(rt.layout.ranks("learner")), cfg.optimizer, lr, cfg.publish_every, **opt_kwargs)
    final = np.array([updates], np.int64)  # to the lead learner, which checkpoints the final vector
    plane["world"].Send(final, dest=rt.layout.ranks("learner")[0], tag=Tag.STOP)


def run_replay(rt: Runtime, cfg: Config, plane: dict) -> None:
    shards = rt.layout.ranks("replay")
    s = shards.index(rt.rank)
    capacity = cfg.buffer_size // len(shards) + (s < cfg.buffer_size % len(shards))
    storage = PrioritizedReplay(capacity, plane["fields"], cfg.alpha, rt.rng())
    clients = len(rt.layout.ranks("actor")) + len(rt.layout.ranks("learner"))
    serve(plane["rcomm"], storage, plane["fields"], cfg.block_rows, cfg.batch_size, clients, plane["outbox"],
          plane["inbox"])


def run_learner(rt: Runtime, cfg: Config, plane: dict) -> dict | None:
    device = nets.device(cfg.device)
    world, window = plane["world"], plane["window"]
    learners, ps_ranks = rt.layout.ranks("learner"), rt.layout.ranks("ps")
    lead = rt.rank == learners[0]
    net = plane["net"].to(device)
    target = copy.deepcopy(net).requires_grad_(False)
    flat = np.empty(plane["n_params"], np.float32)

    def pull(into) -> int:  # the parameter server's vector, into a network
        v = window.read(flat)
        load_flat(into, flat)
        return v

    pull(net)
    pull(target)
    sampler = ReplaySampler(plane["rcomm"], rt.layout.ranks("replay"), plane["fields"], cfg.batch_size, rt.rng(),
                            plane["inbox"])
    grads = [np.zeros(plane["n_params"], np.float32) for _ in range(2)]  # double-buffered gradient sends
    grad_reqs: list[list] = [[], []]
    stats = ActorStats(world, rt.layout.ranks("actor"), frames_per_step=4 if is_atari(cfg.env) else 1)
    control = np.zeros(2, np.float64)  # env steps, stop: the lead's word (Tag.CONTROL)
    control_bufs = [np.zeros(2, np.float64) for _ in learners]  # lead: one message in flight per learner
    control_reqs = [MPI.REQUEST_NULL] * len(learners)

    def tell(j: int) -> None:
        control_bufs[j][:] = control
        control_reqs[j] = world.Isend(control_bufs[j], dest=learners[j], tag=Tag.CONTROL)

    if lead:
        log = RunLog(cfg.run_dir, "gorila", to_dict(cfg), ["loss", "replay_size", "replay_fill", "sample_rate",
                                                            "ps_updates", *ActorStats.COLUMNS],
                     frames_per_step=stats.frames_per_step, world_size=rt.size)
    updates, loss, size = 0, float("nan"), 0

    def listen():  # lead: hear the actors and tell the other learners; others: hear the lead
        if lead:
            stats.drain(window.version, log.episode)
            control[:] = stats.steps, stats.all_done
            for j in range(1, len(learners)):
                if control_reqs[j].Test():
                    tell(j)
        else:
            while world.Iprobe(learners[0], Tag.CONTROL):
                world.Recv(control, source=learners[0], tag=Tag.CONTROL)

    def row():
        return {"loss": loss, "replay_size": size, "replay_fill": round(size / cfg.buffer_size, 4),
                "sample_rate": round(log.rates[1] * cfg.batch_size * len(learners), 1), "ps_updates": window.version,
                **stats.row()}

    def tick():
        if lead:
            log.tick(stats.steps, updates, cfg.total_env_steps, row)

    while not control[1]:  # wait for learning_starts transitions
        listen()
        size = int(sampler.stats()[0].sum())
        if size >= max(cfg.learning_starts, cfg.batch_size):
            break
        tick()
        time.sleep(0.01)
    sampler.request(cfg.batch_size)  # close() receives it if training never starts
    while True:
        listen()
        if control[1]:
            break
        if cfg.replay_ratio > 0 and window.version >= cfg.replay_ratio * control[0]:
            tick()  # the learners are ahead of the actors
            time.sleep(0.001)
            continue
        if updates % cfg.sync_every == 0:
            pull(net)
        batch = sampler.receive(linear(cfg.beta_start, 1.0, control[0] / cfg.total_env_steps))
        sampler.request(cfg.batch_size)  # the shards gather the next batch while this one trains
        t = {k: torch.as_tensor(v, device=device) for k, v in batch.data.items()}
        td = double_dqn_td(net, target, t["obs"], t["action"], t["ret"], t["next_obs"], t["discount"])
        loss_t = weighted_huber(td, torch.as_tensor(batch.weights, device=device))
        net.zero_grad(set_to_none=True)
        loss_t.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        turn = updates % 2
        wait_all(grad_reqs[turn], what="previous gradient sends")
        grads[turn][:] = torch.nn.utils.parameters_to_vector([p.grad for p in net.parameters()]).cpu().numpy()
        grad_reqs[turn] = send_gradient(world, grads[turn], ps_ranks, window.bounds)  # Tag.GRADIENT, async
        sampler.update_priorities(batch, td.detach().abs().cpu().numpy().astype(np.float64) + PRIORITY_EPS)
        updates += 1
        loss, size = float(loss_t.detach()), batch.size
        if updates % cfg.target_update_every == 0:
            pull(target)
        tick()
    sampler.close()  # receives the batch still asked for, then STOP to every replay shard
    wait_all(grad_reqs[0] + grad_reqs[1], what="gradient sends")
    send_stop(world, ps_ranks)
    if lead:  # the last word is stop, said once (messages from one sender with one tag arrive in order)
        for j in range(1, len(learners)):
            wait(control_reqs[j], what="control message")
            if not control_bufs[j][1]:  # that learner has not been told to stop yet
                tell(j)
        wait_all(control_reqs, what="control messages")
    if not lead:
        return None
    final = np.zeros(1, np.int64)
    versions = []
    for r in ps_ranks:  # each shard says how many updates it applied once every learner has stopped
        probe(world, r, Tag.STOP, timeout=600)
        world.Recv(final, source=r, tag=Tag.STOP)
        versions.append(int(final[0]))
    poll(lambda: True if (window.versions() >= versions).all() else None, 60, "the final parameters")
    pull(net)
    path = log.save_checkpoint(stats.steps, {"online": nets.state_arrays(net)},
                               {"updates": updates, "ps_updates": min(versions)})
    log.close(stats.steps, updates, row())
    return {"env_steps": stats.steps, "updates": min(versions), "recent_return": log.recent_return,
            "checkpoint": str(path), "seconds": time.monotonic() - log.start}


def run(rt: Runtime, cfg: Config) -> dict | None:
    """Set up the planes (collective), then run this rank's role."""
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)  # the initial parameters: the ps shards publish their slices of it
    net = build_net(cfg, obs_space, act_space)
    n_params = sum(p.numel() for p in net.parameters())
    node = context.node_comm(rt.world)
    ps_ranks = rt.layout.ranks("ps")
    window = NodeWeights(node, n_params, shards=len(ps_ranks))
    pushes = [WeightsPush(rt.world, node, window, writer=r, shard=s) for s, r in enumerate(ps_ranks)]
    init = flat_params(net)
    if rt.role == "ps":  # publish the initial slice before anyone reads
        s = ps_ranks.index(rt.rank)
        pushes[s].push(init[window.bounds[s] : window.bounds[s + 1]], 0)
    poll(lambda: True if window.published() else None, 120, "the parameter server's initial weights")
    fields = transition_fields(obs_space)
    outbox, inbox = node_segments(rt.world, node, fields, cfg.block_rows, cfg.batch_size,
                                  writer=rt.role == "actor", learner=rt.role == "learner")
    plane = {"world": rt.world, "rcomm": rt.world.Dup(), "window": window, "pushes": pushes, "fields": fields,
             "outbox": outbox, "inbox": inbox, "n_params": n_params, "net": net, "init": init}
    summary = None
    if rt.role == "actor":
        run_actor(rt, cfg, plane)
    elif rt.role == "ps":
        run_ps(rt, cfg, plane)
    elif rt.role == "replay":
        run_replay(rt, cfg, plane)
    else:
        summary = run_learner(rt, cfg, plane)
    for p in pushes:
        p.close()
    return summary


def load_policy(cfg: Config, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] from checkpoint weights (raises ValueError on mismatch)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    return lambda obs: greedy(net, obs, torch.device("cpu"))
