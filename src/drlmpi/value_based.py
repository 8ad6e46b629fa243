"""What the value-based algorithms (DQN, Ape-X, GORILA) share, written once.

  ValueConfig      the fields and checks of every double-DQN learner
  ReplayConfig     + the fields of the distributed ones: actors, replay shards, the throttle
  LearnerConfig    + per-actor epsilons and the learners' allreduce (`run_learner`)
  AnnealedEpsilon  a config mixin: epsilon annealed linearly (DQN, GORILA)
  build_net, load_policy
                   the Q-network (MLP or Nature CNN, dueling) and the greedy policy of a checkpoint
  td_loss, new_priorities
                   the prioritized double-DQN step: batch -> (loss, td [B]) -> |td| + eps
  EpsilonGreedyQ   acting for the replay actor loop: epsilon-greedy on a local Q-network, with initial
                   priorities from the Q-values computed when acting
  Rows, transitions
                   what a job stores in replay and how its actors build it: n-step transitions (Ape-X, GORILA),
                   or an algorithm's own (R2D2's sequences)
  Planes, setup    the weights and replay planes of a distributed job (collective)
  run_actor, run_replay, wait_for_replay
                   the actor and replay-shard roles, and a learner's wait for its first batch
  run_learner      the replay learner (Ape-X, R2D2): prioritized batches -> loss -> allreduced sgd -> priorities,
                   weights published to the actors, the lead's checkpoints and logs
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle, nets
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import GradAllreduce
from drlmpi.comm.weights import WeightsPlane
from drlmpi.config import AllreduceOption, Hparam, Publishes, Trained, opt
from drlmpi.envs import spaces
from drlmpi.errors import UserError
from drlmpi.learner import Learner, Parts
from drlmpi.nets import QNetwork, flat_params, greedy, load_arrays, load_flat, q_values
from drlmpi.nets.optim import Adam
from drlmpi.ops.qlearning import actor_priority, double_dqn_td, weighted_huber
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, actor, transition_fields
from drlmpi.replay.frames import ENV_BLOCK
from drlmpi.replay.plane import ReplayPlane, run_shard
from drlmpi.replay.throttle import Throttle
from drlmpi.runtime import Runtime, wait

PRIORITY_EPS = 1e-6
ACTOR_BATCH = 16  # vector steps an actor's n-step builder decides at once (numpy cost per step shrinks with it)
FRAME_BATCH = ENV_BLOCK  # the same for stacked frames: one env's transitions share their frames (replay.frames)


@dataclass
class ValueConfig(Trained):
    """+ the fields of every double-DQN learner."""

    buffer_size: int = opt(100_000, "replay capacity in rows: n-step transitions, or sequences (R2D2); split evenly "
                                    "over the replay shards")
    batch_size: int = opt(128, "rows (transitions, or sequences) per update")
    n_step: int = opt(3, "n of the n-step return")
    learning_starts: int = opt(2_000, "rows stored before the first update")
    replay_ratio: float = opt(0.25, "updates per env step (distributed: learners wait when ahead, actors when the "
                                    "learners lag; 0 lets both run free)")
    target_update_every: int = opt(250, "updates between copies of the online net to the target net")
    alpha: float = opt(0.6, "priority exponent (0: uniform replay)")
    beta_start: float = opt(0.4, "importance-weight exponent at the start (annealed to 1)")
    dueling: bool = opt(True, "dueling value/advantage head", True)

    DEFAULTS: ClassVar[dict] = {"num_envs": 4, "lr": 6e-4, "lr_final": 1e-5, "hidden": (256, 256),
                                "max_grad_norm": 10.0}
    MINATAR: ClassVar[dict] = {  # MinAtar (config.PRESETS): the MinAtar paper's DQN replay, batch, target period
        # and frames (Young & Tian 2019), Adam at 1e-4 (Obando-Ceron & Castro 2021); 8 samples per env step
        "gamma": 0.99, "buffer_size": 100_000, "batch_size": 32, "learning_starts": 5_000, "replay_ratio": 0.25,
        "lr": 1e-4, "lr_final": 1e-5, "target_update_every": 1_000, "total_env_steps": 5_000_000}
    SEARCH: ClassVar[dict] = {"lr": Hparam(("lr", "lr_final"), 1e-6, 1e-2),  # what PBT may search (algos.pbt)
                              "gamma": Hparam(("gamma",), 0.9, 0.9999, "log1m")}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_envs", "buffer_size", "batch_size", "n_step", "target_update_every",
                                           "total_env_steps")

    def check_own(self):
        if self.replay_ratio < 0:
            raise UserError(f"config: replay_ratio must be >= 0, got {self.replay_ratio}")
        if self.buffer_size < self.batch_size:
            raise UserError(f"config: buffer_size ({self.buffer_size}) must hold one batch ({self.batch_size})")


@dataclass
class AnnealedEpsilon:
    """Config mixin: epsilon-greedy exploration annealed linearly (DQN; GORILA over each actor's share)."""

    eps_start: float = opt(1.0, "epsilon at the start")
    eps_end: float = opt(0.01, "final epsilon")
    eps_fraction: float = opt(0.2, "fraction of the steps over which epsilon decays linearly")

    SEARCH: ClassVar[dict] = {"eps": Hparam(("eps_end",), 1e-3, 0.2)}
    MINATAR: ClassVar[dict] = {"eps_fraction": 0.02}  # the MinAtar paper's 100K frames of its 5M

    def epsilon(self, frac: float) -> float:
        """Epsilon after a fraction `frac` of the steps."""
        return linear(self.eps_start, self.eps_end, frac / self.eps_fraction)


@dataclass
class ReplayConfig(Publishes, ValueConfig):
    """+ the fields of the distributed ones: actors, replay shards, the throttle."""

    replay_ratio_band: float = opt(0.05, "tolerance of the replay ratio: neither side waits while updates per env "
                                         "step are within ratio * (1 -+ band)")
    weight_sync_every: int = opt(50, "actor steps (of its env vector) between weight reads")
    block_rows: int = opt(64, "rows per block an actor sends")

    DEFAULTS: ClassVar[dict] = {"total_env_steps": 150_000, "publish_every": 10}
    POSITIVE: ClassVar[tuple[str, ...]] = ("weight_sync_every", "block_rows")

    def check_own(self):
        if not 0 <= self.replay_ratio_band < 1:
            raise UserError(f"config: replay_ratio_band must be in [0, 1), got {self.replay_ratio_band}")
        if self.buffer_size < self.learning_starts:
            raise UserError(f"config: buffer_size ({self.buffer_size}) < learning_starts ({self.learning_starts}): "
                            "training would never start")


@dataclass
class LearnerConfig(AllreduceOption, ReplayConfig):
    """+ the fields of the replay learner (`run_learner`: Ape-X, R2D2): per-actor epsilons, the allreduce."""

    eps_base: float = opt(0.4, "epsilon of the per-actor schedule eps^(1 + alpha i / (N - 1))")
    eps_alpha: float = opt(7.0, "alpha of the per-actor epsilon schedule")

    SEARCH: ClassVar[dict] = {"eps": Hparam(("eps_base",), 0.05, 0.8)}

    def actor_epsilon(self, i: int, n: int) -> float:
        """Actor i of n's fixed epsilon (Ape-X)."""
        return self.eps_base ** (1 + self.eps_alpha * i / max(1, n - 1))


def build_net(cfg: ValueConfig, obs_space, act_space) -> QNetwork:
    return QNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.dueling)


