"""A3C: asynchronous advantage actor-critic with lock-free (Hogwild!) updates (Mnih et al., 2016).

Roles: every rank is a worker (`actor`; the first leads: hears the others' reports, logs, checkpoints), and, when
the job spans several hosts, a `ps` rank (the layout adds one; `--layout ps=N` shards it, also on one host).
  worker    copies the global weights from its node's shared window, steps its `num_envs` envs `n_steps` steps,
            computes the n-step advantage actor-critic gradient of that unroll and clips it. Then:
            on one host (no ps): applies it to the global weights in place with no lock, the paper's shared
            RMSProp, whose statistic g (one float per weight) lives in a second shared window:
            g <- alpha g + (1 - alpha) d^2 and w <- w - lr d / (sqrt(g) + eps), each in place, so concurrent
            workers may interleave (Hogwild!); the copy takes no lock either (it may mix two updates, as in the
            paper); the window's update counter is an MPI atomic;
            across hosts: sends it to the ps without waiting (asynchronous, as GORILA's learners) and reads the
            ps's latest weights from its host's window (seqlock; the ps pushes each version to every host).
            A worker stops when its share of `total_env_steps` is done.
  ps        applies each gradient as it arrives with the same RMSProp (its g in its own memory; the learning rate
            decays over the updates the run should make) and publishes every version (param_server.run_ps).
            The ps serialises the updates that Hogwild! lets interleave: a host's shared memory does not reach
            across hosts, and one-sided writes into remote windows stall on busy targets (docs/measured.md).
A checkpoint holds the global weights and g either way (the lead's network and `shared_rmsprop`, or the ps parts),
so a run resumes onto one host or several.
Defaults are CartPole-v1's (greedy return 500 on 4 ranks); `Config.ATARI` is the Atari preset.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  (shared window)        -         worker -> workers           in-place weight and g updates          every update
                                                               (one host)
  GRADIENT               params    worker -> ps                float32 gradient [n], Isend            every update
                                                                                                      (several hosts)
  STOP                   params    worker -> ps                empty                                  share done
  Ibcast + Bcast         weights   ps -> other hosts' leaders  version, float32 [n] (comm.weights)    publish_every
  METRICS                reports   worker -> lead              float64 [9] (comm.metrics; the lead's  every 0.5 s
                                                               own are accounted in place)
  STOP                   reports   worker -> lead              empty                                  share done
  STOP                   control   ps -> lead                  int64 updates applied                  at the end
  CHECKPOINT, _DONE,     control   lead <-> workers, ps        request; RNG state, ps parts           checkpoint_every,
  SIGNAL                 (params                               (comm.checkpoint); signal number       signal, end
                         to ps)
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle, param_server
from drlmpi.actor_critic import ACConfig, build_net, collect, load_policy, nstep_loss
from drlmpi.checkpoint import State
from drlmpi.comm.metrics import ActorReport
from drlmpi.comm.ps import GradientSender
from drlmpi.comm.weights import NodeWeights, WeightsPlane
from drlmpi.config import Publishes, opt
from drlmpi.envs import clips_rewards, make_vec, spaces
from drlmpi.errors import CheckpointError, UserError
from drlmpi.learner import Learner, Parts
from drlmpi.nets import flat_params, load_flat
from drlmpi.ops.schedules import linear
from drlmpi.runtime import RoleSpec, Runtime, barrier, poll
from drlmpi.runtime.context import startup_timeout
from drlmpi.runtime.layout import share_of

LAYOUT = RoleSpec(fixed=(), min_actors=1, serial_ok=True, ps_across_hosts=True)
__all__ = ["LAYOUT", "ROLES", "Config", "build_net", "learner_parts", "load_policy"]


@dataclass
class Config(Publishes, ACConfig):
    """publish_every: with a ps (several hosts), its updates between publications to the host windows."""

    rmsprop_alpha: float = opt(0.99, "decay of the shared RMSProp statistic")
    rmsprop_eps: float = opt(1e-5, "epsilon of the shared RMSProp step, w -= lr d / (sqrt(g) + eps)")

    DEFAULTS: ClassVar[dict] = {"num_envs": 2, "lr": 7e-4, "lr_final": 0.0, "entropy_cost": 0.0,
                                "separate_value": True, "activation": "tanh", "orthogonal_init": True,
                                "total_env_steps": 300_000}
    ATARI: ClassVar[dict] = {"n_steps": 5, "lr": 7e-4, "entropy_cost": 0.01, "max_grad_norm": 40.0,
                             "rmsprop_eps": 0.1, "num_envs": 8, "total_env_steps": 10_000_000}
    MINATAR: ClassVar[dict] = {"num_envs": 8}

    def check_own(self):
        if not 0 <= self.rmsprop_alpha < 1 or self.rmsprop_eps <= 0:
            raise UserError("config: rmsprop_alpha must be in [0, 1) and rmsprop_eps > 0")


def shared_rmsprop_step(window: NodeWeights, stat: NodeWeights, grad: np.ndarray, lr: float, alpha: float,
                        eps: float) -> int:
    """Apply one gradient [n] to the shared weights with the shared RMSProp statistic, lock-free, in place;
    returns the window's update count after it (an MPI atomic)."""
    sq = stat.weights
    sq *= alpha
    sq += (1 - alpha) * grad * grad
    return window.hogwild_add(grad / (np.sqrt(sq) + eps), scale=-lr)


