"""PPO, decentralized: every rank a worker, gradients averaged by allreduce (DD-PPO, Wijmans et al., 2020; PPO,
Schulman et al., 2017), with DD-PPO's preemption threshold against stragglers.

Roles: every rank is a worker (`actor`); the first leads (logs, checkpoints, asks for the stop on a signal).
  worker   collects a rollout of at most `n_steps` steps of its `num_envs` envs with the current policy (cut short
           by the preemption threshold once `preempt_fraction` of the workers have finished theirs: comm.preempt);
           merges the running statistics of observations and returns with every worker (one allreduce, when
           normalising); computes GAE(lambda) advantages; then makes `epochs` passes of `minibatches`
           minibatches over its rollout with the clipped surrogate, one gradient allreduce a minibatch, each
           worker's loss weighted by its samples: the step follows the mean over every worker's samples, and every
           worker applies the same clipped Adam step, so all hold the same weights (and statistics) without a
           parameter server. The counters and the stop ride on the first allreduce of a round.
One rank runs it serially (a worker alone: PPO as a single process). Actions: categorical (Discrete) or a diagonal
Gaussian (Box; ops.policy: the unbounded sample is the action learnt from, the env receives it clipped).
Defaults are CartPole-v1's (greedy return 500 on 4 ranks, the RL Zoo's settings with 4 workers sharing its batch);
`Config.CONTINUOUS` is the preset of every env with a Box action space (Pendulum: cleanrl's MuJoCo settings, its
2,048-step batch shared by 4 workers, for 300K steps), `Config.MUJOCO` the same for 1M steps on gymnasium's MuJoCo
envs, `Config.ATARI` and `Config.MINATAR` the image presets.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel        from -> to             payload                                 when
  COLLECTED              workers' dup   worker -> the others   empty                                   a worker stops
                                                                                                       collecting
  Ibarrier + Allreduce   workers        worker <-> workers     float64 moments of observations and     every round,
                                                               discounted returns                      normalising
  Ibarrier + Allreduce   workers        worker <-> workers     gradients + (samples; first of a round: every minibatch
                                                               stop, returns, episodes, restarts,
                                                               steps, preempted)
  CHECKPOINT, _DONE,     control        lead <-> workers       request; RNG state (comm.checkpoint)    checkpoint_every,
  SIGNAL                                                                                               signal, end
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from mpi4py import MPI

from drlmpi import nets
from drlmpi.actor_critic import LOSS_COLUMNS, ACConfig, Surrogate, build_net, loss_row, restarted_bootstrap
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import MEET_SPIN, GradAllreduce
from drlmpi.comm.preempt import Preemption
from drlmpi.config import Hparam, opt
from drlmpi.envs import clips_rewards, env_actions, env_restarts, is_box, make_vec, spaces
from drlmpi.errors import UserError
from drlmpi.learner import Learner, Parts
from drlmpi.nets import ActorCritic, RunningMoments, flat_params, load_arrays, moments
from drlmpi.nets.optim import Adam, clip_grad_norm
from drlmpi.ops import policy as pi
from drlmpi.ops.ppo import PPOLosses, clipped_loss, gae, normalized
from drlmpi.ops.schedules import linear
from drlmpi.runtime import RoleSpec, Runtime, wait

LAYOUT = RoleSpec(fixed=(), min_actors=1, serial_ok=True)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]


@dataclass
class Config(Surrogate, ACConfig):
    clip_final: float = opt(0.0, "the clipping epsilon at the end of training")
    value_clip: float = opt(0.0, "clip each value update to +-value_clip around the value at acting (0: off)")
    gae_lambda: float = opt(0.8, "GAE's lambda")
    normalize_obs: bool = opt(False, "observations normalised by running statistics, the same on every worker "
                                     "(vector observations)", True)
    normalize_reward: bool = opt(False, "rewards scaled by the running std of the discounted return, the same on "
                                        "every worker", True)
    preempt_fraction: float = opt(0.6, "DD-PPO's preemption threshold: a worker stops collecting once this fraction "
                                       "of the workers have finished their rollouts (1: never)")
    preempt_least: float = opt(0.25, "the fraction of n_steps a worker always collects before it may be preempted")

    DEFAULTS: ClassVar[dict] = {"epochs": 20, "minibatches": 1, "num_envs": 2, "n_steps": 32, "lr": 1e-3,
                                "lr_final": 0.0, "gamma": 0.98,
                                "entropy_cost": 0.0, "activation": "tanh", "orthogonal_init": True,
                                "total_env_steps": 150_000}
    CONTINUOUS: ClassVar[dict] = {"num_envs": 1, "n_steps": 512, "epochs": 10, "minibatches": 32, "lr": 3e-4,
                                  "lr_final": 0.0, "gamma": 0.99, "gae_lambda": 0.95, "clip": 0.2,
                                  "clip_final": 0.2, "value_clip": 0.2, "entropy_cost": 0.0,
                                  "normalize_obs": True, "normalize_reward": True, "separate_value": True,
                                  "total_env_steps": 300_000}
    MUJOCO: ClassVar[dict] = {**CONTINUOUS, "total_env_steps": 1_000_000}
    ATARI: ClassVar[dict] = {"num_envs": 2, "n_steps": 128, "epochs": 4, "minibatches": 4, "lr": 2.5e-4,
                             "gamma": 0.99, "gae_lambda": 0.95, "clip": 0.1, "clip_final": 0.1,
                             "value_clip": 0.1, "entropy_cost": 0.01, "orthogonal_init": True,
                             "total_env_steps": 10_000_000}
    MINATAR: ClassVar[dict] = {**ATARI, "total_env_steps": 5_000_000}
    SEARCH: ClassVar[dict] = {"clip": Hparam(("clip", "clip_final"), 0.05, 0.5),
                              "gae_lambda": Hparam(("gae_lambda",), 0.8, 0.999, "log1m")}

    def check_own(self):
        for name in ("clip_final", "preempt_fraction", "preempt_least"):
            if not 0 <= getattr(self, name) <= 1:
                raise UserError(f"config: {name} must be in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.gae_lambda <= 1 or not self.value_clip >= 0:
            raise UserError(f"config: gae_lambda must be in [0, 1] and value_clip >= 0, got {self.gae_lambda}, "
                            f"{self.value_clip}")


def validate(cfg: Config) -> None:
    """Rank 0, before the job starts: normalised observations are vectors."""
    obs_space, _ = spaces(cfg.env)
    if cfg.normalize_obs and nets.is_image(obs_space.shape):
        raise UserError(f"config: normalize_obs is for vector observations; {cfg.env} has images {obs_space.shape}")


def learner_parts(cfg: Config, net: ActorCritic) -> Parts:
    """A worker's declared state: the network, Adam (eps 1e-5), and the running statistics it normalises by."""
    parts = {"online": net}
    if cfg.normalize_obs:
        parts["obs_norm"] = RunningMoments(int(np.prod(net.obs_shape)))
    if cfg.normalize_reward:
        parts["ret_norm"] = RunningMoments(1)
    return Parts(parts, {"adam": Adam(net.parameters(), lr=cfg.lr, eps=1e-5)})