def learner_parts(cfg: ValueConfig, net: torch.nn.Module) -> Parts:
    """A double-DQN learner's declared state: the online network, its target copy, Adam."""
    target = copy.deepcopy(net).requires_grad_(False)
    return Parts({"online": net, "target": target}, {"adam": Adam(net.parameters(), lr=cfg.lr, eps=1e-5)})


def load_policy(cfg: ValueConfig, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] from checkpoint weights (raises ValueError on mismatch)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    return lambda obs: greedy(net, obs, torch.device("cpu"))


def td_loss(net, target, data: dict[str, np.ndarray], weights: np.ndarray, device) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Importance-weighted Huber loss of n-step double-DQN TD errors on a batch: (loss, td [B]).

    data: obs, next_obs [B, ...], action int64 [B], ret, discount float32 [B]; weights float32 [B].
    """
    t = {k: torch.as_tensor(v, device=device) for k, v in data.items()}
    td = double_dqn_td(net, target, t["obs"], t["action"], t["ret"], t["next_obs"], t["discount"])
    return weighted_huber(td, torch.as_tensor(weights, device=device)), td


def new_priorities(td: torch.Tensor) -> np.ndarray:
    """|td| + eps, float64 [B]: the priorities a batch's slots get back."""
    return td.detach().abs().cpu().numpy().astype(np.float64) + PRIORITY_EPS