class SharedRMSProp:
    """The paper's shared RMSProp on one host: its statistic g [n] lives in a shared window and every worker steps it
    and the weights lock-free (shared_rmsprop_step). state_dict has torch's optimizer shape, so checkpoints hold it
    as `shared_rmsprop` (groups; state "0": square_avg [n]); resume_point reads it back."""

    def __init__(self, window: NodeWeights | None, stat, cfg: Config):
        """window: the shared weights (None: not stepped, as in tests); stat: g's window (its `weights`)."""
        self.window, self.stat, self.cfg = window, stat, cfg

    def step(self, grad: np.ndarray, lr: float) -> int:
        return shared_rmsprop_step(self.window, self.stat, grad, lr, self.cfg.rmsprop_alpha, self.cfg.rmsprop_eps)

    def state_dict(self) -> dict:
        cfg = self.cfg
        return {"param_groups": [{"lr": cfg.lr, "alpha": cfg.rmsprop_alpha, "eps": cfg.rmsprop_eps}],
                "state": {0: {"square_avg": torch.from_numpy(self.stat.weights)}}}


def flat_grad(net, max_norm: float) -> np.ndarray:
    """The parameters' gradients, clipped by global norm, as one float32 vector [n]."""
    torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm)
    return torch.cat([p.grad.reshape(-1) for p in net.parameters()]).numpy()


def learner_parts(cfg: Config, net: torch.nn.Module, window: NodeWeights | None = None, stat=None) -> Parts:
    """A worker's declared state: the network (the global weights, read into it before a copy) and, on one host,
    the shared RMSProp whose statistic g lives in the window `stat`; across hosts (stat None) the ps parts hold the
    optimizer. A checkpoint of either kind restores both."""
    optims = {"shared_rmsprop": SharedRMSProp(window, stat, cfg)} if stat is not None else {}

    def restore(state: State) -> int:  # from the ps parts or the lead's parts, as the ps role does
        w, sq, updates = resume_point(state, net)
        load_flat(net, w)
        if stat is not None:
            stat.weights[:] = sq
        return updates

    return Parts({"online": net}, optims, restore=restore)


class Hogwild:
    """The update on one host: read the global weights with no lock, apply each gradient in place (SharedRMSProp)."""

    def __init__(self, window: NodeWeights, opt: SharedRMSProp, cfg: Config):
        self.window, self.cfg, self.opt = window, cfg, opt

    def read(self, into: np.ndarray) -> int:
        np.copyto(into, self.window.weights)  # no lock (Hogwild!)
        return self.window.version

    def apply(self, net, frac: float) -> int:
        return self.opt.step(flat_grad(net, self.cfg.max_grad_norm), linear(self.cfg.lr, self.cfg.lr_final, frac))

    def close(self) -> None:
        pass


