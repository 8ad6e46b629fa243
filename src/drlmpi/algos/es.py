"""Evolution Strategies (Salimans et al., 2017): every rank a worker; a perturbation travels as one integer.

Roles: every rank is a worker (`actor`); the first leads (logs, checkpoints, decides the stop).
  noise     every host builds one table of `noise_size` standard normals from the run's seed, in a shared window
            (one copy per host, never sent); perturbation i is table[i : i + P] for a P-parameter policy.
  worker    each generation evaluates `pairs` antithetic pairs theta +- sigma * eps_i (one episode each, on its
            own env), then all workers exchange only (i, F+, F-, steps) per pair with one Allgather, and the
            observation statistics (count, sum, sum of squares) with one Allreduce. Every worker then computes
            the same update from the same numbers: centered-rank fitness shaping, the gradient estimate
            sum_i (r+_i - r-_i) eps_i / (2 n sigma), Adam with weight decay on theta; so all hold the same theta and
            observation normaliser without any weights sent. Bytes per generation are O(workers x pairs),
            independent of P (the `bytes_per_generation` column; `exchange_fraction` is the lead's share of time in
            the exchange, waiting for the slowest worker included).
  eval      every `eval_generations` generations worker 0 runs the mean policy theta without noise for one episode:
            the `eval_return` column (what RLlib's ES lacked before ray PR #1225).
Policies are deterministic: argmax of the MLP's logits (discrete actions) on normalised observations.
Defaults are CartPole-v1's.

Messages (each plane on its own channel, see runtime.Channels):
  pattern               channel   from -> to            payload                                      when
  Allgather             workers   worker <-> workers    float64 [pairs, 6]: (noise index, F+, F-,    every
                                                        steps, the lead's stop flag, restarts)       generation
  Allreduce             workers   worker <-> workers    float64 [2 obs_dim + 1]: obs count, sum,     every
                                                        sum of squares                               generation
  CHECKPOINT, _DONE,    control   lead <-> workers      request; RNG state (comm.checkpoint)         checkpoint_
  SIGNAL                                                signal number                                every, end
"""

import time
from dataclasses import dataclass
from typing import ClassVar

import gymnasium as gym
import numpy as np
import torch
from mpi4py import MPI
from torch import nn

from drlmpi.checkpoint import State
from drlmpi.comm.segments import sync
from drlmpi.config import Hparam, Model, opt, require_at_least
from drlmpi.envs import Restarts, close_quietly, env_restarts, is_box, is_minatar, make_one, spaces
from drlmpi.errors import UserError
from drlmpi.learner import Learner, Parts
from drlmpi.nets import MLP, flat_params, load_arrays
from drlmpi.nets.optim import Adam
from drlmpi.runtime import RoleSpec, Runtime, barrier, unlink_mpi_segments, wait

LAYOUT = RoleSpec(fixed=(), min_actors=1, serial_ok=True)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]
FIELDS = 6  # per pair in the Allgather: noise index, F+, F-, env steps, the lead's stop flag, the worker's env restarts


@dataclass
class Config(Model):
    """lr is Adam's step size on theta (constant); hidden the policy's MLP."""

    pairs: int = opt(8, "antithetic pairs each worker evaluates per generation")
    sigma: float = opt(0.05, "std of the parameter noise")
    weight_decay: float = opt(0.005, "L2 coefficient on theta, added to the gradient estimate")
    noise_size: int = opt(1 << 24, "standard normals in the shared noise table (one copy per host)")
    eval_generations: int = opt(5, "generations between evaluations of the mean policy (worker 0, one episode)")
    max_episode_steps: int = opt(1000, "longest episode evaluated (0: the env's own limit only)")

    DEFAULTS: ClassVar[dict] = {"total_env_steps": 1_500_000, "lr": 0.03, "hidden": (32, 32)}
    SEARCH: ClassVar[dict] = {"lr": Hparam(("lr",), 1e-3, 0.1), "sigma": Hparam(("sigma",), 5e-3, 0.2)}  # algos.pbt
    POSITIVE: ClassVar[tuple[str, ...]] = ("pairs", "noise_size", "eval_generations", "total_env_steps")

    def check_own(self):
        require_at_least(self, ("max_episode_steps",), least=0)
        if not self.sigma > 0:
            raise UserError(f"config: sigma must be > 0, got {self.sigma}")


