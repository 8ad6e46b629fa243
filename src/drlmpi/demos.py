"""Demonstrations: record episodes of any policy to HDF5 (`drlmpi record`), and load them for R2D3.

A policy is a checkpoint's greedy policy, or any importable function `module:function` taking obs [E, ...] (numpy)
and returning actions [E] (integers), or [E, *shape] floats inside the bounds of a continuous (Box) action space.
The file format is documented in docs/demonstrations.md: a drlmpi HDF5 file
(checksummed user block, written atomically, as checkpoints) of kind "demonstrations" with the episodes' steps
concatenated and per-episode offsets.
"""

import importlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from drlmpi import __version__, checkpoint
from drlmpi.envs import Step, is_box, make_vec
from drlmpi.errors import CheckpointError, UserError

KIND = "demonstrations"
STEP_FIELDS = ("observations", "actions", "rewards", "terminations", "truncations")


@dataclass
class Demos:
    env: str
    observations: np.ndarray  # [N, ...] the observations acted on, episode after episode
    actions: np.ndarray  # int64 [N], or float32 [N, *action_shape] for a box of actions
    rewards: np.ndarray  # float32 [N]
    terminations: np.ndarray  # bool [N]
    truncations: np.ndarray  # bool [N]
    final_observations: np.ndarray  # [K, ...] each episode's observation after its last step
    episode_starts: np.ndarray  # int64 [K] offsets into the step arrays
    returns: np.ndarray  # float64 [K]

    @property
    def episodes(self) -> int:
        return len(self.episode_starts)

    def episode(self, k: int) -> dict[str, np.ndarray]:
        """Episode k's steps: each step field [T_k, ...], plus final_observation."""
        lo = int(self.episode_starts[k])
        hi = int(self.episode_starts[k + 1]) if k + 1 < self.episodes else len(self.actions)
        out = {f: getattr(self, f)[lo:hi] for f in STEP_FIELDS}
        out["final_observation"] = self.final_observations[k]
        return out

    def steps(self):
        """Every step, episode after episode, as a one-env vector step: (obs [1, ...], action [1, ...], envs.Step),
        what an actor's builder is pushed."""
        for k in range(self.episodes):
            ep = self.episode(k)
            obs, T = ep["observations"], len(ep["actions"])
            for t in range(T):
                nxt = obs[t + 1 : t + 2] if t + 1 < T else ep["final_observation"][None]
                yield obs[t : t + 1], ep["actions"][t : t + 1], Step(nxt, ep["rewards"][t : t + 1],
                                                                     ep["terminations"][t : t + 1],
                                                                     ep["truncations"][t : t + 1], nxt)


def import_policy(spec: str):
    """`module:function` -> the function (UserError if it cannot be imported)."""
    module, sep, name = spec.partition(":")
    if not sep or not module or not name:
        raise UserError(f"--policy {spec}: expected module:function")
    try:
        fn = getattr(importlib.import_module(module), name)
    except ImportError as e:
        raise UserError(f"--policy {spec}: cannot import module '{module}': {e}") from None
    except AttributeError:
        raise UserError(f"--policy {spec}: module '{module}' has no '{name}'") from None
    if not callable(fn):
        raise UserError(f"--policy {spec}: '{name}' is not callable")
    return fn


