"""What the actor-critic algorithms (A2C, A3C, IMPALA, GA3C, SEED) share, written once.

  ACConfig        the fields and checks of every actor-critic learner: unroll length, loss weights (and Trained's)
  UnrollBatch, PolicyLag, VTraceClip
                  config mixins of the unroll learners (batch size; stale unrolls dropped; V-trace's thresholds)
  build_net, load_policy
                  the actor-critic network (MLP or Nature CNN torso; policy logits and value) and the greedy
                  (most probable action) policy of a checkpoint
  collect         one on-policy unroll [n_steps, E] with the current weights
  nstep_loss      the n-step advantage actor-critic loss of an unroll (A2C, A3C)
  forward_unrolls a learner's forward over a batch of unrolls [T + 1, N], with the recurrent state at each
                  unroll's start when the net has a core (each algorithm's `learn` takes it from there)
  learner_parts   an unroll learner's declared state: the network and RMSProp (IMPALA, GA3C, SEED)
  loss_row        the metrics of an update's losses
  run_unroll_learner
                  the learner of unrolls from the trajectory plane (IMPALA, GA3C), around its algorithm's `learn`
Central inference (GA3C, SEED) is in drlmpi.central.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import nets
from drlmpi.comm.allreduce import GradAllreduce, learners_step
from drlmpi.comm.trajectories import TrajectoryPlane
from drlmpi.comm.weights import WeightsPlane
from drlmpi.config import Hparam, Publishes, Trained, opt
from drlmpi.errors import UserError
from drlmpi.learner import Learner, Parts
from drlmpi.nets import ActorCritic, flat_params, load_arrays
from drlmpi.ops import vtrace
from drlmpi.ops.actor_critic import Losses, actor_critic_loss, sample_actions


@dataclass
class ACConfig(Trained):
    """+ the fields of every actor-critic learner."""

    n_steps: int = opt(5, "steps per unroll T (the n of the n-step returns)")
    entropy_cost: float = opt(0.01, "weight of the entropy bonus")
    baseline_cost: float = opt(0.5, "weight of the value loss")

    DEFAULTS: ClassVar[dict] = {"num_envs": 8, "total_env_steps": 1_000_000}
    MINATAR: ClassVar[dict] = {"gamma": 0.99, "lr": 3e-4, "lr_final": 0.0, "entropy_cost": 0.01,  # MinAtar
                               "total_env_steps": 5_000_000}  # (config.PRESETS), the paper's frames
    SEARCH: ClassVar[dict] = {"lr": Hparam(("lr", "lr_final"), 1e-5, 1e-2),  # what PBT may search (algos.pbt)
                              "gamma": Hparam(("gamma",), 0.9, 0.9999, "log1m"),
                              "entropy": Hparam(("entropy_cost",), 1e-4, 0.1)}
    POSITIVE: ClassVar[tuple[str, ...]] = ("num_envs", "n_steps", "total_env_steps")


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
class VTraceClip:
    """Config mixin of the V-trace learners (IMPALA, SEED)."""

    clip_rho_threshold: float = opt(1.0, "V-trace rho-bar (<= 0: no clipping)")
    clip_pg_rho_threshold: float = opt(1.0, "V-trace rho-bar of the policy-gradient advantages (<= 0: no clipping)")

    def vtrace_clip(self) -> tuple[float | None, float | None]:
        """V-trace's (rho-bar, pg rho-bar) (None: no clipping)."""
        return tuple(t if t > 0 else None for t in (self.clip_rho_threshold, self.clip_pg_rho_threshold))


def build_net(cfg: ACConfig, obs_space, act_space) -> ActorCritic:
    return ActorCritic(obs_space.shape, act_space.n, cfg.hidden, getattr(cfg, "lstm", 0))


