"""A3C: asynchronous advantage actor-critic with lock-free (Hogwild!) updates (Mnih et al., 2016).

Roles: every rank is a worker (`actor`); the first leads (hears the others' reports, logs, checkpoints).
  worker    copies the global weights from its node's shared window (no lock: a copy may mix two updates,
            as in the paper), steps its `num_envs` envs `n_steps` steps, computes the n-step advantage
            actor-critic gradient of that unroll, clips it, and applies it to the global weights in place with
            no lock: the paper's shared RMSProp, whose statistic g (one float per weight) lives in a second
            shared window; g <- alpha g + (1 - alpha) d^2 and w <- w - lr d / (sqrt(g) + eps), each in place,
            so concurrent workers may interleave (Hogwild!). The window's update counter is an MPI atomic.
            A worker stops when its share of `total_env_steps` is done.
The windows are one host's shared memory, so A3C runs on one host (a layout over several is refused in one line).
Defaults are CartPole-v1's (greedy return 500 on 4 ranks); `Config.ATARI` is the Atari preset.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  (shared window)        -         worker -> workers           in-place weight and g updates          every update
  METRICS                reports   worker -> lead              float64 [8] (comm.metrics; the lead's  every 0.5 s
                                                               own are accounted in place)
  STOP                   reports   worker -> lead              empty                                  share done
  CHECKPOINT, _DONE,     control   lead <-> workers            request; RNG state (comm.checkpoint)   checkpoint_every,
  SIGNAL                                                       signal number                          signal, end
"""

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle
from drlmpi.actor_critic import ACConfig, build_net, collect, load_policy, nstep_loss
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.comm.metrics import ActorReport, ActorStats
from drlmpi.comm.weights import NodeWeights
from drlmpi.config import opt, to_dict
from drlmpi.envs import make_vec
from drlmpi.errors import CheckpointError, UserError
from drlmpi.nets import flat_params, load_flat
from drlmpi.ops.schedules import linear
from drlmpi.replay.actor import clips_rewards
from drlmpi.replay.plane import share_of
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, barrier, probe

ROLES = RoleSpec(fixed=(), min_actors=1, serial_ok=True, one_host=True)
__all__ = ["ROLES", "Config", "build_net", "load_policy", "run"]


@dataclass
class Config(ACConfig):
    rmsprop_alpha: float = opt(0.99, "decay of the shared RMSProp statistic")
    rmsprop_eps: float = opt(1e-5, "epsilon of the shared RMSProp step, w -= lr d / (sqrt(g) + eps)")

    ATARI: ClassVar[dict] = {"n_steps": 5, "lr": 7e-4, "entropy_cost": 0.01, "max_grad_norm": 40.0,
                             "rmsprop_eps": 0.1, "total_env_steps": 10_000_000}

    def check(self):
        super().check()
        if not 0 <= self.rmsprop_alpha < 1 or self.rmsprop_eps <= 0:
            raise UserError("config: rmsprop_alpha must be in [0, 1) and rmsprop_eps > 0")


def shared_rmsprop_step(window: NodeWeights, g: NodeWeights, grad: np.ndarray, lr: float, alpha: float,
                        eps: float) -> int:
    """Apply one gradient [n] to the shared weights with the shared RMSProp statistic, lock-free, in place;
    returns the window's update count after it (an MPI atomic)."""
    sq = g.weights
    sq *= alpha
    sq += (1 - alpha) * grad * grad
    return window.hogwild_add(grad / (np.sqrt(sq) + eps), scale=-lr)


def flat_grad(net, max_norm: float) -> np.ndarray:
    """The parameters' gradients, clipped by global norm, as one float32 vector [n]."""
    torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()]).numpy()