def record(env_id: str, make_policy, episodes: int, seed: int, source: str, num_envs: int = 8,
           epsilon: float = 0.0) -> Demos:
    """Run `episodes` full episodes of make_policy(env) (obs [E, ...] -> actions [E]; `policy.reset(done)` if
    recurrent) on min(episodes, num_envs) envs with quotas fixed in advance, so short episodes are not favoured;
    with probability `epsilon` an env takes a uniformly random action instead (seeded by `seed`)."""
    env = make_vec(env_id, min(episodes, num_envs), seed=seed)
    E, space = env.num_envs, env.action_space
    quota = np.full(E, episodes // E)
    quota[: episodes % E] += 1
    running = [{f: [] for f in STEP_FIELDS} for _ in range(E)]
    finished: list[tuple[dict, np.ndarray, float]] = []
    done_per_env = np.zeros(E, int)
    rng = np.random.default_rng(seed)
    try:
        policy = make_policy(env)
        reset = getattr(policy, "reset", None)
        obs = env.reset()
        while (done_per_env < quota).any():
            actions = np.asarray(policy(obs))
            check_actions(actions, E, space, source)
            if epsilon > 0:
                actions = random_where(rng.random(E) < epsilon, actions, space, rng)
            step = env.step(actions)
            if reset is not None:
                reset(step.done)
            for e in range(E):
                if step.restarted is not None and step.restarted[e]:  # failed and rebuilt: its episode is dropped
                    running[e] = {f: [] for f in STEP_FIELDS}
                    continue
                if done_per_env[e] >= quota[e]:
                    continue
                r = running[e]
                for f, v in zip(STEP_FIELDS, (obs[e], actions[e], step.reward[e], step.terminated[e],
                                              step.truncated[e])):
                    r[f].append(v)
                if step.done[e]:
                    finished.append(({f: np.asarray(v) for f, v in r.items()}, step.final_obs[e].copy(),
                                     float(np.sum(r["rewards"]))))
                    running[e] = {f: [] for f in STEP_FIELDS}
                    done_per_env[e] += 1
            obs = step.obs
    finally:
        env.close()
    starts = np.cumsum([0] + [len(ep["actions"]) for ep, _, _ in finished[:-1]]).astype(np.int64)
    cat = {f: np.concatenate([ep[f] for ep, _, _ in finished]) for f in STEP_FIELDS}
    dtype = np.float32 if is_box(space) else np.int64
    return Demos(env_id, cat["observations"], cat["actions"].astype(dtype), cat["rewards"].astype(np.float32),
                 cat["terminations"].astype(bool), cat["truncations"].astype(bool),
                 np.stack([fo for _, fo, _ in finished]), starts, np.array([r for _, _, r in finished]))


def random_where(mask: np.ndarray, actions: np.ndarray, space, rng: np.random.Generator) -> np.ndarray:
    """actions with the rows where mask [E] is set replaced by uniformly random actions of `space`."""
    out = actions.copy()
    k = int(mask.sum())
    if k:
        out[mask] = rng.uniform(space.low, space.high, (k, *space.shape)) if is_box(space) else \
            rng.integers(0, space.n, k)
    return out


def check_actions(actions: np.ndarray, n: int, space, source: str) -> None:
    """UserError unless actions are n valid actions of `space`: integers in [0, A), or floats [n, *shape] inside a
    Box's bounds."""
    if is_box(space):
        ok = actions.shape == (n, *space.shape) and np.issubdtype(actions.dtype, np.floating) and \
            bool(np.all((actions >= space.low) & (actions <= space.high)))
        want = f"{n} float actions of shape {space.shape} in [{space.low.min():g}, {space.high.max():g}]"
    else:
        ok = actions.shape == (n,) and np.issubdtype(actions.dtype, np.integer) and \
            (n == 0 or (actions.min() >= 0 and actions.max() < space.n))
        want = f"{n} integer actions in [0, {space.n})"
    if not ok:
        raise UserError(f"{source}: {actions.dtype} actions of shape {actions.shape}; expected {want}")


def save(path: str | Path, demos: Demos, source: str) -> str:
    """Write a demonstrations file atomically (checksummed); returns its SHA-256."""

    def fill(f):
        f.attrs.update({"kind": KIND, "env": demos.env, "episodes": demos.episodes, "steps": len(demos.actions),
                        "source": source, "drlmpi_version": __version__, "complete": True})
        image = demos.observations.ndim == 4
        for name in (*STEP_FIELDS, "final_observations", "episode_starts", "returns"):
            a = getattr(demos, name)
            f.create_dataset(name, data=a, compression="gzip" if image and "observations" in name else None)

    return checkpoint.write_file(path, fill)


def check_shapes(d: Demos, path, obs_space) -> None:
    """UserError unless every array has its shape and kind for N steps and K episodes of obs_space (actions are
    checked against the action space by check_actions)."""
    n, k, obs = len(d.actions), len(d.episode_starts), tuple(obs_space.shape)
    want = {"observations": ((n, *obs), obs_space.dtype), "final_observations": ((k, *obs), obs_space.dtype),
            "rewards": ((n,), "f"), "terminations": ((n,), "b"), "truncations": ((n,), "b"),
            "episode_starts": ((k,), "i"), "returns": ((k,), "f")}
    for name, (shape, kind) in want.items():
        a = getattr(d, name)
        ok_kind = a.dtype == kind if isinstance(kind, np.dtype) else a.dtype.kind == kind
        if tuple(a.shape) != shape or not ok_kind:
            raise UserError(f"demos: {path}: {name} is {a.dtype} {tuple(a.shape)}; expected "
                            f"{kind if isinstance(kind, np.dtype) else {'f': 'float', 'b': 'bool', 'i': 'int'}[kind]} "
                            f"{shape} (this run's observations are {obs_space.dtype} {obs})")


def load(path: str | Path, env_id: str, obs_space, act_space) -> Demos:
    """Read and check a demonstrations file for a run on env_id; UserError (one line) if it is damaged, not
    demonstrations, or recorded on another env or with other spaces."""
    try:
        f = checkpoint.open_verified(path)
    except CheckpointError as e:
        raise UserError(f"demos: {e}") from None
    with f:
        if f.attrs.get("kind") != KIND or not bool(f.attrs.get("complete", False)):
            raise UserError(f"demos: {path}: not a drlmpi demonstrations file")
        if f.attrs.get("env") != env_id:
            raise UserError(f"demos: {path} was recorded on {f.attrs.get('env', 'no env')}, this run is on {env_id}")
        try:
            d = Demos(str(f.attrs["env"]), *(f[n][()] for n in (*STEP_FIELDS, "final_observations",
                                                                  "episode_starts", "returns")))
        except KeyError as e:
            raise UserError(f"demos: {path}: missing dataset {e}") from None
        except (TypeError, AttributeError, ValueError, OSError) as e:  # a group where a dataset belongs, ...
            raise UserError(f"demos: {path}: unreadable ({type(e).__name__}: {e})") from None
    check_shapes(d, path, obs_space)
    n = len(d.actions)
    if d.episodes == 0 or d.episode_starts[0] != 0 or (np.diff(d.episode_starts) <= 0).any() or \
            d.episode_starts[-1] >= n:
        raise UserError(f"demos: {path}: inconsistent episode arrays")
    check_actions(d.actions, n, act_space, f"demos: {path}")
    ends = np.zeros(n, bool)
    ends[np.append(d.episode_starts[1:], n) - 1] = True
    if ((d.terminations | d.truncations) != ends).any():
        raise UserError(f"demos: {path}: an episode does not end (terminated or truncated) exactly at its last step")
    return d