def load_policy(cfg: Config, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] (or [E, A] in the action box): the most probable action, or the
    Gaussian's mean clipped, on observations normalised as in training."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    norm = None
    if "obs_norm" in weights:
        norm = RunningMoments(int(np.prod(env.observation_space.shape)))
        load_arrays(norm, weights["obs_norm"])
    to_env = env_actions(env.action_space)

    def policy(obs):
        x = norm.normalize(obs.reshape(len(obs), -1)).reshape(obs.shape) if norm is not None else obs
        with torch.no_grad():
            head, _, _ = net(torch.as_tensor(x)[None])
            return to_env(pi.mode(head[0], net.log_std).numpy())

    return policy


class Norms:
    """A worker's view of the running statistics (nets.RunningMoments, None where off): observations normalised
    when acting; each env's discounted return tracked to scale rewards; the rollout's moments gathered, then
    merged with every worker's (`merge`: one allreduce) so every worker holds the same statistics."""

    def __init__(self, parts: Parts, num_envs: int, gamma: float):
        self.obs, self.ret = parts.nets.get("obs_norm"), parts.nets.get("ret_norm")
        self.gamma, self.G = gamma, np.zeros(num_envs)
        self.seen: list[np.ndarray] = []  # raw observations [E, D] of the rollout
        self.returns: list[np.ndarray] = []  # discounted returns [E] of the rollout

    def observe(self, obs: np.ndarray) -> np.ndarray:
        """obs [E, ...] acted on: normalised, and counted in the rollout's moments."""
        if self.obs is not None:
            self.seen.append(obs.reshape(len(obs), -1))
        return self.normalize(obs)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """obs [N, ...] normalised by the statistics as they are (not counted)."""
        if self.obs is None:
            return obs
        return self.obs.normalize(obs.reshape(len(obs), -1)).reshape(obs.shape)

    def rewarded(self, reward: np.ndarray, done: np.ndarray) -> None:
        if self.ret is not None:
            self.G = self.G * self.gamma + reward
            self.returns.append(self.G.copy())
            self.G[done] = 0.0

    def merge(self, comm: MPI.Intracomm) -> None:
        """Collective over the workers (when normalising): merge every worker's rollout moments."""
        parts = []
        if self.obs is not None:
            parts.append(moments(np.concatenate(self.seen)))
        if self.ret is not None:
            parts.append(moments(np.concatenate(self.returns)[:, None]))
        if not parts:
            return
        buf = np.concatenate(parts)
        if comm.size > 1:
            wait(comm.Ibarrier(), what="the other PPO workers' statistics")
            comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        for norm in (self.obs, self.ret):
            if norm is not None:
                d = norm.mean.numel()
                norm.merge(buf[0], buf[1 : 1 + d], buf[1 + d : 1 + 2 * d])
                buf = buf[1 + 2 * d :]
        self.seen.clear()
        self.returns.clear()

    def scale(self, rewards: np.ndarray) -> np.ndarray:
        return rewards if self.ret is None else self.ret.scale(rewards)


