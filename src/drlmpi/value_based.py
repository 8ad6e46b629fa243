"""What the value-based algorithms (DQN, Ape-X, GORILA) share, written once.

  ValueConfig      the fields and checks of every double-DQN learner
  ReplayConfig     + the fields of the distributed ones: actors, replay shards, the throttle
  AnnealedEpsilon  a config mixin: epsilon annealed linearly (DQN, GORILA)
  build_net, load_policy
                   the Q-network (MLP or Nature CNN, dueling) and the greedy policy of a checkpoint
  td_loss, new_priorities
                   the prioritized double-DQN step: batch -> (loss, td [B]) -> |td| + eps
  EpsilonGreedyQ   acting for the replay actor loop: epsilon-greedy on a local Q-network, with initial
                   priorities from the Q-values computed when acting
  Planes, setup    the weights and replay planes of a distributed job (collective)
  run_actor, run_replay, run_roles, wait_for_replay
                   the actor and replay-shard roles, the dispatch, and a learner's wait for its first batch
"""

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle
from drlmpi.checkpoint import State
from drlmpi.comm.weights import WeightsPlane
from drlmpi.config import Common, opt, require_at_least
from drlmpi.envs import spaces
from drlmpi.errors import UserError
from drlmpi.nets import QNetwork, greedy, load_arrays, load_flat, q_values
from drlmpi.ops.qlearning import actor_priority, double_dqn_td, weighted_huber
from drlmpi.ops.schedules import linear
from drlmpi.replay import NStepBuilder, actor, transition_fields
from drlmpi.replay.plane import ReplayPlane, run_shard
from drlmpi.replay.throttle import Throttle
from drlmpi.runtime import Runtime

PRIORITY_EPS = 1e-6
ACTOR_BATCH = 16  # vector steps an actor's n-step builder decides at once (numpy cost per step shrinks with it)


@dataclass
class ValueConfig(Common):
    num_envs: int = opt(4, "environments stepped together per acting rank")
    buffer_size: int = opt(100_000, "replay capacity in n-step transitions (split evenly over replay shards)")
    batch_size: int = opt(128, "transitions per update")
    lr: float = opt(6e-4, "learning rate at the start")
    lr_final: float = opt(1e-5, "learning rate reached linearly at the end of training")
    gamma: float = opt(0.99, "discount")
    n_step: int = opt(3, "n of the n-step return")
    learning_starts: int = opt(2_000, "transitions stored before the first update")
    replay_ratio: float = opt(0.25, "updates per env step")
    target_update_every: int = opt(250, "updates between copies of the online net to the target net")
    alpha: float = opt(0.6, "priority exponent (0: uniform replay)")
    beta_start: float = opt(0.4, "importance-weight exponent at the start (annealed to 1)")
    hidden: tuple[int, ...] = opt((256, 256), "MLP hidden sizes (vector observations)")
    dueling: bool = opt(True, "dueling value/advantage head")
    max_grad_norm: float = opt(10.0, "gradient clipping by global norm")
    clip_rewards: str = opt("auto", "clip rewards to [-1, 1] for learning: auto (Atari only), on, off")

    POSITIVE: ClassVar[tuple[str, ...]] = ("num_envs", "buffer_size", "batch_size", "n_step", "target_update_every",
                                           "total_env_steps", "keep_checkpoints")

    def check(self):
        require_at_least(self, self.POSITIVE)
        if not 0 < self.gamma <= 1:
            raise UserError(f"config: gamma must be in (0, 1], got {self.gamma}")
        if self.replay_ratio < 0:
            raise UserError(f"config: replay_ratio must be >= 0, got {self.replay_ratio}")
        if self.clip_rewards not in ("auto", "on", "off"):
            raise UserError(f"config: clip_rewards must be auto, on or off, got {self.clip_rewards!r}")
        if self.buffer_size < self.batch_size:
            raise UserError(f"config: buffer_size ({self.buffer_size}) must hold one batch ({self.batch_size})")


@dataclass
class AnnealedEpsilon:
    """Config mixin: epsilon-greedy exploration annealed linearly (DQN; GORILA over each actor's share)."""

    eps_start: float = opt(1.0, "epsilon at the start")
    eps_end: float = opt(0.01, "final epsilon")
    eps_fraction: float = opt(0.2, "fraction of the steps over which epsilon decays linearly")

    def epsilon(self, frac: float) -> float:
        """Epsilon after a fraction `frac` of the steps."""
        return linear(self.eps_start, self.eps_end, frac / self.eps_fraction)


