"""What the actor-critic algorithms (A2C, A3C, IMPALA) share, written once.

  ACConfig        the fields and checks of every actor-critic worker: envs, unroll length, discount, losses
  build_net, load_policy
                  the actor-critic network (MLP or Nature CNN torso; policy logits and value) and the greedy
                  (most probable action) policy of a checkpoint
  collect         one on-policy unroll [n_steps, E] with the current weights
  nstep_loss      the n-step advantage actor-critic loss of an unroll (A2C, A3C)
"""

from dataclasses import dataclass

import numpy as np
import torch

from drlmpi.config import Common, opt, require_at_least
from drlmpi.errors import UserError
from drlmpi.nets import ActorCritic, load_arrays
from drlmpi.ops import vtrace
from drlmpi.ops.actor_critic import Losses, actor_critic_loss, sample_actions


@dataclass
class ACConfig(Common):
    num_envs: int = opt(8, "environments stepped together per worker")
    total_env_steps: int = opt(1_000_000, "environment steps (all workers' envs) to train for")
    n_steps: int = opt(5, "steps per unroll (the n of the n-step returns)")
    gamma: float = opt(0.99, "discount")
    lr: float = opt(1e-3, "learning rate at the start")
    lr_final: float = opt(0.0, "learning rate reached linearly at the end of training")
    entropy_cost: float = opt(0.01, "weight of the entropy bonus")
    baseline_cost: float = opt(0.5, "weight of the value loss")
    max_grad_norm: float = opt(0.5, "gradient clipping by global norm")
    hidden: tuple[int, ...] = opt((64, 64), "MLP hidden sizes (vector observations)")
    clip_rewards: str = opt("auto", "clip rewards to [-1, 1] for learning: auto (Atari only), on, off")

    def check(self):
        require_at_least(self, ("num_envs", "n_steps", "total_env_steps"))
        if not 0 <= self.gamma <= 1:
            raise UserError(f"config: gamma must be in [0, 1], got {self.gamma}")
        if self.clip_rewards not in ("auto", "on", "off"):
            raise UserError(f"config: clip_rewards must be auto, on or off, got {self.clip_rewards!r}")


def build_net(cfg: ACConfig, obs_space, act_space) -> ActorCritic:
    return ActorCritic(obs_space.shape, act_space.n, cfg.hidden)


def load_policy(cfg: ACConfig, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] (the most probable action) from checkpoint weights."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()

    def policy(obs):
        with torch.no_grad():
            return net(torch.as_tensor(obs)[None])[0][0].argmax(-1).numpy()

    return policy


def collect(net, env, obs: np.ndarray, cfg: ACConfig, clip: bool, episodes: list, out: dict | None = None
            ) -> tuple[dict, np.ndarray]:
    """One unroll [n_steps, E] with the current weights: obs, action, reward, discount (gamma, 0 after a
    termination), and the acting logits [n_steps, E, A] if `out` has them; a truncated episode's reward gets
    gamma V(final obs) and discount 0. Fills `out` (field views with at least n_steps rows, e.g. an unroll slot)
    or new arrays. Returns (unroll, next obs); finished episodes' returns are appended to `episodes`."""
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
            reward = np.clip(step.reward, -1, 1) if clip else step.reward
            cut = step.truncated & ~step.terminated
            if cut.any():  # bootstrap a time limit: it is not the end of the task
                _, v, _ = net(torch.as_tensor(step.final_obs[cut])[None])
                reward = reward.copy()
                reward[cut] += cfg.gamma * v[0].numpy()
            u["action"][t], u["reward"][t] = action, reward
            u["discount"][t] = cfg.gamma * ~step.done
            episodes += [ret for ret, _ in step.episodes]
            obs = step.obs
    return u, obs


def nstep_loss(net, u: dict, last_obs: np.ndarray, cfg: ACConfig) -> Losses:
    """The n-step advantage actor-critic loss of an unroll (V-trace with log rhos 0: the bootstrapped returns)."""
    logits, values, _ = net(torch.as_tensor(u["obs"]))
    with torch.no_grad():
        bootstrap = net(torch.as_tensor(last_obs)[None])[1][0]
    discounts, rewards = torch.as_tensor(u["discount"]), torch.as_tensor(u["reward"])
    ret = vtrace.from_importance_weights(torch.zeros_like(rewards), discounts, rewards, values.detach(), bootstrap)
    return actor_critic_loss(logits, values, torch.as_tensor(u["action"]), ret.vs, ret.pg_advantages,
                             cfg.baseline_cost, cfg.entropy_cost)


