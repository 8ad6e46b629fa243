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
            across hosts, and one-sided writes into remote windows stall on busy targets (ARCHITECTURE.md §6).
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
  METRICS                reports   worker -> lead              float64 [8] (comm.metrics; the lead's  every 0.5 s
                                                               own are accounted in place)
  STOP                   reports   worker -> lead              empty                                  share done
  STOP                   control   ps -> lead                  int64 updates applied                  at the end
  CHECKPOINT, _DONE,     control   lead <-> workers, ps        request; RNG state, ps parts           checkpoint_every,
  SIGNAL                 (params                               (comm.checkpoint); signal number       signal, end
                         to ps)
"""

import hashlib
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from drlmpi import lifecycle, param_server
from drlmpi.actor_critic import ACConfig, build_net, collect, load_policy, nstep_loss
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.comm.metrics import ActorReport, ActorStats
from drlmpi.comm.ps import isend_gradient, isend_stop
from drlmpi.comm.weights import NodeWeights, WeightsPlane
from drlmpi.config import opt, require_at_least, to_dict
from drlmpi.envs import clips_rewards, make_vec, spaces
from drlmpi.errors import CheckpointError, UserError
from drlmpi.nets import flat_params, load_flat
from drlmpi.ops.schedules import linear
from drlmpi.replay.plane import share_of
from drlmpi.rundir import RunLog
from drlmpi.runtime import RoleSpec, Runtime, barrier, poll, probe, wait_all
from drlmpi.runtime.context import startup_timeout

ROLES = RoleSpec(fixed=(), min_actors=1, serial_ok=True, ps_across_hosts=True)
__all__ = ["ROLES", "Config", "build_net", "load_policy", "run"]


@dataclass
class Config(ACConfig):
    rmsprop_alpha: float = opt(0.99, "decay of the shared RMSProp statistic")
    rmsprop_eps: float = opt(1e-5, "epsilon of the shared RMSProp step, w -= lr d / (sqrt(g) + eps)")
    publish_every: int = opt(1, "with a ps (several hosts): its updates between publications to the host windows")

    ATARI: ClassVar[dict] = {"n_steps": 5, "lr": 7e-4, "entropy_cost": 0.01, "max_grad_norm": 40.0,
                             "rmsprop_eps": 0.1, "total_env_steps": 10_000_000}

    def check(self):
        super().check()
        require_at_least(self, ("publish_every",))
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


def run_worker(rt: Runtime, cfg: Config, net, env, window: NodeWeights, g: NodeWeights | None,
               resumed: State | None) -> dict | None:
    """A worker; g is the shared RMSProp statistic's window on one host, None when a ps applies the updates."""
    workers, ps_ranks = (rt.layout.ranks("actor") or [rt.rank]), rt.layout.ranks("ps")
    n_workers, i, n = len(workers), workers.index(rt.rank), window.n
    lead = i == 0
    start_updates = 0
    if g is not None:  # one host: the lead publishes the first weights, everyone then adds to them
        if lead:
            w0 = flat_params(net)
            if resumed:
                w0, g.weights[:], start_updates = resume_point(resumed, net)
            window.publish(w0, start_updates)
        barrier(rt.node)  # the first weights are in the window
    else:
        poll(lambda: True if window.published() else None, startup_timeout(rt.size), "the parameter server's weights")
    local = np.empty(n, np.float32)
    grads = [np.zeros(n, np.float32) for _ in range(2)] if ps_ranks else []  # to the ps, double-buffered
    grad_reqs: list[list] = [[], []]
    clip = clips_rewards(cfg)
    share = share_of(cfg.total_env_steps, i, n_workers)
    steps = share_of(resumed.env_steps if resumed else 0, i, n_workers)
    report = ActorReport(rt.channels.reports, workers[0], i)
    if lead:
        stats = ActorStats(rt.channels.reports, n_workers, frames_per_step=4 if env.atari else 1,
                           steps=resumed.env_steps if resumed else 0)
        log = RunLog(cfg.run_dir, "a3c", to_dict(cfg), ["loss", "entropy", "workers", *ActorStats.COLUMNS],
                     frames_per_step=stats.frames_per_step, world_size=rt.size, resumed=resumed)
        life = lifecycle.Lifecycle(cfg, log, CheckpointCollector(rt.channels.control, lifecycle.targets(rt, rt.rank))
                                   if rt.size > 1 else None, resumed)
    else:
        ckpt = lifecycle.client(rt, workers[0])

    def read() -> int:  # the global weights into local; their version
        if g is None:
            return window.read(local)  # the ps's, consistent (seqlock)
        np.copyto(local, window.weights)  # no lock (Hogwild!)
        return window.version

    def state():  # the lead's: the global weights as they are now (and g on one host; the ps parts hold its own)
        read()
        load_flat(net, local)
        st = lifecycle.snapshot("a3c", cfg, log, {"env_steps": stats.steps, "updates": window.version},
                                {"online": net}, {}, rt.gen, rt.who, lifecycle.layout_dict(rt))
        if g is not None:
            st.optim["shared_rmsprop"] = {
                "groups": [{"lr": cfg.lr, "alpha": cfg.rmsprop_alpha, "eps": cfg.rmsprop_eps}],
                "state": {"0": {"square_avg": g.weights.copy()}}}
        return st

    def row():
        return {"loss": loss, "entropy": entropy, "workers": n_workers, **stats.row()}

    obs, episodes, loss, entropy, version, k = env.reset(), [], float("nan"), float("nan"), start_updates, 0
    while steps < share:
        acted = read()
        load_flat(net, local)
        u, obs = collect(net, env, obs, cfg, clip, episodes)
        losses = nstep_loss(net, u, obs, cfg)
        net.zero_grad(set_to_none=True)
        losses.total.backward()
        if g is not None:
            lr = linear(cfg.lr, cfg.lr_final, steps / share)
            version = shared_rmsprop_step(window, g, flat_grad(net, cfg.max_grad_norm), lr, cfg.rmsprop_alpha,
                                          cfg.rmsprop_eps)
        else:  # to the ps, without waiting for it to apply the gradient
            turn, k = k % 2, k + 1
            wait_all(grad_reqs[turn], what="the previous gradient send to the ps")
            grads[turn][:] = flat_grad(net, cfg.max_grad_norm)
            grad_reqs[turn] = isend_gradient(rt.channels.params, grads[turn], ps_ranks, window.bounds)
            version = window.version
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
    if ps_ranks:
        wait_all(grad_reqs[0] + grad_reqs[1], what="gradient sends to the ps")
        isend_stop(rt.channels.params, ps_ranks)
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
    if ps_ranks:  # the ps shards answer the final checkpoint with the vector every gradient has reached
        life.ask_last(stats.steps)
        param_server.final_updates(rt, life, window)
    life.begin(stats.steps, state, last=True, final_row=(window.version, row()))
    read()  # every worker has stopped: no update is in flight
    sha = hashlib.sha256(local.tobytes()).hexdigest()
    return life.close(stats.steps, window.version, {"weights_sha256": sha})