class EpsilonGreedyQ:
    """An actor's policy: epsilon-greedy on a local Q-network (CPU); initial priorities from its acting Q-values."""

    def __init__(self, net: QNetwork):
        self.net = net.requires_grad_(False)

    def load(self, flat: np.ndarray) -> None:
        load_flat(self.net, flat)

    def act(self, obs: np.ndarray, eps: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        q = q_values(self.net, obs)
        actions = q.argmax(axis=1)
        explore = rng.random(len(obs)) < eps
        actions[explore] = rng.integers(0, q.shape[1], explore.sum())
        return actions, {"q_taken": q[np.arange(len(obs)), actions], "v": q.max(axis=1)}

    def priorities(self, rows: dict) -> np.ndarray:
        return actor_priority(rows, lambda o: q_values(self.net, o), PRIORITY_EPS)


@dataclass
class Rows:
    """What a job stores in replay, and how its actors build it."""

    net: torch.nn.Module  # the initial Q-network, the same on every rank
    fields: dict  # the replay fields: name -> (shape per row, dtype)
    builder: Callable[[], object]  # a new builder of rows from vector steps (push / flush)
    policy: Callable[[torch.nn.Module], object]  # an actor's policy on its copy of the network
    steps_per_row: int  # env steps one stored row stands for (learning_starts counts rows)
    held: int  # vector steps a builder may hold before its rows are sent
    demos: Callable[[int, int], dict] | None = None  # (shard s, shards S) -> shard s's demonstration rows (R2D3)
    stacks: tuple[str, ...] = ()  # stacked frame fields the shards store as compact frames (replay.frames)


def transitions(cfg: ReplayConfig, obs_space, act_space) -> Rows:
    """n-step transitions (Ape-X, GORILA); stacks of uint8 frames (Atari) as compact frames, each env's
    FRAME_BATCH transitions together."""
    frames = obs_space.dtype == np.uint8 and len(obs_space.shape) == 3
    batch = FRAME_BATCH if frames else ACTOR_BATCH
    return Rows(build_net(cfg, obs_space, act_space), transition_fields(obs_space),
                lambda: NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma, batch=batch, env_major=frames),
                EpsilonGreedyQ, steps_per_row=1, held=cfg.n_step + batch,
                stacks=("obs", "next_obs") if frames else ())


@dataclass
class Planes:
    weights: WeightsPlane  # the learners' (or parameter server's) weights, version = update count
    replay: ReplayPlane  # the rows
    rows: Rows

    @property
    def net(self) -> torch.nn.Module:
        return self.rows.net

    def close(self) -> None:
        self.weights.close()
        self.replay.free()


def setup(rt: Runtime, cfg: ReplayConfig, writers: list[int], rows=transitions, samplers: str = "learner",
          n_params: int | None = None) -> Planes:
    """Collective: the weights plane (one shard per rank in `writers`; n_params floats, default the network's) and
    the replay plane of rows(cfg, obs_space, act_space), sampled by the ranks of role `samplers`."""
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)  # the same initial network on every rank
    kind = rows(cfg, obs_space, act_space)
    n_params = n_params or sum(p.numel() for p in kind.net.parameters())
    weights = WeightsPlane.create(rt.channels.weights, rt.node, n_params, writers)
    replay = ReplayPlane.create(rt.channels.replay, rt.node, rt.layout.ranks("replay"), kind.fields,
                                cfg.block_rows, cfg.batch_size, writer=rt.role == "actor",
                                learner=rt.role == samplers, stacks=kind.stacks)
    return Planes(weights, replay, kind)