def load_policy(cfg: ACConfig, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] (the most probable action) from checkpoint weights; with an LSTM
    core it carries its state, which `policy.reset(done [E])` zeroes where episodes ended."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    state = [net.initial_state(env.num_envs)]

    def policy(obs):
        with torch.no_grad():
            logits, _, state[0] = net(torch.as_tensor(obs)[None], state[0])
            return logits[0].argmax(-1).numpy()

    def reset(done: np.ndarray):
        keep = torch.as_tensor(~done, dtype=torch.float32).unsqueeze(1)
        state[0] = tuple(s * keep for s in state[0])

    policy.reset = reset
    return policy


def collect(net, env, obs: np.ndarray, cfg: ACConfig, clip_reward: bool, episodes: list, out: dict | None = None
            ) -> tuple[dict, np.ndarray]:
    """One unroll [n_steps, E] with the current weights: obs, action, reward (clipped to [-1, 1] if clip_reward),
    discount (gamma, 0 after a termination), and the acting logits [n_steps, E, A] if `out` has them; a truncated
    episode's reward gets gamma V(final obs) and discount 0. Fills `out` (field views with at least n_steps rows,
    e.g. an unroll slot) or new arrays. Returns (unroll, next obs); finished episodes' returns go to `episodes`."""
    T, E = cfg.n_steps, env.num_envs
    u = out if out is not None else {
        "obs": np.empty((T, *obs.shape), obs.dtype), "action": np.empty((T, E), np.int64),
        "reward": np.empty((T, E), np.float32), "discount": np.empty((T, E), np.float32)}
    with torch.no_grad():
        for t in range(T):
            u["obs"][t] = obs
            logits, _, _ = net(torch.as_tensor(obs)[None])
            action = sample_actions(logits[0]).numpy()
            if "logits" in u:
                u["logits"][t] = logits[0].numpy()
            step = env.step(action)
            reward = np.clip(step.reward, -1, 1) if clip_reward else step.reward
            cut = step.truncated & ~step.terminated
            if cut.any():  # bootstrap a time limit: it is not the end of the task
                _, v, _ = net(torch.as_tensor(step.final_obs[cut])[None])
                reward = reward.copy()
                reward[cut] += restarted_bootstrap(step, cut, cfg.gamma) * v[0].numpy()
            u["action"][t], u["reward"][t] = action, reward
            u["discount"][t] = cfg.gamma * ~step.done
            episodes += [ret for ret, _ in step.episodes]
            obs = step.obs
    return u, obs


def restarted_bootstrap(step, cut: np.ndarray, gamma: float) -> np.ndarray:
    """The factor of V(final obs) in the reward of each cut env [cut.sum()]: gamma for a time limit; 1 for an env that
    failed (envs.Restarting): its step did not happen, so its return is V of the obs that acted and its advantage
    about 0 (the slot must be filled in a fixed-size unroll, but it teaches nothing)."""
    if step.restarted is None:
        return np.full(int(cut.sum()), gamma, np.float32)
    return np.where(step.restarted[cut], 1.0, gamma).astype(np.float32)


def nstep_loss(net, u: dict, last_obs: np.ndarray, cfg: ACConfig) -> Losses:
    """The n-step advantage actor-critic loss of an unroll (V-trace with log rhos 0: the bootstrapped returns)."""
    logits, values, _ = net(torch.as_tensor(u["obs"]))
    with torch.no_grad():
        bootstrap = net(torch.as_tensor(last_obs)[None])[1][0]
    discounts, rewards = torch.as_tensor(u["discount"]), torch.as_tensor(u["reward"])
    ret = vtrace.from_importance_weights(torch.zeros_like(rewards), discounts, rewards, values.detach(), bootstrap)
    return actor_critic_loss(logits, values, torch.as_tensor(u["action"]), ret.vs, ret.pg_advantages,
                             cfg.baseline_cost, cfg.entropy_cost)




