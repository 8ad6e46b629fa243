"""What the value-based algorithms (DQN, Ape-X, GORILA, R2D2, R2D3, QT-Opt) share that needs no torch: what an actor
that acts in numpy and a replay shard import (value_based has the rest and re-exports this).

  ValueConfig      the fields and checks of every double-DQN learner
  ReplayConfig     + the fields of the distributed ones: actors, replay shards, the throttle
  LearnerConfig    + per-actor epsilons and the learners' allreduce (value_based.run_learner)
  AnnealedEpsilon  a config mixin: epsilon annealed linearly (DQN, GORILA)
  build_net        the Q-network (MLP or Nature CNN, dueling), torch imported on first use
  EpsilonGreedyQ, TorchQ
                   acting for the replay actor loop: epsilon-greedy on a local Q-network (acting.MLPQNetwork in
                   numpy, or TorchQ on the torch one), with initial priorities from the Q-values computed when acting
  Rows, transitions
                   what a job stores in replay and how its actors build it: n-step transitions (Ape-X, GORILA),
                   or an algorithm's own (R2D2's sequences)
  Planes, setup    the weights and replay planes of a distributed job (collective)
  throttle, run_actor, run_replay, lead_learner
                   the replay-ratio throttle, the actor and replay-shard roles, the lead learner's rank
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drlmpi import lifecycle
from drlmpi.acting import MLPQNetwork, acts_without_torch
from drlmpi.checkpoint import State
from drlmpi.comm.weights import WeightsPlane
from drlmpi.config import AllreduceOption, Hparam, Publishes, Trained, opt
from drlmpi.envs import spaces
from drlmpi.errors import UserError, invariant
from drlmpi.ops.priority import actor_priority
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, actor, transition_fields
from drlmpi.replay.frames import ENV_BLOCK
from drlmpi.replay.plane import ReplayPlane, run_shard
from drlmpi.replay.throttle import Throttle
from drlmpi.runtime import Runtime

if TYPE_CHECKING:
    import torch

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


def build_net(cfg: ValueConfig, obs_space, act_space) -> "torch.nn.Module":
    """nets.QNetwork for these spaces (imports torch)."""
    from drlmpi.nets import QNetwork

    return QNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.dueling)


class TorchQ:
    """A torch Q-network as EpsilonGreedyQ's: load(flat [n]); __call__(obs [E, ...]) -> Q [E, A] numpy (on CPU)."""

    def __init__(self, net: "torch.nn.Module"):
        from drlmpi.nets import load_flat, q_values  # (torch: imported where a torch network acts)

        self.net, self._load, self._q = net.requires_grad_(False), load_flat, q_values

    def load(self, flat: np.ndarray) -> None:
        self._load(self.net, flat)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return self._q(self.net, obs)