def throttle(cfg: ReplayConfig, n_actors: int, rows: Rows) -> Throttle:
    """The replay-ratio throttle of a job with n_actors actors."""
    return Throttle(cfg.replay_ratio, cfg.replay_ratio_band, max(cfg.learning_starts, cfg.batch_size) *
                    rows.steps_per_row, slack=n_actors * cfg.num_envs * rows.held, lag=cfg.publish_every)


def run_actor(rt: Runtime, cfg: ReplayConfig, planes: Planes, epsilon, resumed: State | None) -> None:
    """The `actor` role: epsilon(steps, share) -> rate; the rows' builder and policy, with initial priorities."""
    actor.run_actor(rt, cfg, planes.replay, planes.weights.window, planes.rows.policy(planes.net),
                    planes.rows.builder(), epsilon, throttle(cfg, len(rt.layout.ranks("actor")), planes.rows),
                    lifecycle.client(rt, lead_learner(rt)), resumed.env_steps if resumed else 0)


def run_replay(rt: Runtime, cfg: ReplayConfig, planes: Planes, resumed: State | None, samplers: str = "learner"
               ) -> None:
    """The `replay` role: serves the actors and the samplers (ranks of that role) until each has said STOP."""
    clients = len(rt.layout.ranks("actor")) + len(rt.layout.ranks(samplers))
    run_shard(planes.replay, cfg.buffer_size, cfg.alpha, rt.gen, clients, lifecycle.client(rt, lead_learner(rt)),
              cfg.run_dir, cfg.checkpoint_replay, resumed, planes.rows.demos)


def lead_learner(rt: Runtime) -> int:
    return rt.layout.ranks("learner")[0]


REPLAY_COLUMNS = ["loss", "replay_size", "replay_fill", "sample_rate", "learner_waiting", "learners"]


def run_learner(rt: Runtime, cfg: LearnerConfig, planes: Planes, resumed: State | None, algo: str, learn,
                demo_ratio: float = 0.0) -> dict:
    """The replay learner (Ape-X, R2D2, R2D3): once max(learning_starts, batch_size) rows are stored, sample a
    prioritized batch (each row from the shards' demo replays with probability demo_ratio), asking for the next one
    before training on it -> learn(net, target, batch, device) -> (loss, new priorities float64 [B]) -> one
    allreduce of the gradients of every learner (the lead's progress and stop flag ride on it) -> clipped Adam step
    -> priorities back to the shards -> the lead publishes its weights every `publish_every` updates, logs and
    checkpoints. The target network is copied every `target_update_every` updates."""
    learners = rt.role_comm
    parts = learner_parts(cfg, planes.net.to(nets.device(cfg.device)))
    learner = Learner(rt, cfg, algo, parts, REPLAY_COLUMNS + (["demo_fraction"] if demo_ratio else []), resumed)
    net = parts.nets["online"]
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=2)  # + progress, stop

    def publish():
        planes.weights.publish(flat_params(net), learner.updates)  # version = updates

    if learner.lead:
        publish()
    sampler = planes.replay.sampler(rt.gen)
    loop = ReplayLoop(cfg, learner, sampler, allreduce, throttle(cfg, len(rt.layout.ranks("actor")), planes.rows),
                      learn, demo_ratio, publish)
    if loop.start(learners):
        while loop.step():
            pass
    return learner.finish(loop.row, sampler, allreduce, final=publish)


