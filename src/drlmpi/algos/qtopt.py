"""QT-Opt: distributed Q-learning over continuous actions with Bellman-updater ranks (Kalashnikov et al., 2018).

Roles: `learner`s (trainers; the first leads), `replay` shards, `bellman` updaters, and `actor`s on the other
ranks. Acting, target computation and training run asynchronously, and each scales with its own rank count
(`--layout bellman=K,learner=L,replay=S`).
  actor i   the replay actor loop (replay.actor): acts with the cross-entropy method (ops.cem) maximising its local
            Q(s, .) over the action box, plus Gaussian noise (`act_noise` x the box's half-width) and, with
            probability `epsilon`, a uniformly random action; sends 1-step transitions with initial priorities
            |r + gamma CEM-max Q(s') - Q(s, a)| to the shards; pauses when the trainers lag the replay ratio.
  replay    the shard role of the value-based family; `--set offline=F.h5` (episodes written by `drlmpi record`,
            or a previous run's replay: its run directory or checkpoint) fills a second replay of every shard,
            sampled with probability `offline_ratio` per row (the R2D3 demo replay): offline data mixed with
            online, or alone (`offline_ratio=1`, no actors: `-n 3`).
  bellman k samples prioritized batches (asking for the next before labelling one), labels each transition with
            y = r + gamma^n min(Q1', Q2')(s', CEM_{Q1'}(s')) on the lagged target networks it reads from its
            node's weights window, sends |Q(s, a) - y| back as the new priorities, and hands the labelled batch
            (obs, action, y, importance weight) to trainer k mod L through the trajectory plane (bounded: it
            waits for a free slot when the trainer is behind). Stops on the lead trainer's STOP.
  learner   regresses Q(s, a) on y (importance-weighted squared error), several trainers averaging gradients
            with one allreduce per update; keeps the targets: Q1' Polyak-averaged (`tau`) every update, Q2' a
            copy of Q1' every `target_lag` updates (the paper's lagged pair); the lead publishes
            [online | Q1' | Q2'] with its progress every `publish_every` updates, hears the actors, logs and
            checkpoints, waits while ahead of the replay ratio, and says STOP to every bellman rank once the
            actors are done (or `updates` are made, offline), a signal came, ...; training ends when no trainer
            has a batch left.
Defaults are Pendulum-v1's (greedy return about -150 in 30K env steps on 4 ranks).

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel       from -> to                 payload                               when
  TRANSITIONS(_SHM)      replay        actor -> replay            transitions + priorities (or the      a block is
                                                                  outbox slot and rows), Isend          full
  SAMPLE_REQUEST         replay        bellman -> replay          int64 (rows, offset, inbox slot,      per batch
                                                                  offline rows)
  SAMPLE_REPLY(_BLOCK)   replay        replay -> bellman          int64 [8] (rows, size, total, min of  per request
                                                                  both replays) [+ rows]
  PRIORITIES             replay        bellman -> replay          slots (offline: -1 - slot), gens,     per batch
                                                                  |Q(s, a) - y| + eps
  STOP                   replay        actor, bellman -> replay   empty                                 at the end
  TRAJECTORY_SHM         trajectories  bellman -> its trainer     int64 (outbox slot, 0); the labelled  per batch
                                                                  batch in the slot (same host)
  TRAJECTORY / _ACK      trajectories  bellman <-> its trainer    the labelled batch / empty (other     per batch
                                                                  host)
  STOP                   trajectories  lead trainer -> bellman    empty                                 stop
  STOP                   trajectories  bellman -> its trainer     empty, after its last batch           its end
  METRICS, STOP          reports       actor -> lead trainer      float64 [9] (comm.metrics); empty     0.5 s; end
  Ibcast + Bcast         weights       lead -> other hosts'       (version = updates, progress),        publish_every
                                       leaders                    float32 [online | Q1' | Q2']
  Ibarrier + Allreduce   learners      trainer <-> trainers       gradients + (progress, had a batch)   every update
  CHECKPOINT, _DONE,     control       lead <-> other ranks       request; RNG state (comm.checkpoint)  checkpoint_
  SIGNAL                 (replay)                                 (replay: part files); signal number   every, end
"""