def forward_unrolls(net, batch: dict, T: int, device) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """A learner's forward over a batch of unrolls {field: [T + 1, N, ...]} (row T: the bootstrap observation;
    `h0`, `c0` [1, N, H]: the recurrent state entering row 0, whose reset is already applied): (the batch as
    tensors, logits [T + 1, N, A], values [T + 1, N])."""
    b = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    state, reset = (), None
    if "h0" in b:
        state = (b["h0"][0], b["c0"][0])
        reset = torch.zeros(b["discount"].shape, dtype=torch.bool, device=device)
        reset[1:] = b["discount"][:T] == 0  # step t + 1 starts an episode where step t ended one
    logits, values, _ = net(b["obs"], state, reset)
    return b, logits, values


def learner_parts(cfg: ACConfig, net: torch.nn.Module) -> Parts:
    """An unroll learner's declared state (IMPALA, GA3C, SEED): the network and its RMSProp."""
    return Parts({"online": net}, {"rmsprop": torch.optim.RMSprop(net.parameters(), lr=cfg.lr, alpha=0.99, eps=1e-5)})


LOSS_COLUMNS = ["loss", "pg_loss", "baseline_loss", "entropy"]


def loss_row(losses: Losses | None) -> dict:
    """The metrics of an update's losses (NaN before the first)."""
    names = ("total", "pg", "baseline", "entropy")
    return {c: float(getattr(losses, k).detach()) if losses else float("nan") for c, k in zip(LOSS_COLUMNS, names)}


@dataclass
class UnrollPlanes:
    """The planes of a learner of unrolls (run_unroll_learner): the lead learner's weights, the trajectories."""

    weights: WeightsPlane  # the lead learner's weights, version = update count
    trajectories: TrajectoryPlane  # the unrolls' senders -> the learners
    net: torch.nn.Module  # the initial network, the same on every rank

    def close(self) -> None:
        self.weights.close()
        self.trajectories.free()


def run_unroll_learner(rt, cfg, planes, resumed, algo: str, learn, sources: list[int]) -> dict:
    """The learner of unrolls (IMPALA, GA3C): batches of `batch_size` unrolls from its share of `sources` (the ranks
    that send them) -> learn(net, batch, cfg, device) -> Losses -> backward -> one allreduce of every learner's
    gradients (comm.allreduce.learners_step: the mean over the learners that had a batch, clipping, the lr, the
    step) -> the lead publishes every `publish_every` updates, logs and checkpoints; until no learner has a batch
    (every source has stopped). `max_policy_lag` drops stale unrolls (counted)."""
    learners = rt.role_comm
    device = nets.device(cfg.device)
    parts = learner_parts(cfg, planes.net.to(device))
    net, opt = parts.nets["online"], parts.optims["rmsprop"]
    learner = Learner(rt, cfg, algo, parts, [*LOSS_COLUMNS, "dropped_unrolls", "learners"], resumed)
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=3)  # progress, had, dropped

    def publish():
        planes.weights.publish(flat_params(net), learner.updates)

    if learner.lead:
        publish()
    reader = planes.trajectories.reader([a for k, a in enumerate(sources) if k % learners.size == learners.rank],
                                        cfg.batch_size, cfg.max_policy_lag)
    last = {"losses": None, "dropped": 0}

    def row():
        return {**loss_row(last["losses"]), "dropped_unrolls": last["dropped"], "learners": learners.size}

    while True:
        batch = reader.receive(learner.updates, on_idle=lambda: learner.poll(row))
        opt.zero_grad(set_to_none=True)
        if batch is not None:
            last["losses"] = learn(net, batch, cfg, device)
            last["losses"].total.backward()
        dropped = learners_step(net, opt, allreduce, learner.progress, batch is not None, reader.dropped, cfg)
        if dropped is None:
            break  # no learner has a batch: every source has stopped
        learner.updates += 1
        last["dropped"] = int(dropped)
        if learner.lead and learner.updates % cfg.publish_every == 0:
            publish()
        learner.checkpoint()
        learner.poll(row)
    return learner.finish(row, reader, allreduce, final=publish)