def collect(net: ActorCritic, env, obs: np.ndarray, cfg: Config, norms: Norms, preempt: Preemption,
            episodes: list, poll) -> tuple[dict, np.ndarray]:
    """One rollout of at most n_steps [t, E] with the current policy, until the preemption threshold stops it:
    obs (normalised as acted on), action, log_prob and value at acting, raw reward, discount (gamma, 0 after a
    termination), boot (gamma V(final obs) where a time limit cut the episode, in the normalised reward's units).
    Returns (rollout, next obs); finished episodes' returns go to `episodes`. poll(): after every step (the
    learner's: a long rollout must not starve the lead's greedy evaluation, metrics and checkpoint requests)."""
    T = cfg.n_steps
    clip, to_env = clips_rewards(cfg), env_actions(env.action_space)
    rows: dict[str, list] = {k: [] for k in ("obs", "action", "log_prob", "value", "reward", "discount", "boot")}
    preempt.begin()
    with torch.no_grad():
        for t in range(1, T + 1):
            x = norms.observe(obs)
            head, value, _ = net(torch.as_tensor(x)[None])
            action = pi.sample(head[0], net.log_std)
            step = env.step(to_env(action.numpy()))
            reward = np.clip(step.reward, -1, 1) if clip else step.reward
            norms.rewarded(reward, step.done)
            for k, v in (("obs", x), ("action", action.numpy()), ("log_prob", pi.log_prob(head[0], action,
                         net.log_std).numpy()), ("value", value[0].numpy()), ("reward", reward),
                         ("discount", cfg.gamma * ~step.done), ("boot", bootstrap(net, step, norms, cfg.gamma))):
                rows[k].append(v)
            episodes += [ret for ret, _ in step.episodes]
            obs = step.obs
            poll()
            if preempt.stop(t, T):
                break
    preempt.end()
    return {k: np.stack(v).astype(np.float32 if k != "action" or is_box(env.action_space) else np.int64)
            for k, v in rows.items()}, obs


def bootstrap(net: ActorCritic, step, norms: Norms, gamma: float) -> np.ndarray:
    """[E]: gamma V(final obs) where a time limit cut an episode (1 V(obs acted on) for a failed env, see
    actor_critic.restarted_bootstrap), else 0."""
    out = np.zeros(len(step.reward), np.float32)
    cut = step.truncated & ~step.terminated
    if cut.any():
        _, v, _ = net(torch.as_tensor(norms.normalize(step.final_obs[cut]))[None])
        out[cut] = restarted_bootstrap(step, cut, gamma) * v[0].numpy()
    return out


def advantages(net: ActorCritic, r: dict, last_obs: np.ndarray, cfg: Config, norms: Norms) -> dict:
    """The rollout [t, E] flattened to samples [t * E] with GAE(lambda) advantages and returns (rewards scaled
    by the merged statistics, the time-limit bootstraps added)."""
    with torch.no_grad():
        _, last_v, _ = net(torch.as_tensor(norms.normalize(last_obs))[None])
    rewards = torch.as_tensor(norms.scale(r["reward"]) + r["boot"])
    adv, ret = gae(rewards, torch.as_tensor(r["discount"]), torch.as_tensor(r["value"]), last_v[0], cfg.gae_lambda)
    flat = {k: torch.as_tensor(r[k]).flatten(0, 1) for k in ("obs", "action", "log_prob", "value")}
    return {**flat, "advantage": adv.flatten(), "return": ret.flatten()}


def minibatch_loss(net: ActorCritic, mb: dict, cfg: Config, clip: float) -> PPOLosses:
    """The clipped surrogate of one minibatch of samples {field: [m, ...]}."""
    head, values, _ = net(mb["obs"][None])
    log_pi = pi.log_prob(head[0], mb["action"], net.log_std)
    return clipped_loss(log_pi, mb["log_prob"], normalized(mb["advantage"]), values[0], mb["value"], mb["return"],
                        pi.entropy(head[0], net.log_std), clip, cfg.value_clip, cfg.baseline_cost, cfg.entropy_cost)


