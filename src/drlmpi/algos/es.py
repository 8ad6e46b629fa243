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
  eval      every `eval_every` generations worker 0 runs the mean policy theta without noise for one episode:
            the `eval_return` column (what RLlib's ES lacked before ray PR #1225).
Policies are deterministic: argmax of the MLP's logits (discrete actions) on normalised observations.
Defaults are CartPole-v1's.

Messages (each plane on its own channel, see runtime.Channels):
  pattern               channel   from -> to            payload                                      when
  Allgather             workers   worker <-> workers    float64 [pairs, 5]: (noise index, F+, F-,    every
                                                        steps, the lead's stop flag)                 generation
  Allreduce             workers   worker <-> workers    float64 [2 obs_dim + 1]: obs count, sum,     every
                                                        sum of squares                               generation
  CHECKPOINT, _DONE,    control   lead <-> workers      request; RNG state (comm.checkpoint)         checkpoint_
  SIGNAL                                                signal number                                every, end
"""

import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from mpi4py import MPI
from torch import nn

from drlmpi import lifecycle
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.comm.mailbox import sync
from drlmpi.config import Common, Hparam, opt, require_at_least, to_dict
from drlmpi.envs import is_box, spaces
from drlmpi.errors import UserError
from drlmpi.nets import MLP, flat_params, load_arrays
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, barrier, wait

ROLES = RoleSpec(fixed=(), min_actors=1, serial_ok=True)
__all__ = ["ROLES", "Config", "build_net", "load_policy", "run"]
FIELDS = 5  # per pair in the Allgather: noise index, F+, F-, env steps, the lead's stop flag


@dataclass
class Config(Common):
    total_env_steps: int = opt(1_500_000, "environment steps (all workers' episodes) to train for")
    pairs: int = opt(8, "antithetic pairs each worker evaluates per generation")
    sigma: float = opt(0.05, "std of the parameter noise")
    lr: float = opt(0.03, "Adam step size on theta")
    weight_decay: float = opt(0.005, "L2 coefficient on theta, added to the gradient estimate")
    noise_size: int = opt(1 << 24, "standard normals in the shared noise table (one copy per host)")
    hidden: tuple[int, ...] = opt((32, 32), "MLP hidden sizes of the policy")
    eval_every: int = opt(5, "generations between evaluations of the mean policy (worker 0, one episode)")
    max_episode_steps: int = opt(1000, "longest episode evaluated (0: the env's own limit only)")

    SEARCH: ClassVar[dict] = {"lr": Hparam(("lr",), 1e-3, 0.1), "sigma": Hparam(("sigma",), 5e-3, 0.2)}  # algos.pbt

    def check(self):
        require_at_least(self, ("pairs", "noise_size", "eval_every", "total_env_steps", "keep_checkpoints"))
        require_at_least(self, ("max_episode_steps",), least=0)
        for name in ("sigma", "lr"):
            if getattr(self, name) <= 0:
                raise UserError(f"config: {name} must be > 0, got {getattr(self, name)}")
        obs_space, act_space = spaces(self.env)
        if is_box(act_space) or len(obs_space.shape) != 1:
            raise UserError(f"config: es needs vector observations and discrete actions; {self.env} has "
                            f"{obs_space} and {act_space}")
        n = sum(p.numel() for p in build_net(self, obs_space, act_space).parameters())
        if n >= self.noise_size:
            raise UserError(f"config: noise_size ({self.noise_size}) must exceed the policy's {n} parameters")


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
    """The mean policy theta: obs [E, D] -> actions [E] (argmax)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.requires_grad_(False).eval()
    return lambda obs: net(torch.as_tensor(obs)).argmax(dim=1).numpy()


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
    return win, table


def run_worker(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    import gymnasium as gym

    workers = rt.role_comm
    lead = workers.rank == 0
    lifecycle.seed_rank(rt, resumed)
    obs_space, act_space = spaces(cfg.env)
    torch.manual_seed(cfg.seed)  # the same initial theta on every worker
    net = build_net(cfg, obs_space, act_space).requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)  # gradients are set from the ES estimate
    generations, steps = 0, 0
    if resumed:
        generations = lifecycle.restore_learner(resumed, {"online": net}, {"adam": opt})
        steps = resumed.env_steps
    win, table = noise_table(rt.node, cfg.noise_size, cfg.seed)
    theta = flat_params(net)
    P, d = len(theta), obs_space.shape[0]
    policy = NumpyPolicy(net)
    env = gym.make(cfg.env)
    stats = np.zeros(1 + 2 * d)  # this generation's observation count, sum, sum of squares (this worker)
    totals = np.zeros(1 + 2 * d)  # every worker's, since the start (restored from the net's normaliser)
    if resumed:
        n0 = float(resumed.counters.get("obs_count", 0))
        mean, std = net.obs_mean.numpy().astype(np.float64), net.obs_std.numpy().astype(np.float64)
        totals[:] = np.concatenate([[n0], n0 * mean, n0 * (std**2 + mean**2)])
    mine = np.zeros((cfg.pairs, FIELDS))
    everyone = np.zeros((workers.size * cfg.pairs, FIELDS))
    bytes_per_generation = workers.size * (mine.nbytes + stats.nbytes)  # what all workers send, P-independent
    eval_return = float("nan")
    if lead:
        log = RunLog(cfg.run_dir, "es", to_dict(cfg), ["eval_return", "fitness_mean", "fitness_max", "workers",
                                                        "bytes_per_generation", "exchange_fraction"],
                     world_size=rt.size, resumed=resumed)
        life = lifecycle.Lifecycle(cfg, log, CheckpointCollector(rt.channels.control, lifecycle.targets(rt, rt.rank))
                                   if rt.size > 1 else None, resumed)
    else:
        ckpt = lifecycle.client(rt, 0)

    def state():  # the lead's, for a checkpoint
        return lifecycle.snapshot("es", cfg, log, {"env_steps": steps, "updates": generations,
                                                   "obs_count": float(totals[0])},
                                  {"online": net}, {"adam": opt}, rt.gen, rt.who, lifecycle.layout_dict(rt))

    def row():
        nonlocal exchange, since
        f, now = everyone[:, 1:3], time.perf_counter()
        out = {"eval_return": eval_return, "fitness_mean": float(f.mean()), "fitness_max": float(f.max()),
               "workers": workers.size, "bytes_per_generation": bytes_per_generation,
               "exchange_fraction": round(exchange / max(now - since, 1e-9), 4)}
        exchange, since = 0.0, now
        return out

    exchange, since = 0.0, time.perf_counter()  # seconds in the exchange (waiting for the slowest included)

    while True:
        stats[:] = 0
        for k in range(cfg.pairs):
            i = int(rt.gen.integers(0, cfg.noise_size - P))
            eps = table[i : i + P]
            seed = int(rt.gen.integers(2**31))  # both members of a pair see the same episode start
            fp, sp = episode(env, policy, theta + cfg.sigma * eps, seed, cfg.max_episode_steps, stats)
            fm, sm = episode(env, policy, theta - cfg.sigma * eps, seed, cfg.max_episode_steps, stats)
            mine[k, :4] = i, fp, fm, sp + sm
        mine[:, 4] = lead and (steps + mine[:, 3].sum() * workers.size >= cfg.total_env_steps or bool(life.signal()))
        t0 = time.perf_counter()
        wait(workers.Iallgather(mine, everyone), what="the other workers' fitness")
        wait(workers.Iallreduce(MPI.IN_PLACE, stats, op=MPI.SUM), what="the other workers' observation statistics")
        exchange += time.perf_counter() - t0
        stop = bool(everyone[0, 4])
        steps += int(everyone[:, 3].sum())
        generations += 1
        # the same update on every worker, from the same numbers
        shaped = centered_ranks(everyone[:, 1:3])
        idx = everyone[:, 0].astype(np.int64)
        weight = shaped[:, 0] - shaped[:, 1]
        g = np.zeros(P, np.float64)
        for w, i in zip(weight, idx, strict=True):
            g += w * table[i : i + P]
        g /= len(idx) * 2 * cfg.sigma  # an ascent direction of E[F]
        for p, gp in zip(net.parameters(), torch.split(torch.as_tensor(-g + cfg.weight_decay * theta), [
                p.numel() for p in net.parameters()]), strict=True):
            p.grad = gp.view_as(p).to(torch.float32)
        opt.step()
        theta = flat_params(net)
        totals += stats
        mean = totals[1 : 1 + d] / totals[0]
        std = np.sqrt(np.maximum(totals[1 + d :] / totals[0] - mean**2, 1e-4))
        net.obs_mean.copy_(torch.as_tensor(mean))  # (policy reads these buffers through numpy views)
        net.obs_std.copy_(torch.as_tensor(std))
        if lead and generations % cfg.eval_every == 0:
            eval_return, _ = episode(env, policy, theta, int(rt.gen.integers(2**31)), 0, None)
            log.episode(eval_return)
        if lead:
            log.tick(steps, generations, cfg.total_env_steps, row)
            if not stop and life.due():
                life.begin(steps, state)
            life.poll()
        else:
            ckpt.poll()
        if stop:
            break
    summary = lifecycle.close_learner(net, generations, env, ckpt=None if lead else ckpt)
    if lead:
        life.begin(steps, state, last=True, final_row=(generations, row()))
        summary = life.close(steps, generations, summary)
    win.Unlock_all()
    win.Free()
    return summary


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    return run_worker(rt, cfg, resumed)
