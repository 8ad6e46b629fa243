"""Environments: vectorized gymnasium envs per rank, Atari through ale-py's vector env.

`make_vec(env_id, num_envs, seed)` returns a `VecEnv` with one interface for both:
`reset() -> obs[E, ...]` and `step(actions[E]) -> Step` with same-step autoreset (the
returned obs of a finished env is already its next episode's first obs; the last obs
of the finished episode is in `final_obs`). Episode returns are summed here from the
unclipped rewards and reported in `Step.episodes` as (return, length) pairs.

Atari (`ALE/<Game>-v5`) uses the standard DQN preprocessing: frame skip 4 with max-pool,
84x84 grayscale, a stack of 4 frames, up to 30 no-op starts, fire on reset, and sticky
actions with probability 0.25 as in v5; full episodes (no life-loss ends), unclipped rewards.
"""

import importlib
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from drlmpi.errors import UserError


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def frames_per_step(env_id: str) -> int:
    """Emulator frames per agent step: 4 on Atari (frame skip), else 1."""
    return 4 if is_atari(env_id) else 1


def clips_rewards(cfg) -> bool:
    """cfg.clip_rewards: on, off, or auto (Atari only)."""
    return cfg.clip_rewards == "on" or (cfg.clip_rewards == "auto" and is_atari(cfg.env))


def is_box(space) -> bool:
    """A continuous (gymnasium Box) space."""
    return isinstance(space, gym.spaces.Box)


def _register_ale() -> None:
    import ale_py

    gym.register_envs(ale_py)


def check_env_id(env_id: str) -> None:
    """Raise UserError unless env_id names a registered gymnasium env (importing `module:` first)."""
    name = env_id
    if ":" in env_id:
        module, _, name = env_id.partition(":")
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UserError(f"--env {env_id}: cannot import module '{module}': {e}") from None
    if is_atari(name):
        _register_ale()
    try:
        gym.spec(name)
    except gym.error.Error as e:
        raise UserError(f"--env {env_id}: unknown environment ({e})") from None


@dataclass
class Step:
    obs: np.ndarray  # [E, *obs_shape]: next obs (first obs of a new episode where done)
    reward: np.ndarray  # [E] float32, unclipped
    terminated: np.ndarray  # [E] bool
    truncated: np.ndarray  # [E] bool
    final_obs: np.ndarray  # [E, *obs_shape]: last obs of a finished episode; rows valid where done
    episodes: list = field(default_factory=list)  # (return, length) of episodes that ended on this step

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class VecEnv:
    """A batch of E environments with same-step autoreset and unclipped episode statistics."""

    def __init__(self, env, num_envs: int, seed: int, atari: bool):
        self.env = env
        self.num_envs = num_envs
        self.atari = atari
        self.seed = seed
        self.observation_space = env.single_observation_space
        self.action_space = env.single_action_space
        self._ret = np.zeros(num_envs, dtype=np.float64)
        self._len = np.zeros(num_envs, dtype=np.int64)

    def reset(self) -> np.ndarray:
        if self.atari:
            obs, _ = self.env.reset(seed=self.seed)
        else:
            obs, _ = self.env.reset(seed=[self.seed + i for i in range(self.num_envs)])
        self._ret[:] = 0
        self._len[:] = 0
        return obs

    def step(self, actions: np.ndarray) -> Step:
        obs, reward, terminated, truncated, info = self.env.step(actions)
        reward = np.asarray(reward, dtype=np.float32)
        self._ret += reward
        self._len += 1
        done = terminated | truncated
        final_obs = obs
        episodes = []
        if done.any():
            final_obs = obs.copy()
            fo = info["final_obs"]
            for i in np.flatnonzero(done):
                final_obs[i] = fo[i]
                episodes.append((float(self._ret[i]), int(self._len[i])))
            self._ret[done] = 0
            self._len[done] = 0
        return Step(obs, reward, terminated, truncated, final_obs, episodes)

    def close(self) -> None:
        self.env.close()


def make_vec(env_id: str, num_envs: int, seed: int, sticky: float = 0.25, noop_max: int = 30) -> VecEnv:
    """Build E environments of env_id for one rank, seeded from `seed`."""
    check_env_id(env_id)
    if is_atari(env_id):
        from ale_py.vector_env import AtariVectorEnv

        game = gym.spec(env_id).kwargs["game"]
        env = AtariVectorEnv(
            game, num_envs, num_threads=1, repeat_action_probability=sticky, noop_max=noop_max,
            frameskip=4, maxpool=True, img_height=84, img_width=84, grayscale=True, stack_num=4,
            episodic_life=False, reward_clipping=False, autoreset_mode="SameStep",
        )
        return VecEnv(env, num_envs, seed, atari=True)
    from gymnasium.vector import AutoresetMode

    env = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    return VecEnv(env, num_envs, seed, atari=False)


def spaces(env_id: str):
    """(single observation space, single action space) of env_id, from a throwaway one-env instance."""
    env = make_vec(env_id, 1, seed=0)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