def validate(cfg: Config) -> None:
    """Rank 0, before the job starts: discrete actions, vector observations or a MinAtar grid (flattened: 400 or so
    inputs), and a noise table longer than the policy (one line, exit 2). Atari is refused: its frames come
    preprocessed from a vector env, which ES's one-env episodes do not use."""
    obs_space, act_space = spaces(cfg.env)
    if is_box(act_space) or not (len(obs_space.shape) == 1 or is_minatar(cfg.env)):
        raise UserError(f"config: es needs discrete actions and vector observations (or a MinAtar grid); {cfg.env} "
                        f"has {obs_space} and {act_space}")
    n = sum(p.numel() for p in build_net(cfg, obs_space, act_space).parameters())
    if n >= cfg.noise_size:
        raise UserError(f"config: noise_size ({cfg.noise_size}) must exceed the policy's {n} parameters")


class Policy(nn.Module):
    """Deterministic policy: obs [B, D] -> logits [B, A] on observations normalised by running statistics (the
    buffers `obs_mean`, `obs_std`, kept identical on every worker and saved with the weights)."""

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...]):
        super().__init__()
        self.mlp = MLP(obs_dim, hidden)
        self.head = nn.Linear(self.mlp.out_dim, n_actions)
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.head(self.mlp((obs.float() - self.obs_mean) / self.obs_std))


def build_net(cfg: Config, obs_space, act_space) -> Policy:
    return Policy(int(np.prod(obs_space.shape)), int(act_space.n), tuple(cfg.hidden))