def run_ps(rt: Runtime, cfg: Config, net, plane: WeightsPlane, resumed: State | None) -> None:
    """A ps rank: RMSProp on its slice of every worker's gradient (param_server.run_ps)."""
    init, start = flat_params(net), None
    if resumed:
        init, sq, updates = resume_point(resumed, net)
        start = {"opt": {"acc": sq, "t": updates}, "version": updates}
    expected = cfg.total_env_steps / (cfg.num_envs * cfg.n_steps)  # updates the whole run should make
    param_server.run_ps(rt, plane, init, rt.layout.ranks("actor")[0], len(rt.layout.ranks("actor")), "rmsprop",
                        lambda u: linear(cfg.lr, cfg.lr_final, u / expected), cfg.publish_every, cfg.run_dir, start,
                        alpha=cfg.rmsprop_alpha, eps=cfg.rmsprop_eps)


def run(rt: Runtime, cfg: Config, resumed: State | None = None) -> dict | None:
    """Set up the weights (collective: a window and g on one host, or the ps's plane), then run this rank's role."""
    torch.manual_seed(cfg.seed)  # the same initial network everywhere
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31))) if rt.role != "ps" else None
    obs_space, act_space = (env.observation_space, env.action_space) if env else spaces(cfg.env)
    net = build_net(cfg, obs_space, act_space)
    n = sum(p.numel() for p in net.parameters())
    ps_ranks = rt.layout.ranks("ps")
    plane = WeightsPlane.create(rt.channels.weights, rt.node, n, ps_ranks) if ps_ranks else None
    window, g = (plane.window, None) if plane else (NodeWeights(rt.node, n), NodeWeights(rt.node, n))
    lifecycle.seed_rank(rt, resumed)
    if rt.role == "ps":
        summary = run_ps(rt, cfg, net, plane, resumed)
    else:
        summary = run_worker(rt, cfg, net, env, window, g, resumed)
    if plane:
        plane.close()
    return summary
