"""Greedy evaluation: of a checkpoint (`drlmpi eval`), and during training on the lead learner (`GreedyEval`). K full
episodes, split over up to 8 envs with fixed quotas: each env runs a fixed number of episodes decided in advance,
so short episodes are not over-counted (taking the first K to finish would bias the mean low or high).
"""

import math
import sys
import time

import numpy as np

from drlmpi import algos, checkpoint, config
from drlmpi.envs import EnvFailure, close_quietly, make_vec
from drlmpi.errors import CheckpointError, UserError

EVAL_SEED = 12345  # the envs' seed of every greedy evaluation (drlmpi eval's default, and during training)
EVAL_ENVS = 8  # envs playing an evaluation's episodes side by side, at most


class Episodes:
    """`episodes` full episodes of policy (obs [E, ...] -> actions [E], and `policy.reset(done [E])` if it has state)
    on env (reset here), each of its E envs running a quota fixed in advance; one vector step per `step()`, until
    `done`. recorder (video.Recorder, E = 1): sees each observation acted on, and each episode's end."""

    def __init__(self, env, policy, episodes: int, recorder=None):
        self.env, self.policy, self.recorder = env, policy, recorder
        self.quota = np.full(env.num_envs, episodes // env.num_envs)
        self.quota[: episodes % env.num_envs] += 1
        self.per_env: list[list[float]] = [[] for _ in range(env.num_envs)]
        self.obs = env.reset()
        self.reset = getattr(policy, "reset", None)  # a recurrent policy zeroes its state where episodes ended

    @property
    def done(self) -> bool:
        return all(len(r) >= q for r, q in zip(self.per_env, self.quota))

    def returns(self) -> list[float]:
        return [r for rs in self.per_env for r in rs]

    def step(self) -> bool:
        """One step of every env; whether every quota is now met."""
        rec = self.recorder
        if rec is not None:
            rec.see(self.obs)
        step = self.env.step(self.policy(self.obs))
        if self.reset is not None:
            self.reset(step.done)
        ended = step.done if step.restarted is None else step.done & ~step.restarted  # (a cut by a failure: none)
        for i, (ret, length) in zip(np.flatnonzero(ended), step.episodes):
            if len(self.per_env[i]) < self.quota[i]:
                self.per_env[i].append(ret)
                if rec is not None:
                    rec.ended(ret, length)
        if rec is not None and step.restarted is not None and step.restarted.any():
            rec.cut()
        self.obs = step.obs
        return self.done


def episode_returns(env, policy, episodes: int, recorder=None) -> list[float]:
    """Returns of `episodes` full episodes (Episodes) of policy on env, closed after."""
    run = Episodes(env, policy, episodes, recorder)
    try:
        while not run.done:
            run.step()
    except BaseException:
        if recorder is not None:
            recorder.cut()  # (no half episode left to look whole)
        raise
    finally:
        env.close()
    return run.returns()


class GreedyEval:
    """The lead learner's greedy evaluation during training: every `cfg.eval_every` env steps (0: a twentieth of
    total_env_steps), the networks a checkpoint would hold, copied then, play `cfg.eval_episodes` episodes on envs
    of their own (the same seeded starts each time). Vector steps in each `poll` while evaluation has taken at most
    BUDGET of the wall time since it began (its start, building the policy, counted), and for at most SLICE_S: the
    learner is paused no longer than that, one vector step (a CNN's forward on a CPU can take longer) or an
    evaluation's start (its envs made once, the policy built), and slowed
    by at most that share while an evaluation runs. Its envs' failures are not training's (Restarts, counted=False);
    an evaluation whose env fails for good is dropped with one line. The policy is built under a forked torch RNG:
    training draws the same random numbers with or without evaluations. `row()`: the mean return of the last
    finished evaluation and the env steps of its weights (NaN before the first).

    `make(cfg, algo, parts, steps)` builds one for a learner, or None where the algorithm module cannot be found
    by `algo` or has no `load_policy` (a user's module: one line says so)."""

    BUDGET = 0.1
    SLICE_S = 0.002  # seconds of evaluation per poll, at most (one vector step at least)

    def __init__(self, cfg, module, parts, steps: int = 0):
        """steps: env steps already done (a resumed run keeps the grid of every `eval_every` steps)."""
        self.cfg, self.module, self.parts = cfg, module, parts
        self.every = cfg.eval_every or max(1, cfg.total_env_steps // 20)
        self.next_at, self.run, self.env = (steps // self.every + 1) * self.every, None, None
        self.at = self.began = self.spent = 0.0
        self.last = {"eval_return": math.nan, "eval_env_steps": math.nan}

    @staticmethod
    def make(cfg, algo: str, parts, steps: int = 0) -> "GreedyEval | None":
        try:
            module = algos.get(algo)
        except UserError:
            module = None
        if module is None or not hasattr(module, "load_policy"):
            sys.stderr.write(f"drlmpi: warning: no greedy evaluation during training: algorithm '{algo}' has no "
                             "module with a load_policy (drlmpi.algos)\n")
            return None
        return GreedyEval(cfg, module, parts, steps)

    def row(self) -> dict:
        return dict(self.last)

    def poll(self, steps: int) -> None:
        t0 = now = time.perf_counter()
        try:
            if self.run is None:
                if steps < self.next_at:
                    return
                self.begin(steps)
            while now - t0 <= self.SLICE_S and self.spent + (now - t0) <= self.BUDGET * (now - self.began):
                if self.run.step():
                    self.last = {"eval_return": float(np.mean(self.run.returns())), "eval_env_steps": self.at}
                    self.run = None
                    break
                now = time.perf_counter()
        except (EnvFailure, OSError) as e:  # an env failing for good: training goes on without this evaluation
            sys.stderr.write(f"drlmpi: warning: greedy evaluation at {self.at} env steps dropped: "
                             f"{type(e).__name__}: {e}\n")
            self.run = None
            self.close()
        self.spent += time.perf_counter() - t0

    def begin(self, steps: int) -> None:
        import torch

        from drlmpi.nets import state_arrays

        self.at, self.began, self.spent = steps, time.perf_counter(), 0.0
        self.next_at = (steps // self.every + 1) * self.every
        if self.parts.refresh:
            self.parts.refresh()
        weights = {k: state_arrays(m) for k, m in self.parts.nets.items()}  # (copies: a policy builds its own net)
        if self.env is None:
            self.env = make_vec(self.cfg.env, min(self.cfg.eval_episodes, EVAL_ENVS), seed=EVAL_SEED, counted=False)
        with torch.random.fork_rng(devices=[]):  # (building the policy's net draws from torch's generator)
            policy = self.module.load_policy(self.cfg, weights, self.env)
        self.run = Episodes(self.env, policy, self.cfg.eval_episodes)

    def close(self) -> None:
        if self.env is not None:
            close_quietly(self.env)
            self.env = None


def policy_checkpoint(path: str, trust: bool = False):
    """(checkpoint, algorithm module) of the policy a checkpoint or run dir holds; a population's (PBT) is its best
    member's (the module's `policy_state`). Files are data: the algorithm a checkpoint names is a built-in one,
    unless `trust` (the user's --trust) lets it name a module to import."""
    def module_of(ckpt):
        if ckpt.algo not in algos.ALGOS and not trust:
            raise CheckpointError(f"{ckpt.path}: unknown algorithm '{ckpt.algo}' (a checkpoint's algorithm is a "
                                  "built-in one; --trust imports the module it names)")
        try:
            return algos.get(ckpt.algo)
        except UserError:
            raise CheckpointError(f"{ckpt.path}: unknown algorithm '{ckpt.algo}'") from None

    ckpt = checkpoint.load(path)
    module = module_of(ckpt)
    if hasattr(module, "policy_state"):
        ckpt = module.policy_state(ckpt)
        module = module_of(ckpt)
    return ckpt, module


def trusted_env(ckpt, env_id: str, given: str | None, trust: bool) -> str:
    """The env a checkpoint names, unless it names a module (`module:Env`) that the user did not name again (`given`,
    their --env) or allow (--trust): importing it would run that module's code."""
    if ":" in env_id and env_id != given and not trust:
        raise CheckpointError(f"{ckpt.path}: its env {env_id} names the module '{env_id.partition(':')[0]}': pass "
                              f"--env {env_id} to import it, or --trust")
    return env_id


def evaluate(path: str, episodes: int, seed: int = EVAL_SEED, env_id: str | None = None, trust: bool = False,
             video: str | None = None) -> dict:
    """Greedy returns of `episodes` episodes of a checkpoint's policy. env_id: the user's --env, which must be the
    checkpoint's (it lets a `module:Env` id be imported). video: a directory for one MP4 per episode (one env
    playing them in turn; drlmpi.video)."""
    ckpt, module = policy_checkpoint(path, trust)
    cfg = config.from_dict(module.Config, ckpt.config)
    if env_id is not None and env_id != cfg.env:
        raise UserError(f"--env {env_id}: {ckpt.path} was trained on {cfg.env}")
    name = trusted_env(ckpt, cfg.env, env_id, trust)
    recorder = None
    if video is not None:
        from drlmpi.video import Recorder

        recorder = Recorder(video, name)  # (one line if the video extra is missing, before any env is made)
    env = make_vec(name, 1 if video else min(episodes, EVAL_ENVS), seed=seed, render=video is not None)
    if recorder is not None:
        recorder.vec = env
    try:
        policy = module.load_policy(cfg, ckpt.weights, env)
    except (ValueError, KeyError) as e:
        env.close()
        raise CheckpointError(f"{ckpt.path}: weights do not match {cfg.env}: {e}") from None
    flat = episode_returns(env, policy, episodes, recorder)
    return {"checkpoint": str(ckpt.path), "algo": ckpt.algo, "env": cfg.env,
            "env_steps": int(ckpt.counters.get("env_steps", 0)), "episodes": len(flat),
            "mean_return": float(np.mean(flat)), "std_return": float(np.std(flat)),
            "min_return": float(np.min(flat)), "max_return": float(np.max(flat)),
            **({"videos": recorder.files} if recorder else {})}