def run_worker(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    n_workers, i = rt.size, rt.layout.index(rt.rank)
    lead = i == 0
    torch.manual_seed(cfg.seed)  # the same initial network everywhere (the lead's is published)
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    net = build_net(cfg, env.observation_space, env.action_space)
    n = sum(p.numel() for p in net.parameters())
    window, g = NodeWeights(rt.node, n), NodeWeights(rt.node, n)  # collective over the host
    torch.manual_seed(rt.torch_seed())
    lifecycle.restore_rng(resumed, rt.who, rt.gen)
    start_updates = 0
    if lead:
        if resumed:
            start_updates = lifecycle.restore_learner(resumed, {"online": net}, {})
            try:
                g.weights[:] = resumed.optim["shared_rmsprop"]["state"]["0"]["square_avg"]
            except (KeyError, ValueError) as e:
                raise CheckpointError(f"{resumed.path}: no shared RMSProp statistic of this network ({e})") from None
        window.publish(flat_params(net), start_updates)
    barrier(rt.world)  # the first weights are in the window
    local = np.empty(n, np.float32)
    clip = clips_rewards(cfg)
    share = share_of(cfg.total_env_steps, i, n_workers)
    steps = share_of(resumed.env_steps if resumed else 0, i, n_workers)
    report = ActorReport(rt.channels.reports, 0, i)
    if lead:
        stats = ActorStats(rt.channels.reports, n_workers, frames_per_step=4 if env.atari else 1,
                           steps=resumed.env_steps if resumed else 0)
        log = RunLog(cfg.run_dir, "a3c", to_dict(cfg), ["loss", "entropy", "workers", *ActorStats.COLUMNS],
                     frames_per_step=stats.frames_per_step, world_size=rt.size, resumed=resumed)
        life = lifecycle.Lifecycle(cfg, log, CheckpointCollector(rt.channels.control, lifecycle.targets(rt, rt.rank))
                                   if rt.size > 1 else None, resumed)
    else:
        ckpt = lifecycle.client(rt, 0)

    def state():  # the lead's: the global weights and the shared statistic as they are now
        load_flat(net, window.weights.copy())
        st = lifecycle.snapshot("a3c", cfg, log, {"env_steps": stats.steps, "updates": window.version},
                                {"online": net}, {}, rt.gen, rt.who, lifecycle.layout_dict(rt))
        st.optim["shared_rmsprop"] = {"groups": [{"lr": cfg.lr, "alpha": cfg.rmsprop_alpha, "eps": cfg.rmsprop_eps}],
                                      "state": {"0": {"square_avg": g.weights.copy()}}}
        return st

    def row():
        return {"loss": loss, "entropy": entropy, "workers": n_workers, **stats.row()}

    obs, episodes, loss, entropy, version = env.reset(), [], float("nan"), float("nan"), start_updates
    while steps < share:
        np.copyto(local, window.weights)  # no lock (Hogwild!)
        load_flat(net, local)
        acted = window.version
        u, obs = collect(net, env, obs, cfg, clip, episodes)
        losses = nstep_loss(net, u, obs, cfg)
        net.zero_grad(set_to_none=True)
        losses.total.backward()
        lr = linear(cfg.lr, cfg.lr_final, steps / share)
        version = shared_rmsprop_step(window, g, flat_grad(net, cfg.max_grad_norm), lr, cfg.rmsprop_alpha,
                                      cfg.rmsprop_eps)
        steps += cfg.num_envs * cfg.n_steps
        report.step(cfg.num_envs * cfg.n_steps, episodes, acted)
        episodes.clear()
        if lead:
            loss, entropy = float(losses.total.detach()), float(losses.entropy.detach())
            if report.due():  # the lead's own report, accounted here
                stats.take(report.pack(), version, log.episode)
            stats.drain(version, log.episode)
            log.tick(stats.steps, version, cfg.total_env_steps, row)
            if life.signal():
                life.stop_actors(stats.steps)
            if life.due():
                life.begin(stats.steps, state)
            life.poll()
            if life.final is not None:
                break
        else:
            report.maybe_isend()
            ckpt.poll()
            if ckpt.last:
                break
    env.close()
    if not lead:
        report.close()
        ckpt.close()
        return None
    stats.take(report.pack(), window.version, log.episode)
    stats.done += 1  # the lead's own share
    while not stats.all_done:  # hear every worker's last reports and STOP
        probe(rt.channels.reports, what="the other workers' last reports")
        stats.drain(window.version, log.episode)
        life.poll()
    life.begin(stats.steps, state, last=True)
    sha = hashlib.sha256(window.weights.tobytes()).hexdigest()  # every worker has stopped: no update is in flight
    return life.close(stats.steps, window.version, row(), {"weights_sha256": sha})


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    return run_worker(rt, cfg, resumed)