def learn(net, opt, allreduce: GradAllreduce, batch: dict, cfg: Config, frac: float, control: np.ndarray,
          gen: np.random.Generator) -> tuple[PPOLosses, np.ndarray]:
    """One round's update: `epochs` passes of `minibatches` minibatches over this worker's samples (shuffled once
    an epoch, then cut in consecutive slices); each minibatch's loss times its m samples -> backward into the
    allreduce's buffer (bound gradients) -> one allreduce of the sums (m and, on the first, `control`) -> the
    gradient mean over every worker's samples, clipped, in one multiply -> Adam step at the lr and clip of
    progress `frac`. Returns (the last minibatch's losses, the sums of `control` over the workers)."""
    n = len(batch["advantage"])
    clip = linear(cfg.clip, cfg.clip_final, frac)
    for g in opt.param_groups:
        g["lr"] = linear(cfg.lr, cfg.lr_final, frac)
    sums, losses = None, None
    for _ in range(cfg.epochs):
        perm = gen.permutation(n)
        shuffled = {k: v[perm] for k, v in batch.items()}
        for lo, hi in splits(n, cfg.minibatches):
            allreduce.zero_grad()
            if hi > lo:
                losses = minibatch_loss(net, {k: v[lo:hi] for k, v in shuffled.items()}, cfg, clip)
                (losses.total * (hi - lo)).backward()
            tail = allreduce(np.concatenate([[hi - lo], control if sums is None else np.zeros_like(control)]),
                             mean=False)
            sums = tail[1:].copy() if sums is None else sums
            if tail[0] > 0:
                clip_grad_norm(allreduce.params, cfg.max_grad_norm, scale=1 / tail[0])
                opt.step()
    return losses, sums


def splits(n: int, k: int) -> list[tuple[int, int]]:
    """np.array_split's k parts of range(n) as (start, stop) pairs (the first n % k one longer)."""
    bounds = np.cumsum([0] + [n // k + (i < n % k) for i in range(k)]).tolist()
    return list(zip(bounds[:-1], bounds[1:]))



def run_worker(rt: Runtime, cfg: Config, planes: None, resumed: State | None) -> dict:
    """The `actor` role (a worker): collect -> merge the statistics -> advantages -> learn, until total_env_steps
    (the workers' summed steps; the lead asks for the stop on a signal)."""
    workers = rt.role_comm
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    parts = learner_parts(cfg, build_net(cfg, env.observation_space, env.action_space))
    net, opt = parts.nets["online"], parts.optims["adam"]
    learner = Learner(rt, cfg, "ppo", parts, [*LOSS_COLUMNS, "approx_kl", "clip_frac", "preempted", "workers"],
                      resumed, lead_rank=0, actors=[])
    allreduce = GradAllreduce(workers, list(net.parameters()), "mpi", extra=7, meet_spin=MEET_SPIN)  # samples +
    allreduce.bind_grads()  # control (below); backward writes straight into the allreduce's buffer
    weights = flat_params(net)  # every worker starts from the lead's weights
    wait(workers.Ibcast(weights, root=0), what="the lead worker's first weights")
    nets.load_flat(net, weights)
    preempt = Preemption(workers, cfg.preempt_fraction, max(1, int(cfg.preempt_least * cfg.n_steps)))
    norms, gen = Norms(parts, env.num_envs, cfg.gamma), np.random.default_rng(rt.gen.integers(2**63))
    obs, episodes, last = env.reset(), [], {"losses": None, "preempted": 0}

    def row():  # the metrics of the last round
        losses = last["losses"]
        return {**loss_row(losses), "approx_kl": float(losses.approx_kl) if losses else float("nan"),
                "clip_frac": float(losses.clip_frac) if losses else float("nan"),
                "preempted": last["preempted"], "workers": workers.size}

    while True:
        rollout, obs = collect(net, env, obs, cfg, norms, preempt, episodes, lambda: learner.poll(row))
        norms.merge(workers)
        batch = advantages(net, rollout, obs, cfg, norms)
        control = np.array([bool(learner.signal()), sum(episodes), len(episodes), env_restarts(),
                            rollout["reward"].size, preempt.preempted])
        last["losses"], (stop, ret_sum, n_eps, restarts, steps, preempted) = learn(
            net, opt, allreduce, batch, cfg, learner.steps / cfg.total_env_steps, control, gen)
        learner.env_restarts, last["preempted"] = int(restarts), int(preempted)
        episodes.clear()
        learner.updates += 1
        learner.steps += int(steps)
        if learner.lead and n_eps:
            learner.log.episode(ret_sum / n_eps)
        stop = stop or learner.steps >= cfg.total_env_steps
        if not stop:
            learner.checkpoint()
        learner.poll(row)
        if stop:
            break
    preempt.close()
    return learner.finish(row, allreduce, env)


ROLES = {"actor": run_worker, "serial": run_worker}  # (one rank: a worker alone)