class EpsilonGreedyQ:
    """An actor's policy: epsilon-greedy on a local Q-network (q: load(flat), q(obs [E, ...]) -> [E, A] numpy:
    acting.MLPQNetwork or TorchQ); initial priorities from its acting Q-values."""

    def __init__(self, q):
        self.q = q

    def load(self, flat: np.ndarray) -> None:
        self.q.load(flat)

    def act(self, obs: np.ndarray, eps: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        q = self.q(obs)
        actions = q.argmax(axis=1)
        explore = rng.random(len(obs)) < eps
        actions[explore] = rng.integers(0, q.shape[1], explore.sum())
        return actions, {"q_taken": q[np.arange(len(obs)), actions], "v": q.max(axis=1)}

    def priorities(self, rows: dict) -> np.ndarray:
        return actor_priority(rows, self.q, PRIORITY_EPS)


@dataclass
class Rows:
    """What a job stores in replay, and how its actors build it."""

    make_net: Callable[[], "torch.nn.Module"] | None  # builds the initial Q-network (see build)
    fields: dict  # the replay fields: name -> (shape per row, dtype)
    builder: Callable[[], object]  # a new builder of rows from vector steps (push / flush)
    policy: Callable[["torch.nn.Module"], object]  # an actor's policy on its copy of the network
    steps_per_row: int  # env steps one stored row stands for (learning_starts counts rows)
    held: int  # vector steps a builder may hold before its rows are sent
    demos: Callable[[int, int], dict] | None = None  # (shard s, shards S) -> shard s's demonstration rows (R2D3)
    stacks: tuple[str, ...] = ()  # stacked frame fields the shards store as compact frames (replay.frames)
    n_params: int | None = None  # the network's size where it is known without torch: a replay shard builds none
    numpy_policy: Callable[[], object] | None = None  # an actor's policy without torch: an actor builds no network
    _net: object = field(default=None, repr=False)

    def needs_net(self, role: str) -> bool:
        """Whether a rank of this role builds the torch network (and so imports torch)."""
        return not (role == "actor" and self.numpy_policy or role == "replay" and self.n_params)

    def build(self, seed: int) -> None:
        """torch seeded with `seed`, then make_net(): the same initial network on every rank that builds it."""
        import torch

        torch.manual_seed(seed)
        self._net = self.make_net()

    @property
    def net(self) -> "torch.nn.Module":
        invariant(self._net is not None, "Rows.net read on a rank that built no network (Rows.needs_net)")
        return self._net

    def actor_policy(self):
        return self.numpy_policy() if self.numpy_policy else self.policy(self.net)


def transitions(cfg: ReplayConfig, obs_space, act_space) -> Rows:
    """n-step transitions (Ape-X, GORILA); stacks of uint8 frames (Atari) as compact frames, each env's
    FRAME_BATCH transitions together. On vector observations the actors act with acting.MLPQNetwork and the replay
    shards build no network (nor import torch)."""
    frames = obs_space.dtype == np.uint8 and len(obs_space.shape) == 3
    batch = FRAME_BATCH if frames else ACTOR_BATCH
    q = (MLPQNetwork(int(np.prod(obs_space.shape)), int(act_space.n), tuple(cfg.hidden), cfg.dueling)
         if acts_without_torch(cfg, obs_space.shape) else None)
    return Rows(lambda: build_net(cfg, obs_space, act_space), transition_fields(obs_space),
                lambda: NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma, batch=batch, env_major=frames),
                lambda net: EpsilonGreedyQ(TorchQ(net)), steps_per_row=1, held=cfg.n_step + batch,
                stacks=("obs", "next_obs") if frames else (), n_params=q.n if q else None,
                numpy_policy=(lambda: EpsilonGreedyQ(q)) if q else None)


@dataclass
class Planes:
    weights: WeightsPlane  # the learners' (or parameter server's) weights, version = update count
    replay: ReplayPlane  # the rows
    rows: Rows

    @property
    def net(self) -> "torch.nn.Module":
        return self.rows.net

    def close(self) -> None:
        self.weights.close()
        self.replay.free()


def setup(rt: Runtime, cfg: ReplayConfig, writers: list[int], rows=transitions, samplers: str = "learner",
          n_params: int | None = None) -> Planes:
    """Collective: the weights plane (one shard per rank in `writers`; n_params floats, default the network's) and
    the replay plane of rows(cfg, obs_space, act_space), sampled by the ranks of role `samplers`; the initial
    network on the ranks that need one (Rows.needs_net: not a torch-free actor or replay shard)."""
    obs_space, act_space = spaces(cfg.env)
    kind = rows(cfg, obs_space, act_space)
    if kind.needs_net(rt.role):
        kind.build(cfg.seed)  # the same initial network on every rank that builds it
        rt.use_threads()
    if kind.n_params and kind._net is not None:
        invariant(kind.n_params == sum(p.numel() for p in kind.net.parameters()), "Rows.n_params: not the network's")
    n_params = n_params or kind.n_params or sum(p.numel() for p in kind.net.parameters())
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
    actor.run_actor(rt, cfg, planes.replay, planes.weights.window, planes.rows.actor_policy(),
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