import copy
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import checkpoint, lifecycle, nets
from drlmpi import demos as demo_files
from drlmpi import value_based as vb
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import GradAllreduce, learners_step
from drlmpi.comm.tags import Tag
from drlmpi.comm.trajectories import TrajectoryPlane
from drlmpi.config import AllreduceOption, Hparam, opt, require_at_least
from drlmpi.envs import is_box, spaces
from drlmpi.errors import CheckpointError, UserError
from drlmpi.learner import Learner, Parts
from drlmpi.nets import StateActionQ, flat_params, load_arrays, load_flat
from drlmpi.nets.optim import Adam
from drlmpi.ops.cem import cem
from drlmpi.ops.priority import actor_priority
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, transition_fields
from drlmpi.runtime import RoleSpec, Runtime, poll, wait_all
from drlmpi.runtime.context import startup_timeout

LAYOUT = RoleSpec(fixed=(("learner", 1), ("replay", 1), ("bellman", 1)), min_actors=0, serial_ok=False)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "check_layout", "learner_parts", "load_policy"]


@dataclass
class Config(AllreduceOption, vb.ReplayConfig):
    """QT-Opt's env needs a 1-D Box action space (Pendulum-v1 by default, or `module:Env-v0`)."""

    tau: float = opt(0.005, "Polyak rate of the first target network Q1' per update")
    target_lag: int = opt(250, "updates between copies of Q1' to the lagged second target Q2'")
    cem_iterations: int = opt(2, "CEM iterations (acting and targets)")
    cem_samples: int = opt(64, "CEM samples per iteration and state")
    cem_elites: int = opt(6, "CEM elites refitted per iteration")
    act_noise: float = opt(0.1, "std of the Gaussian noise on an actor's CEM action, times the box's half-width")
    epsilon: float = opt(0.1, "probability that an actor takes a uniformly random action")
    offline: str = opt("", "offline data, comma-separated: episodes (drlmpi record files) or a previous run's "
                           "replay (its run directory or ckpt-*.h5), loaded into every shard's offline replay")
    offline_ratio: float = opt(0.0, "probability that a batch row comes from the offline replay (1: offline only)")
    updates: int = opt(0, "trainer updates when there are no actors (offline Q-learning): then the bellman ranks "
                          "stop, and the few batches in flight still train")

    DEFAULTS: ClassVar[dict] = {  # Pendulum-v1's; n_step 1 is the paper's; publishing every 10 updates: Q1' moves
        # tau of the way to the online net per update, 5% in 10 updates
        "env": "Pendulum-v1", "total_env_steps": 30_000, "lr": 1e-3, "lr_final": 1e-4, "n_step": 1,
        "learning_starts": 1_000, "replay_ratio": 0.5, "hidden": (128, 128)}
    SEARCH: ClassVar[dict] = {"eps": Hparam(("epsilon",), 0.01, 0.5)}  # with ValueConfig's lr and gamma (algos.pbt)
    POSITIVE: ClassVar[tuple[str, ...]] = ("target_lag", "cem_iterations", "cem_samples", "cem_elites")

    def check_own(self):
        require_at_least(self, ("updates",), least=0)
        if not 0 < self.tau <= 1:
            raise UserError(f"config: tau must be in (0, 1], got {self.tau}")
        if self.cem_elites > self.cem_samples:
            raise UserError(f"config: cem_elites ({self.cem_elites}) must be <= cem_samples ({self.cem_samples})")
        for name in ("epsilon", "offline_ratio"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"config: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.act_noise < 0:
            raise UserError(f"config: act_noise must be >= 0, got {self.act_noise}")
        if self.offline_ratio > 0 and not self.offline_paths():
            raise UserError("config: offline_ratio > 0 needs offline data: --set offline=FILE.h5 (drlmpi record)")

    def offline_paths(self) -> list[str]:
        return [p.strip() for p in self.offline.split(",") if p.strip()]


def validate(cfg: Config) -> None:
    """Rank 0, before the job starts: a 1-D Box action space, and offline data that opens, fits this env and holds
    at least one batch (one line, exit 2)."""
    obs_space, act_space = spaces(cfg.env)
    if not is_box(act_space) or len(act_space.shape) != 1:
        raise UserError(f"config: qtopt needs a 1-D Box action space; {cfg.env} has {act_space}")
    n = sum(offline_steps(p, cfg, obs_space, act_space) for p in cfg.offline_paths())
    if cfg.offline_paths() and n < cfg.batch_size:
        raise UserError(f"config: the offline data holds {n} steps, fewer than one batch ({cfg.batch_size})")


def learner_parts(cfg: Config, net: torch.nn.Module) -> Parts:
    """A trainer's declared state: Q, the Polyak-averaged target Q1', the lagged target Q2', Adam."""
    t1, t2 = copy.deepcopy(net).requires_grad_(False), copy.deepcopy(net).requires_grad_(False)
    return Parts({"online": net, "target1": t1, "target2": t2}, {"adam": Adam(net.parameters(), lr=cfg.lr)})


def learn(net, batch: dict, device) -> tuple[torch.Tensor, dict]:
    """The trainer's loss on a labelled batch (one row of obs [B, ...], action [B, A], target y [B], importance
    weight [B]): the importance-weighted squared error of Q(s, a) against y, and its metrics."""
    obs, act, y, w = (torch.as_tensor(batch[key][0], device=device) for key in ("obs", "action", "target", "weight"))
    q = net(obs, act)
    loss = (w * (q - y) ** 2).mean()
    return loss, {"loss": float(loss.detach()), "q_mean": float(q.detach().mean()), "target_mean": float(y.mean())}


def update_targets(parts: Parts, cfg: Config, updates: int) -> None:
    """After an update: Q1' moves `tau` of the way to Q; Q2' is a copy of Q1' every `target_lag` updates."""
    net, t1, t2 = (parts.nets[k] for k in ("online", "target1", "target2"))
    with torch.no_grad():
        for p1, p in zip(t1.parameters(), net.parameters(), strict=True):
            p1.lerp_(p, cfg.tau)
    if updates % cfg.target_lag == 0:
        t2.load_state_dict(t1.state_dict())


def build_net(cfg: Config, obs_space, act_space) -> StateActionQ:
    return StateActionQ(obs_space.shape, act_space.low, act_space.high, tuple(cfg.hidden))


def greedy(net: StateActionQ, obs: torch.Tensor, cfg: Config, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """CEM's (actions [B, A], scores [B]) maximising net(obs [B, ...], .) over the net's action box."""
    low, high = net.centre - net.radius, net.centre + net.radius
    return cem(net, obs, low, high, cfg.cem_iterations, cfg.cem_samples, cfg.cem_elites, generator=generator)


def load_policy(cfg: Config, weights: dict, env):
    """The greedy (CEM) policy obs [E, ...] -> actions float32 [E, A] of checkpoint weights; seeded, so the same
    obs give the same actions (raises ValueError on a mismatch)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.requires_grad_(False).eval()
    gen = torch.Generator().manual_seed(0)
    return lambda obs: greedy(net, torch.as_tensor(obs, dtype=torch.float32), cfg, gen)[0].numpy()


class CEMPolicy:
    """An actor's policy: CEM on its local Q copy, Gaussian noise, epsilon-random actions; initial priorities from
    the CEM scores computed when acting (the bootstrap) and Q of the action taken."""

    def __init__(self, net: StateActionQ, cfg: Config):
        self.net, self.cfg = net.requires_grad_(False), cfg
        self.n = sum(p.numel() for p in net.parameters())
        self.low, self.high = (net.centre - net.radius).numpy(), (net.centre + net.radius).numpy()

    def load(self, flat: np.ndarray) -> None:
        load_flat(self.net, flat[: self.n])  # the online slice of [online | Q1' | Q2']

    def act(self, obs: np.ndarray, eps: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        o = torch.as_tensor(obs, dtype=torch.float32)
        a, v = greedy(self.net, o, self.cfg)
        a = a.numpy() + rng.normal(0.0, self.cfg.act_noise, a.shape).astype(np.float32) * self.net.radius.numpy()
        explore = rng.random(len(obs)) < eps
        a[explore] = rng.uniform(self.low, self.high, (int(explore.sum()), a.shape[1]))
        a = np.clip(a, self.low, self.high).astype(np.float32)
        q_taken = self.net(o, torch.as_tensor(a)).numpy()
        return a, {"q_taken": q_taken, "v": v.numpy()}

    def priorities(self, rows: dict) -> np.ndarray:
        return actor_priority(rows, lambda o: greedy(self.net, torch.as_tensor(o, dtype=torch.float32), self.cfg)[1]
                              .numpy()[:, None], vb.PRIORITY_EPS)


def offline_steps(path: str, cfg: Config, obs_space, act_space) -> int:
    """Transitions (replay) or steps (demonstrations) an offline source holds; one-line UserError if it is damaged
    or does not fit this run."""
    rows = replay_rows(path, cfg, obs_space, act_space)
    return len(rows["ret"]) if rows is not None else len(demo_files.load(path, cfg.env, obs_space, act_space).actions)


def replay_rows(path: str, cfg: Config, obs_space, act_space) -> dict[str, np.ndarray] | None:
    """A previous run's replay: the agent transitions of every replay part of a checkpoint (a ckpt-*.h5 file or a
    run directory), as it stored them; None if `path` is neither (a demonstrations file)."""
    from pathlib import Path

    if not (Path(path).is_dir() or checkpoint.NAME.match(Path(path).name)):
        return None
    try:
        st = checkpoint.load(path)
        parts = [checkpoint.load_part(st, name, "replay")[1] for name in sorted(st.parts) if name.startswith("replay-")]
    except CheckpointError as e:
        raise UserError(f"offline: {e}") from None
    fields = transition_fields(obs_space, act_space)
    if st.env != cfg.env or not parts:
        raise UserError(f"offline: {path} is a checkpoint of {st.env} with {len(parts)} replay parts; this run needs "
                        f"{cfg.env} transitions")
    for a in parts:
        bad = [k for k, (shape, dtype) in fields.items() if k not in a or a[k].shape[1:] != shape or
               a[k].dtype != dtype]
        if bad:
            raise UserError(f"offline: {path}: replay fields {bad} do not match this run's transitions")
    return {k: np.concatenate([a[k] for a in parts]) for k in fields}


def offline_transitions(cfg: Config, obs_space, act_space, shard: int, shards: int) -> dict[str, np.ndarray]:
    """Every `shards`-th transition (from the `shard`-th) of the offline sources: a checkpoint's replay as stored,
    or the n-step transitions of recorded episodes, built as actors build theirs."""
    fields = transition_fields(obs_space, act_space)
    out: list[dict[str, np.ndarray]] = []
    builder = NStepBuilder(1, cfg.n_step, cfg.gamma)
    for path in cfg.offline_paths():
        rows = replay_rows(path, cfg, obs_space, act_space)
        if rows is not None:
            out.append(rows)
            continue
        for obs, action, step in demo_files.load(path, cfg.env, obs_space, act_space).steps():
            rows = builder.push(obs, action.astype(np.float32), step)
            if rows is not None:
                out.append(rows)
    rows = builder.flush()  # (the builder cuts at episode ends; the last n steps have no n later steps)
    if rows is not None:
        out.append(rows)
    rows = {k: np.concatenate([r[k] for r in out]) for k in fields}
    return {k: v[shard::shards] for k, v in rows.items()}


def transitions(cfg: Config, obs_space, act_space) -> vb.Rows:
    """1-step (n-step) transitions with float32 [A] actions, acted by CEM; the offline data for the shards."""
    demos = (lambda s, n: offline_transitions(cfg, obs_space, act_space, s, n)) if cfg.offline_paths() else None
    return vb.Rows(lambda: build_net(cfg, obs_space, act_space), transition_fields(obs_space, act_space),
                   lambda: NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma, batch=vb.ACTOR_BATCH),
                   lambda net: CEMPolicy(net, cfg), steps_per_row=1, held=cfg.n_step + vb.ACTOR_BATCH, demos=demos)


def labelled_fields(cfg: Config, obs_space, act_space) -> dict:
    """A labelled batch on the trajectory plane: one row of B transitions."""
    B = cfg.batch_size
    return {"obs": ((B, *obs_space.shape), obs_space.dtype), "action": ((B, *act_space.shape), np.float32),
            "target": ((B,), np.float32), "weight": ((B,), np.float32)}


@dataclass
class Planes:
    value: vb.Planes  # weights [online | Q1' | Q2'], replay
    labelled: TrajectoryPlane  # bellman -> trainer batches

    @property
    def n(self) -> int:  # parameters of one Q-network
        return sum(p.numel() for p in self.value.net.parameters())

    def close(self) -> None:
        self.value.close()
        self.labelled.free()


def setup(rt: Runtime, cfg: Config) -> Planes:
    """Collective: the weights plane (the lead trainer's three networks, its progress in the plane's header), the
    replay plane (sampled by the bellman ranks) and the labelled batches' trajectory plane."""
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)
    n = sum(p.numel() for p in build_net(cfg, obs_space, act_space).parameters())
    value = vb.setup(rt, cfg, rt.layout.ranks("learner")[:1], transitions, samplers="bellman", n_params=3 * n)
    labelled = TrajectoryPlane.create(rt.channels.trajectories, rt.node, labelled_fields(cfg, obs_space, act_space),
                                      0, actor=rt.role == "bellman")
    return Planes(value, labelled)