class ToParameterServer:
    """The update across hosts: read the ps's latest weights (seqlock), send each gradient to the ps without
    waiting; its RMSProp state is in the ps parts."""

    def __init__(self, rt: Runtime, window: NodeWeights, cfg: Config):
        self.window, self.cfg = window, cfg
        self.sender = GradientSender(rt.channels.params, rt.layout.ranks("ps"), window.bounds)

    def read(self, into: np.ndarray) -> int:
        return self.window.read(into)

    def apply(self, net, frac: float) -> int:
        self.sender.post(flat_grad(net, self.cfg.max_grad_norm))
        return self.window.version

    def close(self) -> None:
        self.sender.close()


def resume_point(resumed: State, net) -> tuple[np.ndarray, np.ndarray, int]:
    """(global weights [n], RMSProp statistic g [n], updates) of a checkpoint: from its ps parts (a run over
    several hosts) or from the lead's network and `shared_rmsprop` (one host)."""
    n = sum(p.numel() for p in net.parameters())
    ps = param_server.restore(resumed, n)
    if ps is not None:
        return ps["w"], ps["opt"]["acc"], ps["version"]
    updates = lifecycle.restore_learner(resumed, {"online": net}, {})
    try:
        sq = np.asarray(resumed.optim["shared_rmsprop"]["state"]["0"]["square_avg"], np.float32)
    except KeyError as e:
        raise CheckpointError(f"{resumed.path}: no shared RMSProp statistic ({e})") from None
    if sq.shape != (n,):
        raise CheckpointError(f"{resumed.path}: its shared RMSProp statistic has shape {sq.shape}, not ({n},)")
    return flat_params(net), sq, updates


def start_weights(rt: Runtime, parts: Parts, window: NodeWeights, one_host: bool, lead: bool, resumed) -> None:
    """One host: the lead publishes the first weights (restored, with g, when resumed), everyone then adds to them;
    across hosts: wait for the ps's first weights."""
    if not one_host:
        poll(lambda: True if window.published() else None, startup_timeout(rt.size), "the parameter server's weights")
        return
    if lead:
        updates = parts.load(resumed) if resumed else 0
        window.publish(flat_params(parts.nets["online"]), updates)
    barrier(rt.node)  # the first weights are in the window


@dataclass
class Planes:
    net: torch.nn.Module  # the initial network, the same on every rank
    window: NodeWeights  # the global weights: this host's window (one host), or the ps's plane's
    stat: NodeWeights | None  # one host: the shared RMSProp statistic g's window; None across hosts
    plane: WeightsPlane | None  # across hosts: the ps's weights plane

    def close(self) -> None:
        if self.plane:
            self.plane.close()  # (its window is self.window)
            return
        self.window.free()
        self.stat.free()


def setup(rt: Runtime, cfg: Config) -> Planes:
    """Collective: the weights, a window and g on one host, or the ps's plane across hosts."""
    torch.manual_seed(cfg.seed)  # the same initial network everywhere
    net = build_net(cfg, *spaces(cfg.env))
    n = sum(p.numel() for p in net.parameters())
    ps_ranks = rt.layout.ranks("ps")
    if ps_ranks:
        plane = WeightsPlane.create(rt.channels.weights, rt.node, n, ps_ranks)
        return Planes(net, plane.window, None, plane)
    return Planes(net, NodeWeights(rt.node, n), NodeWeights(rt.node, n), None)