@dataclass
class ReplayConfig(ValueConfig):
    total_env_steps: int = opt(150_000, "environment steps (agent steps, all envs and actors) to train for")
    replay_ratio: float = opt(0.25, "updates per env step: learners wait when ahead, actors when the learners lag "
                                    "(0 lets both run free)")
    replay_ratio_band: float = opt(0.05, "tolerance of the replay ratio: neither side waits while updates per env "
                                         "step are within ratio * (1 -+ band)")
    publish_every: int = opt(10, "updates between weight publications to the actors")
    weight_sync_every: int = opt(50, "actor steps (of its env vector) between weight reads")
    block_rows: int = opt(64, "transitions per block an actor sends")

    POSITIVE: ClassVar[tuple[str, ...]] = ValueConfig.POSITIVE + ("publish_every", "weight_sync_every", "block_rows")

    def check(self):
        super().check()
        if not 0 <= self.replay_ratio_band < 1:
            raise UserError(f"config: replay_ratio_band must be in [0, 1), got {self.replay_ratio_band}")
        if self.buffer_size < self.learning_starts:
            raise UserError(f"config: buffer_size ({self.buffer_size}) < learning_starts ({self.learning_starts}): "
                            "training would never start")


def build_net(cfg: ValueConfig, obs_space, act_space) -> QNetwork:
    return QNetwork(obs_space.shape, int(act_space.n), tuple(cfg.hidden), cfg.dueling)


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
class Planes:
    weights: WeightsPlane  # the learners' (or parameter server's) weights, version = update count
    replay: ReplayPlane  # n-step transitions
    net: QNetwork  # the initial network, the same on every rank


def setup(rt: Runtime, cfg: ReplayConfig, writers: list[int]) -> Planes:
    """Collective: the weights plane (one shard per rank in `writers`) and the replay plane."""
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)  # the same initial network on every rank
    net = build_net(cfg, obs_space, act_space)
    n_params = sum(p.numel() for p in net.parameters())
    weights = WeightsPlane.create(rt.channels.weights, rt.node, n_params, writers)
    replay = ReplayPlane.create(rt.channels.replay, rt.node, rt.layout.ranks("replay"), transition_fields(obs_space),
                                cfg.block_rows, cfg.batch_size, writer=rt.role == "actor",
                                learner=rt.role == "learner")
    return Planes(weights, replay, net)


def throttle(cfg: ReplayConfig, n_actors: int) -> Throttle:
    """The replay-ratio throttle of a job with n_actors actors."""
    return Throttle(cfg.replay_ratio, cfg.replay_ratio_band, max(cfg.learning_starts, cfg.batch_size),
                    slack=n_actors * cfg.num_envs * (cfg.n_step + ACTOR_BATCH), lag=cfg.publish_every)


def run_actor(rt: Runtime, cfg: ReplayConfig, planes: Planes, epsilon, resumed: State | None) -> None:
    """The `actor` role: epsilon(steps, share) -> rate; n-step transitions with initial priorities."""
    builder = NStepBuilder(cfg.num_envs, cfg.n_step, cfg.gamma, batch=ACTOR_BATCH)
    actor.run_actor(rt, cfg, planes.replay, planes.weights.window, EpsilonGreedyQ(planes.net), builder, epsilon,
                    throttle(cfg, len(rt.layout.ranks("actor"))), lifecycle.client(rt, lead_learner(rt)),
                    resumed.env_steps if resumed else 0)


def run_replay(rt: Runtime, cfg: ReplayConfig, planes: Planes, resumed: State | None) -> None:
    """The `replay` role: serves the actors and learners until each has said STOP."""
    clients = len(rt.layout.ranks("actor")) + len(rt.layout.ranks("learner"))
    run_shard(planes.replay, cfg.buffer_size, cfg.alpha, rt.gen, clients, lifecycle.client(rt, lead_learner(rt)),
              cfg.run_dir, cfg.checkpoint_replay, resumed)


def lead_learner(rt: Runtime) -> int:
    return rt.layout.ranks("learner")[0]


def run_roles(rt: Runtime, cfg: ReplayConfig, writers: list[int], epsilon, resumed: State | None,
              **roles) -> dict | None:
    """Set up the planes (collective), then run this rank's role: `actor` and `replay` are shared,
    the others are roles[rt.role](rt, cfg, planes, resumed). writers: the ranks publishing the weights.
    Every rank's generators are seeded, then restored from `resumed` if it holds this rank's."""
    planes = setup(rt, cfg, writers)
    torch.manual_seed(rt.torch_seed())
    lifecycle.restore_rng(resumed, rt.who, rt.gen)
    summary = None  # a learner's summary (the lead's is printed)
    if rt.role == "actor":
        run_actor(rt, cfg, planes, epsilon, resumed)
    elif rt.role == "replay":
        run_replay(rt, cfg, planes, resumed)
    else:
        summary = roles[rt.role](rt, cfg, planes, resumed)
    planes.weights.close()
    return summary


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
