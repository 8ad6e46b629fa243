"""Environments: vectorized gymnasium envs per rank, Atari through ale-py's vector env.

`make_vec(env_id, num_envs, seed)` returns a `VecEnv` with one interface for both:
`reset() -> obs[E, ...]` and `step(actions[E]) -> Step` with same-step autoreset (the
returned obs of a finished env is already its next episode's first obs; the last obs
of the finished episode is in `final_obs`). Episode returns are summed here from the
unclipped rewards and reported in `Step.episodes` as (return, length) pairs.

Atari (`ALE/<Game>-v5`) uses the standard DQN preprocessing: frame skip 4 with max-pool,
84x84 grayscale, a stack of 4 frames, up to 30 no-op starts, fire on reset, and sticky
actions with probability 0.25 as in v5; full episodes (no life-loss ends, at most 108,000 frames), unclipped
rewards. It is gymnasium's reference pipeline (`AtariPreprocessing` with frame skip 4, `FrameStackObservation` 4)
frame for frame, but for what tests/unit/test_atari.py documents and checks: an episode's first stack is padded
with zeros (gymnasium's default repeats the first frame), each reset is followed by one frame of FIRE (which
gymnasium's wrappers do not press), and no-op counts and sticky repeats come from ale-py's vector env's own
generators (gymnasium's from its AtariEnv's), so runs are reproducible per seed but not draw for draw the same.

MinAtar (`MinAtar/<Game>-v1` with the game's minimal action set, `-v0` with all 6 actions; Young & Tian 2019:
Asterix, Breakout, Freeway, Seaquest, SpaceInvaders) as the `minatar` package defines it: sticky actions with
probability 0.1, difficulty ramping; episodes truncated at MINATAR_MAX_STEPS (the package has no limit, and a
Seaquest submarine that never dives lives forever: a greedy evaluation would never end); observations
channel-first, bool [C, 10, 10] (one byte a cell in replay and unrolls; the networks see 0/1 floats).

A crashing environment is not a crashing job: an exception in one env's `reset` or `step` rebuilds that env with
a fresh seed (`Restarting`; Atari's vector env, one C++ object, is rebuilt whole), and the step marks it in
`restarted` [E]: no transition happened for it, its episode was cut (truncated) at the observation that acted
(`final_obs`), `obs` holds its new episode's first observation, and the cut episode is not reported as finished.
Builders drop its transition (replay.nstep, replay.sequence); unroll collectors keep it as a time-limit cut with
reward 0, bootstrapped from the observation that acted (gamma V(obs); its slot in a fixed-size unroll must be
filled). Each restart prints one line and counts in `env_restarts()` (the metrics' `env_restarts`). An env that is
broken rather than flaky ends the job with the last exception's traceback: more than `max_env_restarts` failures
within RESTART_WINDOW env steps of one rank (a flaky env fails now and then; a broken one on a good part of its
steps), or IN_A_ROW failures of one env with no successful step of its own between them (one that fails on every
reset, or at once).
"""

import importlib
import sys
from collections import deque
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from drlmpi.errors import UserError


def is_atari(env_id: str) -> bool:
    return env_id.startswith("ALE/")


def is_minatar(env_id: str) -> bool:
    return env_id.startswith("MinAtar/")



def frames_per_step(env_id: str) -> int:
    """Emulator frames per agent step: 4 on Atari (frame skip), else 1."""
    return 4 if is_atari(env_id) else 1


def clips_rewards(cfg) -> bool:
    """cfg.clip_rewards: on, off, or auto (Atari only)."""
    return cfg.clip_rewards == "on" or (cfg.clip_rewards == "auto" and is_atari(cfg.env))


def is_box(space) -> bool:
    """A continuous (gymnasium Box) space."""
    return isinstance(space, gym.spaces.Box)


def env_actions(space):
    """A policy's actions -> what the env receives: a Box's clipped to its bounds (a Gaussian policy's samples are
    unbounded), a Discrete's as they are."""
    if is_box(space):
        return lambda a: np.clip(a, space.low, space.high)
    return lambda a: a


def _register_ale() -> None:
    import ale_py

    gym.register_envs(ale_py)