def run_worker(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> dict:
    """A worker: read the global weights -> an unroll -> the n-step actor-critic gradient -> applied lock-free to
    the shared weights (one host, with the shared RMSProp statistic's window `stat`) or sent to the ps ->
    report; until its share of total_env_steps. The first worker leads: it hears the others, logs, checkpoints."""
    workers = rt.layout.ranks("actor") or [rt.rank]
    net, window, stat = planes.net, planes.window, planes.stat
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    i, local = workers.index(rt.rank), np.empty(window.n, np.float32)
    parts = learner_parts(cfg, net, window, stat)
    start_weights(rt, parts, window, stat is not None, i == 0, resumed)
    if stat is not None:
        update = Hogwild(window, parts.optims["shared_rmsprop"], cfg)
    else:
        update = ToParameterServer(rt, window, cfg)

    def refresh():  # the declared network holds the global weights as they are now
        update.read(local)
        load_flat(net, local)

    parts.refresh = refresh
    learner = Learner(rt, cfg, "a3c", parts, ["loss", "entropy", "workers"], resumed, lead_rank=workers[0],
                      actors=workers, version=lambda: window.version, counters=lambda: {"updates": window.version},
                      restore=False)  # (start_weights restored)
    learner.updates = window.version
    share, steps = (share_of(n, i, len(workers)) for n in (cfg.total_env_steps, learner.steps))
    report, clip = ActorReport(rt.channels.reports, workers[0], i), clips_rewards(cfg)
    obs, episodes, last = env.reset(), [], {"loss": float("nan"), "entropy": float("nan")}

    def row():
        return {**last, "workers": len(workers)}

    while steps < share and not learner.stopping:
        acted = update.read(local)
        load_flat(net, local)
        unroll, obs = collect(net, env, obs, cfg, clip, episodes)
        losses = nstep_loss(net, unroll, obs, cfg)
        net.zero_grad(set_to_none=True)
        losses.total.backward()
        learner.updates = update.apply(net, steps / share)
        steps += cfg.num_envs * cfg.n_steps
        report.step(cfg.num_envs * cfg.n_steps, episodes, acted)
        episodes.clear()
        if learner.lead:
            last = {"loss": float(losses.total.detach()), "entropy": float(losses.entropy.detach())}
            if report.due():  # the lead's own report, accounted here
                learner.stats.take(report.pack(), learner.updates, learner.log.episode)
        else:
            report.maybe_post()
        learner.poll(row)
        learner.checkpoint()
    env.close()
    return finish(rt, learner, update, report, parts, row)


def finish(rt: Runtime, learner: Learner, update, report: ActorReport, parts: Parts, row) -> dict:
    """The end: the other workers send their last reports and STOP; the lead, once every worker has stopped
    (so no update is in flight), takes the final checkpoint of the global weights (and g, or the ps parts)."""
    if not learner.lead:
        report.close()
        return learner.finish(row, update)
    learner.stats.take(report.pack(), learner.updates, learner.log.episode)
    learner.stats.done += 1  # the lead's own share
    learner.life.last_reports(learner.stats, rt.channels.reports, learner.updates)

    def final() -> None:  # the ps shards answer the final checkpoint with the vector every gradient has reached
        if rt.layout.ranks("ps"):
            param_server.final_updates(rt, learner.life, update.window)
        learner.updates = update.window.version
        parts.refresh()

    return learner.finish(row, update, final=final)


def run_ps(rt: Runtime, cfg: Config, planes: Planes, resumed: State | None) -> None:
    """A ps rank: RMSProp on its slice of every worker's gradient (param_server.run_ps)."""
    init, start = flat_params(planes.net), None
    if resumed:
        init, sq, updates = resume_point(resumed, planes.net)
        start = {"opt": {"acc": sq, "t": updates}, "version": updates}
    expected = cfg.total_env_steps / (cfg.num_envs * cfg.n_steps)  # updates the whole run should make
    param_server.run_ps(rt, planes.plane, init, rt.layout.ranks("actor")[0], len(rt.layout.ranks("actor")), "rmsprop",
                        lambda u: linear(cfg.lr, cfg.lr_final, u / expected), cfg.publish_every, cfg.run_dir, start,
                        alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)


ROLES = {"actor": run_worker, "serial": run_worker, "ps": run_ps}  # (one rank: a worker alone)