class ReplayLoop:
    """The replay learner's steps (run_learner): sample -> learn -> allreduce -> sgd -> priorities -> publish -> poll,
    and the metrics they leave (`row`)."""

    def __init__(self, cfg: LearnerConfig, learner: Learner, sampler, allreduce, gate: Throttle, learn,
                 demo_ratio: float, publish):
        self.cfg, self.learner, self.sampler, self.grads, self.gate = cfg, learner, sampler, allreduce, gate
        self.learn, self.demo_ratio, self.publish = learn, demo_ratio, publish
        self.device = nets.device(cfg.device)
        self.frac, self.loss, self.size = 0.0, float("nan"), 0
        self.demo_rows = np.zeros(2, np.int64)  # (demo rows, rows) of the lead's batches since the last row
        self.waiting = Stopwatch()

    def row(self) -> dict:
        cfg, learners = self.cfg, self.grads.comm.size
        out = {"loss": self.loss, "replay_size": self.size, "replay_fill": round(self.size / cfg.buffer_size, 4),
               "sample_rate": round(self.learner.log.rates[1] * cfg.batch_size * learners, 1),
               "learner_waiting": self.waiting.fraction(), "learners": learners}
        if self.demo_ratio:
            out["demo_fraction"] = round(self.demo_rows[0] / max(self.demo_rows[1], 1), 4)
            self.demo_rows[:] = 0
        return out

    def start(self, learners) -> bool:
        """The lead waits for the first batch's rows and says whether training starts at all (not when the actors
        finished first); every learner then asks for its first batch."""
        go = np.zeros(1, np.int64)
        if self.learner.lead:
            go[0] = wait_for_replay(self.sampler, self.cfg, lambda: self.learner.stats.all_done,
                                    lambda: self.learner.poll(self.row))
        wait(learners.Ibcast(go, root=0), what="the lead learner's start")
        if go[0]:
            self.sampler.request(self.cfg.batch_size, self.demo_ratio)
        return bool(go[0])

    def hold(self) -> bool:
        """Poll; the lead waits while ahead of the actors (replay ratio) and returns True once they are all done."""
        learner = self.learner
        if not learner.lead:
            learner.poll()
            return False
        t0 = time.monotonic()
        while True:
            learner.poll(self.row)
            if learner.stats.all_done or not self.gate.learners_wait(learner.updates, learner.steps):
                break
            time.sleep(0.001)
        self.waiting.add(time.monotonic() - t0)
        return learner.stats.all_done

    def step(self) -> bool:
        """One update; False once the lead said stop (no update then)."""
        cfg, learner, sampler = self.cfg, self.learner, self.sampler
        net, target = learner.parts.nets["online"], learner.parts.nets["target"]
        opt = learner.parts.optims["adam"]
        stop = self.hold()
        batch = sampler.receive(linear(cfg.beta_start, 1.0, self.frac))
        sampler.request(cfg.batch_size, self.demo_ratio)  # the shards gather the next batch while this one trains
        loss, priorities = self.learn(net, target, batch, self.device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        progress, stop_sum = self.grads(np.array([learner.progress, stop]) if learner.lead else None)
        if stop_sum:
            return False
        self.frac = float(progress)
        for g in opt.param_groups:
            g["lr"] = linear(cfg.lr, cfg.lr_final, self.frac)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        opt.step()
        sampler.update_priorities(batch, priorities)
        learner.updates += 1
        self.size = batch.size
        self.demo_rows += (int(batch.demo.sum()), len(batch.demo))
        if learner.updates % cfg.target_update_every == 0:
            target.load_state_dict(net.state_dict())
        if learner.lead:
            self.loss = float(loss.detach())
            if learner.updates % cfg.publish_every == 0:
                self.publish()
        learner.checkpoint()
        return True


def wait_for_replay(sampler, cfg: ValueConfig, done, tick) -> bool:
    """Poll the shards' sizes (every 10 ms) until max(learning_starts, batch_size) transitions are stored: True;
    or until done() says the actors have finished first: False. tick() runs between polls."""
    while not done():
        if sampler.stats()[0].sum() >= max(cfg.learning_starts, cfg.batch_size):
            return True
        tick()
        time.sleep(0.01)
    return False


class Stopwatch:
    """Seconds spent waiting, as a fraction of the wall time since the last `fraction()`."""

    def __init__(self):
        self.waited, self.since = 0.0, time.monotonic()

    def add(self, seconds: float) -> None:
        self.waited += seconds

    def fraction(self) -> float:
        now = time.monotonic()
        f = self.waited / max(now - self.since, 1e-9)
        self.waited, self.since = 0.0, now
        return round(f, 4)