def _register_minatar() -> None:
    if "MinAtar/Breakout-v1" in gym.registry:
        return
    try:
        from minatar.gym import register_envs
    except ImportError as e:
        raise UserError(f"MinAtar needs the minatar package (pip install minatar): {e}") from None
    register_envs()


MINATAR_MAX_STEPS = 27_000  # agent steps: ALE's 108,000 frames at frame skip 4, the field's cap on an Atari episode


class ChannelFirst(gym.ObservationWrapper):
    """A MinAtar env's bool [H, W, C] observations as bool [C, H, W] (the layout of the networks' convolutions)."""

    def __init__(self, env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        self.observation_space = gym.spaces.Box(0, 1, (c, h, w), dtype=bool)

    def observation(self, obs):
        return np.ascontiguousarray(np.transpose(obs, (2, 0, 1)))


def make_one(env_id: str, render: bool = False):
    """One env of env_id (a MinAtar game channel-first, truncated at MINATAR_MAX_STEPS), as a vector holds it;
    render: with gymnasium's rgb_array rendering (the video of `drlmpi eval --video`)."""
    if is_minatar(env_id):
        _register_minatar()
        return ChannelFirst(gym.make(env_id, max_episode_steps=MINATAR_MAX_STEPS))
    return gym.make(env_id, render_mode="rgb_array") if render else gym.make(env_id)


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
    if is_minatar(name):
        _register_minatar()
    try:
        spec = gym.spec(name)
    except gym.error.Error as e:
        raise UserError(f"--env {env_id}: unknown environment ({e})") from None
    if "gymnasium.envs.mujoco" in str(spec.entry_point):
        try:
            import mujoco  # noqa: F401 - gymnasium's MuJoCo envs need it (the mujoco extra)
        except ImportError:
            raise UserError(f"--env {env_id} needs MuJoCo: pip install 'drlmpi[mujoco]'") from None


@dataclass
class Step:
    obs: np.ndarray  # [E, *obs_shape]: next obs (first obs of a new episode where done)
    reward: np.ndarray  # [E] float32, unclipped
    terminated: np.ndarray  # [E] bool
    truncated: np.ndarray  # [E] bool
    final_obs: np.ndarray  # [E, *obs_shape]: last obs of a finished episode; rows valid where done
    episodes: list = field(default_factory=list)  # (return, length) of episodes that ended on this step
    restarted: np.ndarray | None = None  # [E] bool, None if none: envs that failed and were rebuilt (no transition;
    # their episodes cut at final_obs)

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


RESTART_WINDOW = 10_000  # env steps of a rank over which max_env_restarts counts its environment failures
RESTARTED = "drlmpi_restarted"  # the info key a Restarting wrapper sets on a failed step (an env's own keys differ)
IN_A_ROW = 10  # failures of one env with no successful step of its own between them: the job ends
_restarts = {"count": 0, "limit": 100}  # this process's env restarts, and the most allowed within RESTART_WINDOW


def env_restarts() -> int:
    """Environment restarts in this process so far."""
    return _restarts["count"]


def set_restart_limit(limit: int) -> None:
    """The most restarts a rank's envs may make within RESTART_WINDOW env steps (cfg.max_env_restarts)."""
    _restarts["limit"] = limit


class EnvFailure(RuntimeError):
    """An environment failed more often than max_env_restarts within RESTART_WINDOW."""


class Restarts:
    """An actor's environment failures: `failed(exc)` counts one (EnvFailure, from exc, past the limit or when the
    env cannot be rebuilt) and prints one line; the caller then rebuilds its envs. counted=False: envs outside
    training (the lead's greedy evaluation): their failures print a line of their own and count nowhere."""

    def __init__(self, env_id: str, rebuildable: bool = True, counted: bool = True):
        self.env_id, self.rebuildable, self.marks, self.steps = env_id, rebuildable, deque(), 0
        self.counted = counted

    def failed(self, exc: Exception, in_a_row: int, envs: int = 1) -> None:
        """in_a_row: the failing env's failures with no successful step of its own between them, this one included."""
        self.marks.append(self.steps)
        while self.steps - self.marks[0] >= RESTART_WINDOW:
            self.marks.popleft()
        if not self.rebuildable or len(self.marks) > _restarts["limit"] or in_a_row > IN_A_ROW:
            raise EnvFailure(f"{self.env_id}: {len(self.marks)} environment failures within {RESTART_WINDOW:,} env "
                             f"steps, {in_a_row} of one env in a row (max_env_restarts {_restarts['limit']}, "
                             f"{IN_A_ROW} in a row); the last one above") from exc
        if not self.counted:
            sys.stderr.write(f"drlmpi: warning: greedy evaluation: {self.env_id} raised {type(exc).__name__}: {exc}; "
                             "made anew (not a restart of training)\n")
            return
        _restarts["count"] += 1
        sys.stderr.write(f"drlmpi: warning: {self.env_id} raised {type(exc).__name__}: {exc}; rebuilt its "
                         f"{envs} env(s) with a fresh seed (restart {_restarts['count']} on this rank)\n")

    @staticmethod
    def fresh_seed(seed: int) -> int:
        return int(np.random.SeedSequence([seed, _restarts["count"]]).generate_state(1)[0] % 2**31)


class Restarting(gym.Wrapper):
    """One env of a vector, rebuilt by make() (counted by `restarts`) when its step or reset raises. The failing step
    returns the observation that acted, reward 0, truncated, and info {RESTARTED: True}: the vector env autoresets
    it, and VecEnv marks it in Step.restarted. The rebuilt env's first reset gets a fresh seed."""

    def __init__(self, make, restarts: Restarts):
        super().__init__(make())
        self.make, self.restarts, self.last, self.seed, self.pending, self.in_a_row = make, restarts, None, 0, None, 0

    def step(self, action):
        try:
            out = self.env.step(action)
        except Exception as e:  # noqa: BLE001 - any failure of the env's own code
            self.rebuild(e)
            return self.last, 0.0, False, True, {RESTARTED: True}
        self.last, self.in_a_row = out[0], 0
        return out

    def reset(self, **kwargs):
        self.seed = kwargs.get("seed") if kwargs.get("seed") is not None else self.seed
        while True:
            if self.pending is not None and kwargs.get("seed") is None:
                kwargs["seed"], self.pending = self.pending, None
            try:
                obs, info = self.env.reset(**kwargs)
                self.last = obs
                return obs, info
            except Exception as e:  # noqa: BLE001
                self.rebuild(e)
                kwargs.pop("seed", None)

    def rebuild(self, exc: Exception) -> None:
        self.in_a_row += 1
        self.restarts.failed(exc, self.in_a_row)
        close_quietly(self.env)
        self.env = self.make()
        self.pending = Restarts.fresh_seed(self.seed or 0)


def close_quietly(env) -> None:
    """Close a failed env: it may not close cleanly; it is dropped either way."""
    try:
        env.close()
    except Exception:  # noqa: BLE001,S110
        pass


class VecEnv:
    """A batch of E environments with same-step autoreset and unclipped episode statistics; rebuilt with a fresh
    seed when one raises (see the module docstring)."""

    def __init__(self, env, num_envs: int, seed: int, atari: bool, build=None, env_id: str = "",
                 restarts: Restarts | None = None):
        """build() -> a new vector env like `env` (to restart it whole); None: an exception ends the job.
        restarts: the failure count its envs' Restarting wrappers share (this vector's too)."""
        self.env, self.num_envs, self.atari, self.seed = env, num_envs, atari, seed
        self.build, self.restarts = build, restarts or Restarts(env_id, rebuildable=build is not None)
        self.in_a_row = 0  # failures of the whole vector with no successful step between
        self.observation_space = env.single_observation_space
        self.action_space = env.single_action_space
        self._ret = np.zeros(num_envs, dtype=np.float64)
        self._len = np.zeros(num_envs, dtype=np.int64)
        self._obs: np.ndarray | None = None  # the observations the next actions act on

    def reset(self) -> np.ndarray:
        while True:
            try:
                return self._reset()
            except EnvFailure:  # (an env of the vector reached the limit: the job ends)
                raise
            except Exception as e:  # noqa: BLE001 - any failure of the env's own code
                self._restart(e)

    def _reset(self) -> np.ndarray:
        if self.atari:
            obs, _ = self.env.reset(seed=self.seed)
        else:
            obs, _ = self.env.reset(seed=[self.seed + i for i in range(self.num_envs)])
        self._ret[:] = 0
        self._len[:] = 0
        self._obs = obs
        return obs

    def step(self, actions: np.ndarray) -> Step:
        try:
            obs, reward, terminated, truncated, info = self.env.step(actions)
        except EnvFailure:
            raise
        except Exception as e:  # noqa: BLE001 - the whole vector failed (Atari's): rebuild it whole
            self._restart(e)
            cut = self._obs
            obs = self.reset()
            zeros = np.zeros(self.num_envs, bool)
            return Step(obs, np.zeros(self.num_envs, np.float32), zeros, ~zeros, cut, [], restarted=~zeros)
        self.in_a_row = 0
        self.restarts.steps += self.num_envs
        reward = np.asarray(reward, dtype=np.float32)
        self._ret += reward
        self._len += 1
        done = terminated | truncated
        final_obs, episodes, restarted = obs, [], None
        if done.any():
            final_obs = obs.copy()
            fo = info["final_obs"]
            restarted = restarted_of(info, self.num_envs)
            for i in np.flatnonzero(done):
                final_obs[i] = fo[i]
                if restarted is None or not restarted[i]:  # (a cut by a failure is not a finished episode)
                    episodes.append((float(self._ret[i]), int(self._len[i])))
            self._ret[done] = 0
            self._len[done] = 0
        self._obs = obs
        return Step(obs, reward, terminated, truncated, final_obs, episodes, restarted)

    def _restart(self, exc: Exception) -> None:
        """Count the failure (EnvFailure past the limit), then close the envs and build new ones, freshly seeded."""
        self.in_a_row += 1
        self.restarts.failed(exc, self.in_a_row, self.num_envs)
        close_quietly(self.env)
        self.env = self.build()
        self.seed = Restarts.fresh_seed(self.seed)

    def close(self) -> None:
        self.env.close()


def restarted_of(info: dict, num_envs: int) -> np.ndarray | None:
    """[E] bool: the envs a Restarting wrapper rebuilt on this step (from the vector's final_info), or None."""
    final = info.get("final_info", {})
    if RESTARTED not in final:
        return None
    return np.asarray(final[RESTARTED], bool) & np.asarray(final["_" + RESTARTED], bool)


def make_vec(env_id: str, num_envs: int, seed: int, sticky: float = 0.25, noop_max: int = 30,
             fire_reset: bool = True, render: bool = False, counted: bool = True) -> VecEnv:
    """Build E environments of env_id for one rank, seeded from `seed`. Atari only: `sticky` (the probability ALE
    repeats the previous action each frame), `noop_max`, `fire_reset` (one frame of FIRE after each reset, in the
    games that have it; its screen is the episode's first observation). render: other envs with rgb_array
    rendering (Atari's and MinAtar's videos are drawn from the observations). counted=False: restarts of these envs
    are not training's (Restarts)."""
    check_env_id(env_id)
    restarts = Restarts(env_id, counted=counted)  # (every env of the vector counts against one limit)
    if is_atari(env_id):
        from ale_py.vector_env import AtariVectorEnv

        game = gym.spec(env_id).kwargs["game"]

        def build():
            return AtariVectorEnv(
                game, num_envs, num_threads=1, repeat_action_probability=sticky, noop_max=noop_max,
                frameskip=4, maxpool=True, img_height=84, img_width=84, grayscale=True, stack_num=4,
                episodic_life=False, reward_clipping=False, autoreset_mode="SameStep", use_fire_reset=fire_reset,
            )
    else:
        from gymnasium.vector import AutoresetMode, SyncVectorEnv

        def build():
            return SyncVectorEnv([lambda: Restarting(lambda: make_one(env_id, render), restarts)
                                  for _ in range(num_envs)],
                                 autoreset_mode=AutoresetMode.SAME_STEP)
    return VecEnv(build(), num_envs, seed, atari=is_atari(env_id), build=build, env_id=env_id, restarts=restarts)


def spaces(env_id: str):
    """(single observation space, single action space) of env_id, from a throwaway one-env instance."""
    env = make_vec(env_id, 1, seed=0)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()
