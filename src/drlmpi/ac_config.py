"""The actor-critic algorithms' configuration and planes, without torch: what a rank that holds no model (GA3C's
and SEED RL's actors) imports of the family (drlmpi.actor_critic re-exports every name).

  ACConfig        the fields and checks of every actor-critic learner: unroll length, loss weights, the network's
                  shape (and Trained's)
  UnrollBatch, PolicyLag, VTraceClip, Surrogate
                  config mixins of the unroll learners (batch size; stale unrolls dropped; V-trace's thresholds) and
                  of the clipped-surrogate ones (epochs, minibatches, clip: PPO, APPO)
  require_discrete
                  the one-line error of a central-inference algorithm on a Box action space
  UnrollPlanes    the weights and trajectory planes of a learner of unrolls
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from drlmpi.comm.trajectories import TrajectoryPlane
from drlmpi.comm.weights import WeightsPlane
from drlmpi.config import Hparam, Publishes, Trained, opt, require_choice
from drlmpi.envs import is_box, spaces
from drlmpi.errors import UserError

if TYPE_CHECKING:
    import torch

ACTIVATIONS = ("relu", "tanh")  # nets.ACTIVATIONS' names (tests/unit/test_nets.py checks they agree)


@dataclass
class ACConfig(Trained):
    """+ the fields of every actor-critic learner."""

    n_steps: int = opt(5, "steps per unroll T (the n of the n-step returns)")
    entropy_cost: float = opt(0.01, "weight of the entropy bonus")
    baseline_cost: float = opt(0.5, "weight of the value loss")
    separate_value: bool = opt(False, "the value has a torso of its own (no LSTM core then)", True)
    activation: str = opt("relu", "MLP activation: relu or tanh", True)
    orthogonal_init: bool = opt(False, "PPO's initialisation: orthogonal layers, the policy head's gain 0.01", True)

    DEFAULTS: ClassVar[dict] = {"num_envs": 8, "total_env_steps": 1_000_000}
    IMAGES: ClassVar[dict] = {"separate_value": False, "orthogonal_init": False}  # one conv torso
    SAVED_BEFORE: ClassVar[dict] = {"separate_value": False, "activation": "relu", "orthogonal_init": False}
    ATARI: ClassVar[dict] = IMAGES
    MINATAR: ClassVar[dict] = {**IMAGES, "gamma": 0.99, "lr": 3e-4, "lr_final": 0.0, "entropy_cost": 0.01,  # MinAtar
                               "total_env_steps": 5_000_000}  # (config.PRESETS), the paper's frames
    SEARCH: ClassVar[dict] = {"lr": Hparam(("lr", "lr_final"), 1e-5, 1e-2),  # what PBT may search (algos.pbt)
                              "gamma": Hparam(("gamma",), 0.9, 0.9999, "log1m"),
                              "entropy": Hparam(("entropy_cost",), 1e-4, 0.1)}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_envs", "n_steps", "total_env_steps")

    def check_own(self):
        require_choice(self, "activation", ACTIVATIONS)
        if self.separate_value and getattr(self, "lstm", 0):
            raise UserError("config: separate_value has no LSTM core: set lstm=0 or separate_value=false")


@dataclass
class UnrollBatch:
    """Config mixin of the learners of batches of unrolls (IMPALA, GA3C, SEED)."""

    batch_size: int = opt(4, "unrolls per learner update (each [n_steps, num_envs])")

    POSITIVE: ClassVar[tuple[str, ...]] = ("batch_size",)


@dataclass
class PolicyLag(Publishes):
    """Config mixin of the learners of unrolls acted on published weights (IMPALA, GA3C)."""

    max_policy_lag: int = opt(0, "drop unrolls that acted on weights more than this many updates old (0: keep all)")

    def check_own(self):
        if self.max_policy_lag < 0 or 0 < self.max_policy_lag < self.publish_every:
            raise UserError(f"config: max_policy_lag must be 0 (off) or >= publish_every ({self.publish_every}): "
                            f"got {self.max_policy_lag}, and actors act on weights up to publish_every - 1 updates old")


@dataclass
class Surrogate:
    """Config mixin of the clipped-surrogate learners (PPO, APPO)."""

    epochs: int = opt(4, "passes over each batch of experience")
    minibatches: int = opt(4, "minibatches each pass splits a batch into, one update each (PPO: each worker's rollout, "
                              "one allreduce each)")
    clip: float = opt(0.2, "the surrogate's clipping epsilon for the ratio to the acting policy (PPO: at the start, "
                           "annealed to clip_final)")

    POSITIVE: ClassVar[tuple[str, ...]] = ("epochs", "minibatches")

    def check_own(self):
        if not 0 < self.clip <= 1:
            raise UserError(f"config: clip must be in (0, 1], got {self.clip}")


@dataclass
class VTraceClip:
    """Config mixin of the V-trace learners (IMPALA, SEED)."""

    clip_rho_threshold: float = opt(1.0, "V-trace rho-bar (<= 0: no clipping)")
    clip_pg_rho_threshold: float = opt(1.0, "V-trace rho-bar of the policy-gradient advantages (<= 0: no clipping)")

    def vtrace_clip(self) -> tuple[float | None, float | None]:
        """V-trace's (rho-bar, pg rho-bar) (None: no clipping)."""
        return tuple(t if t > 0 else None for t in (self.clip_rho_threshold, self.clip_pg_rho_threshold))


def require_discrete(cfg, algo: str) -> None:
    """UserError (one line) for an env whose actions are not Discrete (the central-inference algorithms)."""
    if is_box(spaces(cfg.env)[1]):
        raise UserError(f"config: {algo} acts on Discrete actions; {cfg.env} has a Box (continuous actions: a2c, "
                        "a3c, impala, ppo, appo)")


@dataclass
class UnrollPlanes:
    """The planes of a learner of unrolls (run_unroll_learner): the lead learner's weights, the trajectories."""

    weights: WeightsPlane  # the lead learner's weights, version = update count
    trajectories: TrajectoryPlane  # the unrolls' senders -> the learners
    net: "torch.nn.Module | None"  # the initial network, the same on every rank that builds it

    def close(self) -> None:
        self.weights.close()
        self.trajectories.free()


def initial_net_unless_actor(rt, cfg: ACConfig, obs_space, act_space, actor_builds: bool = False
                             ) -> "torch.nn.Module | None":
    """actor_critic.initial_net (torch seeded with cfg.seed, then the network) on every rank but an actor, unless
    actor_builds: None there. A central-inference algorithm's actor (GA3C, SEED RL) holds no model; an IMPALA or APPO
    actor acts in numpy on vector observations (acting.acts_without_torch): neither imports torch. torch's threads are
    set as soon as it is imported."""
    if rt.role == "actor" and not actor_builds:
        return None
    from drlmpi.actor_critic import initial_net

    rt.use_threads()
    return initial_net(cfg, obs_space, act_space)


MODEL_NAMES = ("build_net", "learner_parts", "load_policy")


def model_name(module: str, name: str):
    """What a module `__getattr__` (PEP 562) returns: drlmpi.actor_critic's build_net, learner_parts or load_policy,
    imported on first use, so that an algorithm whose actors hold no model exports them to the CLI, evaluation and
    checkpoints without importing torch when it is imported."""
    if name in MODEL_NAMES:
        from drlmpi import actor_critic

        return getattr(actor_critic, name)
    raise AttributeError(f"module {module!r} has no attribute {name!r}")