def run_actor(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    """The replay actor loop (replay.actor) acting by CEM, at a fixed epsilon."""
    vb.run_actor(rt, cfg, planes.value, lambda steps, share: cfg.epsilon, resumed)


def run_replay(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    """The shard role of the value-based family, sampled by the bellman ranks (with the offline replay)."""
    vb.run_replay(rt, cfg, planes.value, resumed, samplers="bellman")


def run_bellman(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    """The `bellman` role: label sampled transitions with clipped double-Q CEM targets until the lead's STOP."""
    trainers, k = rt.layout.ranks("learner"), rt.layout.index(rt.rank)
    online = planes.value.net.requires_grad_(False)
    t1, t2 = copy.deepcopy(online), copy.deepcopy(online)
    window, n = planes.value.weights.window, planes.n
    flat = np.empty(window.n, np.float32)
    poll(lambda: True if window.published() else None, startup_timeout(rt.size), "the trainers' first weights",
         max_sleep=0.01)
    version = -1
    comm, lead = planes.labelled.comm, trainers[0]
    ckpt = lifecycle.client(rt, lead)
    stopped = False

    def stop_heard() -> bool:
        nonlocal stopped
        ckpt.poll()
        if not stopped and comm.Iprobe(lead, Tag.STOP):
            comm.Recv(np.zeros(0, np.uint8), source=lead, tag=Tag.STOP)
            stopped = True
        return stopped

    sampler = planes.value.replay.sampler(rt.gen)
    writer = planes.labelled.writer(trainers[k % len(trainers)], k)
    go = cfg.offline_ratio >= 1 or vb.wait_for_replay(sampler, cfg, stop_heard, lambda: None)  # False: STOP came
    if go and not stopped:
        sampler.request(cfg.batch_size, cfg.offline_ratio)
    while go and not stop_heard():
        if window.version > version:
            version = window.read(flat)
            for i, net in enumerate((online, t1, t2)):
                load_flat(net, flat[i * n : (i + 1) * n])
        batch = sampler.receive(linear(cfg.beta_start, 1.0, window.progress))
        sampler.request(cfg.batch_size, cfg.offline_ratio)  # the shards gather the next batch while we label
        d = {key: torch.as_tensor(v) for key, v in batch.data.items()}
        with torch.no_grad():
            a_next, _ = greedy(t1, d["next_obs"], cfg)
            y = d["ret"] + d["discount"] * torch.minimum(t1(d["next_obs"], a_next), t2(d["next_obs"], a_next))
            td = online(d["obs"], d["action"]) - y
        sampler.update_priorities(batch, td.abs().numpy().astype(np.float64) + vb.PRIORITY_EPS)
        slot, u = writer.acquire(on_wait=ckpt.poll)
        u["obs"][0], u["action"][0], u["target"][0], u["weight"][0] = batch.data["obs"], batch.data["action"], \
            y.numpy(), batch.weights
        writer.post(slot, version)
    sampler.close()  # receives the batch still asked for, then STOP to every shard
    writer.close(on_wait=ckpt.poll)  # the trainer took every batch; then STOP
    ckpt.close()


class LeadTrainer:
    """The lead trainer's duties beside training: the replay-ratio gate, the wait for labelled batches (both timed for
    the metrics), and the STOP to every bellman rank once the actors are done (or `updates` made, offline, or a
    signal)."""

    def __init__(self, rt: Runtime, cfg: Config, planes: Planes, learner: Learner):
        self.cfg, self.planes, self.learner = cfg, planes, learner
        self.offline_only, self.bellmans = not rt.layout.ranks("actor"), rt.layout.ranks("bellman")
        self.gate = vb.throttle(cfg, len(rt.layout.ranks("actor")), planes.value.rows)
        self.waiting, self.starved = vb.Stopwatch(), vb.Stopwatch()
        self.stops: list = []  # the STOP sends to the bellman ranks, once stopping

    def row(self) -> dict:
        return {"learner_waiting": self.waiting.fraction(), "label_waiting": self.starved.fraction()}

    def progress(self) -> float:
        learner = self.learner
        return min(1.0, learner.updates / self.cfg.updates if self.offline_only else learner.progress)

    def done(self) -> bool:
        """Time to stop the bellman ranks: a signal asked for the final checkpoint (and the actors, if any, to stop),
        or the work is done."""
        if self.learner.stopping:
            return True
        return self.learner.updates >= self.cfg.updates if self.offline_only else self.learner.stats.all_done

    def hear(self, row) -> None:
        self.learner.poll(row)
        if not self.stops and self.done():
            self.stops = [self.planes.labelled.comm.Isend(np.zeros(0, np.uint8), dest=b, tag=Tag.STOP)
                          for b in self.bellmans]

    def hold(self, row) -> None:
        """Wait while ahead of the actors (replay ratio)."""
        t0 = time.monotonic()
        while not self.offline_only and not self.stops and self.gate.learners_wait(self.learner.updates,
                                                                                     self.learner.steps):
            self.hear(row)
            time.sleep(0.001)
        self.waiting.add(time.monotonic() - t0)

    def close(self) -> None:
        wait_all(self.stops, what="the STOPs to the bellman ranks")


def run_trainer(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> dict:
    """The `learner` role (a trainer): labelled batch -> learn -> allreduce and step (comm.allreduce.learners_step) ->
    targets -> the lead publishes [online | Q1' | Q2'], logs, checkpoints and stops the bellman ranks;
    until no trainer has a batch left."""
    device = nets.device(cfg.device)
    trainers = rt.role_comm
    parts = learner_parts(cfg, planes.value.net.to(device))
    net, opt = parts.nets["online"], parts.optims["adam"]
    learner = Learner(rt, cfg, "qtopt", parts, ["loss", "q_mean", "target_mean", "learners", "learner_waiting",
                                                "label_waiting"], resumed)
    allreduce = GradAllreduce(trainers, list(net.parameters()), cfg.allreduce, extra=3)  # progress, had, 0
    bellmans = rt.layout.ranks("bellman")
    reader = planes.labelled.reader([b for i, b in enumerate(bellmans) if i % trainers.size == trainers.rank], 1)
    lead = LeadTrainer(rt, cfg, planes, learner) if learner.lead else None
    last = {"loss": float("nan"), "q_mean": float("nan"), "target_mean": float("nan")}

    def row():
        return {**last, "learners": trainers.size, **(lead.row() if lead else {})}

    def publish():
        planes.value.weights.publish(np.concatenate([flat_params(net), flat_params(parts.nets["target1"]),
                                                   flat_params(parts.nets["target2"])]), learner.updates,
                                     lead.progress())

    if lead:
        publish()
    hear = lead.hear if lead else learner.poll
    while True:
        if lead:
            lead.hold(row)
        t0 = time.monotonic()
        batch = reader.receive(learner.updates, on_idle=lambda: hear(row))
        if lead:
            lead.starved.add(time.monotonic() - t0)
        opt.zero_grad(set_to_none=True)
        if batch is not None:
            loss, metrics = learn(net, batch, device)
            loss.backward()
        if learners_step(net, opt, allreduce, lead.progress() if lead else 0.0, batch is not None, 0.0, cfg) is None:
            break  # no trainer has a batch: every bellman rank has stopped
        learner.updates += 1
        update_targets(parts, cfg, learner.updates)
        if lead and batch is not None:
            last = metrics
        if lead and learner.updates % cfg.publish_every == 0:
            publish()
        learner.checkpoint()
        hear(row)
    return learner.finish(row, reader, allreduce, *([lead] if lead else []), final=publish)


def check_layout(layout, cfg: Config) -> None:
    """UserError for a layout that cannot run (the CLI asks before any role starts)."""
    if not layout.ranks("actor") and (cfg.offline_ratio < 1 or cfg.updates < 1):
        raise UserError("qtopt without actor ranks learns from offline data only: it needs --set offline=F.h5, "
                        "offline_ratio=1 and updates=N")
    if not layout.ranks("bellman"):
        raise UserError("qtopt needs at least one bellman rank (--layout bellman=K)")


ROLES = {"actor": run_actor, "replay": run_replay, "bellman": run_bellman, "learner": run_trainer}