def load_policy(cfg: Config, weights: dict, env):
    """The mean policy theta: obs [E, *obs_shape] (flattened) -> actions [E] (argmax)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.requires_grad_(False).eval()
    return lambda obs: net(torch.as_tensor(obs).flatten(1)).argmax(dim=1).numpy()


class NumpyPolicy:
    """The policy's forward in numpy on a flat parameter vector (an episode's step costs microseconds, not torch's
    call overhead): layers from the module's parameter shapes, in its parameters() order."""

    def __init__(self, net: Policy):
        self.shapes = [tuple(p.shape) for p in net.parameters()]
        self.mean, self.std = net.obs_mean.numpy(), net.obs_std.numpy()

    def layers(self, theta: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        out, k = [], 0
        for w_shape, b_shape in zip(self.shapes[::2], self.shapes[1::2], strict=True):
            w = theta[k : k + int(np.prod(w_shape))].reshape(w_shape)
            k += w.size
            out.append((w, theta[k : k + b_shape[0]]))
            k += b_shape[0]
        return out

    def act(self, layers, obs: np.ndarray) -> int:
        h = (obs - self.mean) / self.std
        for j, (w, b) in enumerate(layers):
            h = w @ h + b
            if j < len(layers) - 1:
                h = np.maximum(h, 0.0)
        return int(np.argmax(h))


def episode(env, policy: NumpyPolicy, theta: np.ndarray, seed: int, max_steps: int, stats: np.ndarray | None
            ) -> tuple[float, int]:
    """One episode of the policy theta: (return, steps); adds (1, obs, obs^2) of every observation to stats."""
    layers = policy.layers(theta)
    obs, _ = env.reset(seed=seed)
    total, steps, d = 0.0, 0, len(obs)
    while True:
        if stats is not None:
            stats[0] += 1
            stats[1 : 1 + d] += obs
            stats[1 + d :] += obs * obs
        obs, r, term, trunc, _ = env.step(policy.act(layers, obs))
        total += float(r)
        steps += 1
        if term or trunc or (max_steps and steps >= max_steps):
            return total, steps


def flat_env(env_id: str):
    """One env of env_id with its observations flattened to float32 [D] (the numpy policy's input); vector
    observations as they are."""
    env = make_one(env_id)
    if len(env.observation_space.shape) == 1:
        return env
    return gym.wrappers.TransformObservation(env, lambda o: np.asarray(o, np.float32).ravel(), gym.spaces.Box(
        -np.inf, np.inf, (int(np.prod(env.observation_space.shape)),), np.float32))


class Env:
    """A worker's env, rebuilt when an episode raises (envs.Restarts); that episode runs again on the new one with a
    fresh seed (its fitness must come from a whole episode)."""

    def __init__(self, env_id: str):
        self.id, self.env, self.restarts = env_id, flat_env(env_id), Restarts(env_id)

    def episode(self, policy: NumpyPolicy, theta: np.ndarray, seed: int, max_steps: int, stats: np.ndarray | None
                ) -> tuple[float, int, int]:
        """(return, steps, the seed the episode ran with: a rerun's fresh one)."""
        in_a_row = 0
        while True:
            try:
                ret, steps = episode(self.env, policy, theta, seed, max_steps, stats)
                self.restarts.steps += steps
                return ret, steps, seed
            except Exception as e:  # noqa: BLE001 - any failure of the env's own code
                in_a_row += 1
                self.restarts.failed(e, in_a_row)
                close_quietly(self.env)
                self.env, seed = flat_env(self.id), Restarts.fresh_seed(seed)

    def close(self) -> None:
        self.env.close()


def centered_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks of x (any shape) scaled to [-0.5, 0.5]: the fitness shaping of the paper."""
    ranks = np.empty(x.size, np.float64)
    ranks[x.ravel().argsort(kind="stable")] = np.arange(x.size)
    return (ranks / max(1, x.size - 1) - 0.5).reshape(x.shape)


def noise_table(node: MPI.Intracomm, size: int, seed: int) -> tuple[MPI.Win, np.ndarray]:
    """Collective over the node: `size` float32 standard normals from the seed, in one shared window per host."""
    win = MPI.Win.Allocate_shared(4 * size if node.rank == 0 else 0, 4, comm=node)
    buf, _ = win.Shared_query(0)
    table = np.frombuffer(buf, np.float32, count=size)
    win.Lock_all(MPI.MODE_NOCHECK)
    if node.rank == 0:
        table[:] = np.random.default_rng([seed, 0x5E5]).standard_normal(size, np.float32)
    sync(win)  # the table before the barrier; read-only after it
    barrier(node)
    sync(win)
    unlink_mpi_segments()  # (every rank of the host attached it: nothing of it may outlive the job in /dev/shm)
    return win, table


def learner_parts(cfg: Config, net: torch.nn.Module) -> Parts:
    """A worker's declared state: the policy (its observation normaliser in buffers) and Adam on theta."""
    return Parts({"online": net}, {"adam": Adam(net.parameters(), lr=cfg.lr)})


def learn(net, opt, table: np.ndarray, everyone: np.ndarray, cfg: Config) -> np.ndarray:
    """ES's update from every worker's pairs [W * pairs, FIELDS] (noise index, F+, F-, ...), the same on every
    worker: centered-rank fitness shaping, the gradient estimate sum_i (r+_i - r-_i) eps_i / (2 n sigma), an Adam
    step on theta with weight decay. Returns the new theta [P]."""
    theta = flat_params(net)
    shaped = centered_ranks(everyone[:, 1:3])
    idx = everyone[:, 0].astype(np.int64)
    grad = np.zeros(len(theta), np.float64)
    for w, i in zip(shaped[:, 0] - shaped[:, 1], idx, strict=True):
        grad += w * table[i : i + len(theta)]
    grad /= len(idx) * 2 * cfg.sigma  # an ascent direction of E[F]
    descent = torch.as_tensor(-grad + cfg.weight_decay * theta)  # Adam minimises
    for p, gp in zip(net.parameters(), torch.split(descent, [p.numel() for p in net.parameters()]), strict=True):
        p.grad = gp.view_as(p).to(torch.float32)
    opt.step()
    return flat_params(net)


class ObsStats:
    """The observation normaliser's statistics over every worker since the start: (count, sum, sum of squares)
    [1 + 2d]; `gen` holds this worker's of the current generation. Restored from the network's buffers and the
    checkpoint's obs_count."""

    def __init__(self, net, d: int, resumed: State | None):
        self.net, self.d = net, d
        self.gen, self.totals = np.zeros(1 + 2 * d), np.zeros(1 + 2 * d)
        if resumed:
            n0 = float(resumed.counters.get("obs_count", 0))
            mean, std = net.obs_mean.numpy().astype(np.float64), net.obs_std.numpy().astype(np.float64)
            self.totals[:] = np.concatenate([[n0], n0 * mean, n0 * (std**2 + mean**2)])

    def update(self) -> None:
        """Add the generation's (allreduced) statistics; the network normalises with the new mean and std."""
        d, t = self.d, self.totals
        t += self.gen
        mean = t[1 : 1 + d] / t[0]
        std = np.sqrt(np.maximum(t[1 + d :] / t[0] - mean**2, 1e-4))
        self.net.obs_mean.copy_(torch.as_tensor(mean))  # (the policy reads these buffers through numpy views)
        self.net.obs_std.copy_(torch.as_tensor(std))


def evaluate_pairs(rt: Runtime, cfg: Config, env, policy, table: np.ndarray, theta: np.ndarray, obs: ObsStats,
                   mine: np.ndarray) -> None:
    """This worker's `pairs` antithetic pairs: mine[k, :4] = (noise index, F+, F-, env steps)."""
    P = len(theta)
    obs.gen[:] = 0
    for k in range(cfg.pairs):
        i = int(rt.gen.integers(0, cfg.noise_size - P))
        eps = table[i : i + P]
        seed = int(rt.gen.integers(2**31))  # both members of a pair see the same episode start
        fp, sp, seed = env.episode(policy, theta + cfg.sigma * eps, seed, cfg.max_episode_steps, obs.gen)
        fm, sm, _ = env.episode(policy, theta - cfg.sigma * eps, seed, cfg.max_episode_steps, obs.gen)  # (the pair
        # starts from one state: the seed the + episode ran with, a rerun's if its env failed)
        mine[k, :4] = i, fp, fm, sp + sm


def run_worker(rt: Runtime, cfg: Config, planes: None, resumed: State | None) -> dict:
    """The `actor` role (a worker): evaluate pairs -> exchange (i, F+, F-, steps) and observation statistics ->
    learn, every generation, until total_env_steps (the lead decides the stop)."""

    workers = rt.role_comm
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)  # the same initial theta on every worker
    parts = learner_parts(cfg, build_net(cfg, obs_space, act_space).requires_grad_(False))
    net, opt = parts.nets["online"], parts.optims["adam"]
    learner = Learner(rt, cfg, "es", parts, ["eval_return", "eval_env_steps", "fitness_mean", "fitness_max",
                                             "workers", "bytes_per_generation", "exchange_fraction"], resumed,
                      lead_rank=0,
                      actors=[], counters=lambda: {"obs_count": float(obs.totals[0])})
    obs = ObsStats(net, int(np.prod(obs_space.shape)), resumed)  # (from the restored network's normaliser)
    win, table = noise_table(rt.node, cfg.noise_size, cfg.seed)
    theta, policy, env = flat_params(net), NumpyPolicy(net), Env(cfg.env)
    mine, everyone = np.zeros((cfg.pairs, FIELDS)), np.zeros((workers.size * cfg.pairs, FIELDS))
    last = {"eval_return": float("nan"), "eval_env_steps": float("nan"), "exchange": 0.0,
            "since": time.perf_counter(), "others": 0}  # (since: the exchange's seconds are counted from it)

    def row():
        f, now = everyone[:, 1:3], time.perf_counter()
        out = {"eval_return": last["eval_return"], "eval_env_steps": last["eval_env_steps"],
               "fitness_mean": float(f.mean()), "fitness_max": float(f.max()), "workers": workers.size,
               "bytes_per_generation": workers.size * (mine.nbytes + obs.gen.nbytes),
               "exchange_fraction": round(last["exchange"] / max(now - last["since"], 1e-9), 4),
               "env_restarts": last["others"] + env_restarts()}  # (the lead's own now: its evaluations included)
        last.update(exchange=0.0, since=now)
        return out

    while True:
        evaluate_pairs(rt, cfg, env, policy, table, theta, obs, mine)
        mine[:, 5] = 0
        mine[0, 5] = env_restarts()  # (this worker's own count, once)
        mine[:, 4] = learner.lead and (learner.steps + mine[:, 3].sum() * workers.size >= cfg.total_env_steps or
                                       bool(learner.signal()))
        t0 = time.perf_counter()
        wait(workers.Iallgather(mine, everyone), what="the other workers' fitness")
        wait(workers.Iallreduce(MPI.IN_PLACE, obs.gen, op=MPI.SUM), what="the other workers' observation statistics")
        last["exchange"] += time.perf_counter() - t0
        last["others"] = int(everyone[:, 5].sum() - everyone[0, 5])  # the other workers' restarts (row: + the lead's)
        stop = bool(everyone[0, 4])
        learner.steps += int(everyone[:, 3].sum())
        learner.updates += 1
        theta = learn(net, opt, table, everyone, cfg)
        obs.update()
        if learner.lead and learner.updates % cfg.eval_generations == 0:
            last["eval_return"], _, _ = env.episode(policy, theta, int(rt.gen.integers(2**31)), 0, None)
            last["eval_env_steps"] = learner.steps
            learner.log.episode(last["eval_return"])
        if not stop:
            learner.checkpoint()
        learner.poll(row)
        if stop:
            break
    summary = learner.finish(row, env)
    win.Unlock_all()
    win.Free()
    return summary


ROLES = {"actor": run_worker, "serial": run_worker}  # (one rank: a worker alone)
