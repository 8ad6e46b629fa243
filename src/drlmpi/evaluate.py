"""Greedy evaluation of a checkpoint: K full episodes, split over up to 8 envs with fixed quotas.

Each env runs a fixed number of episodes decided in advance, so short episodes are
not over-counted (taking the first K to finish would bias the mean low or high).
"""

import numpy as np

from drlmpi import algos, checkpoint, config
from drlmpi.envs import make_vec
from drlmpi.errors import CheckpointError, UserError


def episode_returns(env, policy, episodes: int, recorder=None) -> list[float]:
    """Returns of `episodes` full episodes of policy (obs [E, ...] -> actions [E], and `policy.reset(done [E])` if it
    has state) on env (closed after), each of its E envs running a quota fixed in advance. recorder (video.Recorder,
    E = 1): sees each observation acted on, and each episode's end."""
    num_envs = env.num_envs
    quota = np.full(num_envs, episodes // num_envs)
    quota[: episodes % num_envs] += 1
    returns: list[list[float]] = [[] for _ in range(num_envs)]
    obs = env.reset()
    reset = getattr(policy, "reset", None)  # a recurrent policy zeroes its state where episodes ended
    while any(len(r) < q for r, q in zip(returns, quota)):
        if recorder is not None:
            recorder.see(obs)
        step = env.step(policy(obs))
        if reset is not None:
            reset(step.done)
        ended = step.done if step.restarted is None else step.done & ~step.restarted  # (a cut by a failure: none)
        for i, (ret, length) in zip(np.flatnonzero(ended), step.episodes):
            if len(returns[i]) < quota[i]:
                returns[i].append(ret)
                if recorder is not None:
                    recorder.ended(ret, length)
        if recorder is not None and step.restarted is not None and step.restarted.any():
            recorder.cut()
        obs = step.obs
    env.close()
    return [r for rs in returns for r in rs]


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


def evaluate(path: str, episodes: int, seed: int = 12345, env_id: str | None = None, trust: bool = False,
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
    env = make_vec(name, 1 if video else min(episodes, 8), seed=seed, render=video is not None)
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
