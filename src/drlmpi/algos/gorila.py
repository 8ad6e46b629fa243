"""GORILA: General Reinforcement Learning Architecture (Nair et al., 2015), on the weights and replay planes.

Roles: `learner`s (the first leads), `ps` shards (the parameter vector in contiguous slices), `replay`
shards, and `actor`s on the other ranks.
  actor     the replay actor loop (replay.actor), epsilon annealed linearly over its share of steps as in
            DQN, acting on the parameter server's node window; pauses when the parameter server's update
            count (the window's version) lags the replay ratio.
  learner   keeps a local copy of the parameters, refreshed from the window every `sync_every` updates,
            and a target network refreshed from it every `target_update_every` updates; computes
            double-DQN gradients on prioritized batches (asking for the next one before training on
            one), clips them and sends each ps shard its slice without waiting for the result: learners
            run asynchronously. Sends priorities back to the replay shards. The lead learner hears the
            actors, logs, leads the checkpoints (its networks and counters; the parameters and their
            optimizer state come from the ps shards' parts), and tells the other learners the env step
            count and when to stop.
  ps        applies every gradient slice it receives with its own optimizer (Adam by default; the paper's
            AdaGrad and RMSProp too) and a learning rate annealed over the expected number of updates,
            and publishes the slice (version = updates applied) into the node windows.
  replay    the prioritized replay plane (the paper's global replay, here prioritized: alpha=0 is uniform).
Throttle: like Ape-X, `replay_ratio` parameter-server updates per env step, within a band, on both sides.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  TRANSITIONS(_SHM), SAMPLE_REQUEST, SAMPLE_REPLY(_BLOCK), PRIORITIES, STOP
                         replay    as in Ape-X (algos/apex.py)
  METRICS, STOP          reports   actor -> lead learner       float64 [9] / empty                    0.5 s / done
  GRADIENT               params    learner -> ps shard         float32 gradient slice, Isend          every update
  STOP                   params    learner -> ps shard         empty                                  learner done
  Ibcast + Bcast         weights   ps shard -> other hosts'    version, float32 slice                 every
                                   leaders                                                            publish_every
  CONTROL                control   lead -> other learners      float64 (env steps, stop), Isend       each lead poll
  STOP                   control   ps shard -> lead learner    int64 updates applied                  at the end
  CHECKPOINT, CHECKPOINT_DONE, SIGNAL
                         control   as in Ape-X; the ps shards get their requests on `params` and write
                                   their slice and optimizer state as part files (param_server)
"""

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mpi4py import MPI

from drlmpi import param_server
from drlmpi import value_config as vc
from drlmpi.checkpoint import State
from drlmpi.comm.ps import GradientSender
from drlmpi.comm.tags import Tag
from drlmpi.config import opt
from drlmpi.errors import CheckpointError, UserError
from drlmpi.learner import Learner, Parts
from drlmpi.ops.optim import OPTIMIZERS
from drlmpi.ops.schedules import linear
from drlmpi.runtime import RoleSpec, Runtime, poll, wait, wait_all
from drlmpi.runtime.context import startup_timeout

if TYPE_CHECKING:
    import torch

LAYOUT = RoleSpec(fixed=(("learner", 1), ("ps", 1), ("replay", 1)), min_actors=1, serial_ok=False)
build_net = vc.build_net  # (eval, benchmarks, tests; with load_policy, value_based's)


def __getattr__(name: str):  # load_policy: value_based's, imported on first use (torch)
    if name == "load_policy":
        from drlmpi import value_based

        return value_based.load_policy
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Config(vc.AnnealedEpsilon, vc.ReplayConfig):
    optimizer: str = opt("adam", "parameter-server optimizer: adam, adagrad (the paper's), rmsprop")
    sync_every: int = opt(1, "learner updates between refreshes of its parameters from the parameter server")

    DEFAULTS: ClassVar[dict] = {"publish_every": 1}  # the ps publishes every update (lr_final is reached after
    # replay_ratio * total_env_steps updates)
    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): DQN-paper values,
        # with fewer samples per env step (2) for a learner on a CPU
        "batch_size": 32, "replay_ratio": 0.0625, "learning_starts": 20_000, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0}
    POSITIVE: ClassVar[tuple[str, ...]] = ("sync_every",)

    def check_own(self):
        if self.optimizer not in OPTIMIZERS:
            raise UserError(f"config: optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")


def learn(net, target, batch, cfg: Config, device) -> tuple[float, np.ndarray, np.ndarray]:
    """GORILA's step on a prioritized batch of n-step transitions [B], on the learner's local copy of the
    parameters: the importance-weighted Huber loss of the double-DQN TD errors, its gradient clipped by global norm
    as one vector [n] (for the ps shards, which apply it), and the new priorities |td| + eps [B]."""
    import torch

    from drlmpi import value_based as vb

    loss, td = vb.td_loss(net, target, batch.data, batch.weights, device)
    net.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
    grad = torch.nn.utils.parameters_to_vector([p.grad for p in net.parameters()]).cpu().numpy()
    return float(loss.detach()), grad, vb.new_priorities(td)


def learner_parts(cfg: Config, net: "torch.nn.Module") -> Parts:
    """A learner's declared state: its copy of the parameters (the parameters themselves and their optimizer are
    the ps shards', in their parts) and the target network."""
    return Parts({"online": net, "target": copy.deepcopy(net).requires_grad_(False)})


def setup(rt: Runtime, cfg: Config) -> vc.Planes:
    """Collective: the ps shards' weights plane and the replay plane of n-step transitions."""
    return vc.setup(rt, cfg, rt.layout.ranks("ps"))


def run_actor(rt: Runtime, cfg: Config, planes: vc.Planes, resumed: State | None) -> None:
    """The replay actor loop (replay.actor), epsilon annealed over the actor's share of the steps as in DQN."""
    vc.run_actor(rt, cfg, planes, lambda steps, share: cfg.epsilon(steps / share), resumed)


class LeadWord:
    """The lead's word to the other learners, (env steps, stop), as Tag.CONTROL messages on the control channel,
    one in flight per learner; `say` on the lead, `hear` on the others, `value` everywhere."""

    def __init__(self, rt: Runtime, steps: int):
        self.comm, self.learners = rt.channels.control, rt.layout.ranks("learner")
        self.value = np.array([steps, 0], np.float64)  # env steps, stop
        self.bufs = [np.zeros(2, np.float64) for _ in self.learners]
        self.reqs = [MPI.REQUEST_NULL] * len(self.learners)

    def _isend(self, j: int) -> None:
        self.bufs[j][:] = self.value
        self.reqs[j] = self.comm.Isend(self.bufs[j], dest=self.learners[j], tag=Tag.CONTROL)

    def say(self, steps: int, stop: bool) -> None:
        self.value[:] = steps, stop
        for j in range(1, len(self.learners)):
            if self.reqs[j].Test():
                self._isend(j)

    def hear(self) -> None:
        while self.comm.Iprobe(self.learners[0], Tag.CONTROL):
            self.comm.Recv(self.value, source=self.learners[0], tag=Tag.CONTROL)

    def close(self) -> None:
        """The lead: the last word is stop, said once to each (one sender's messages with one tag arrive in order)."""
        for j in range(1, len(self.learners)):
            wait(self.reqs[j], what="control message")
            if not self.bufs[j][1]:  # that learner has not been told to stop yet
                self._isend(j)
        wait_all(self.reqs, what="control messages")


def sleep(seconds: float) -> float:
    """Sleep; the seconds it took."""
    t0 = time.monotonic()
    time.sleep(seconds)
    return time.monotonic() - t0


def puller(window) -> "Callable[[torch.nn.Module], None]":
    """pull(net): the parameter server's vector (the node window), into a network."""
    from drlmpi import nets

    flat = np.empty(window.n, np.float32)

    def pull(into) -> None:
        window.read(flat)
        nets.load_flat(into, flat)

    return pull


def run_learner(rt: Runtime, cfg: Config, planes, resumed: State | None) -> dict:
    """The `learner` role: refresh the local parameters from the ps every `sync_every` updates -> sample -> learn ->
    clipped gradient slices to the ps shards, not waiting -> priorities; asynchronous, as in the paper. The lead
    hears the actors, logs, checkpoints and tells the other learners the env steps and when to stop."""
    from drlmpi import nets
    from drlmpi import value_based as vb

    device, window = nets.device(cfg.device), planes.weights.window
    parts = learner_parts(cfg, planes.net.to(device))
    net, target = parts.nets["online"], parts.nets["target"]
    pull = puller(window)
    poll(lambda: True if window.published() else None, startup_timeout(rt.size), "the parameter server's weights")
    pull(target)
    learner = Learner(rt, cfg, "gorila", parts, ["loss", "replay_size", "replay_fill", "sample_rate", "ps_updates",
                                                 "learner_waiting"], resumed,
                      counters=lambda: {"ps_updates": window.version}, version=lambda: window.version)
    pull(net)  # the parameters are the parameter server's (its parts); the target network the lead's
    sampler, gate = planes.replay.sampler(rt.gen), vb.throttle(cfg, len(rt.layout.ranks("actor")), planes.rows)
    grads = GradientSender(rt.channels.params, rt.layout.ranks("ps"), window.bounds)
    word, waiting = LeadWord(rt, learner.steps), vb.Stopwatch()
    last = {"loss": float("nan"), "size": 0}

    def row():
        return {"loss": last["loss"], "replay_size": last["size"], "replay_fill": round(last["size"] / cfg.buffer_size,
                4), "sample_rate": round(learner.log.rates[1] * cfg.batch_size * len(word.learners), 1),
                "ps_updates": window.version, "learner_waiting": waiting.fraction()}

    def listen():  # the lead hears the actors and tells the other learners; the others hear the lead
        learner.poll(row)
        if learner.lead:
            word.say(learner.steps, learner.stats.all_done)
        else:
            word.hear()

    vb.wait_for_replay(sampler, cfg, lambda: bool(word.value[1]), listen)
    sampler.request(cfg.batch_size)  # close() receives it if training never starts
    while True:
        listen()
        if word.value[1]:
            break
        if gate.learners_wait(window.version, word.value[0]):  # the learners are ahead of the actors
            waiting.add(sleep(0.001))
            continue
        if learner.updates % cfg.sync_every == 0:
            pull(net)
        batch = sampler.receive(linear(cfg.beta_start, 1.0, word.value[0] / cfg.total_env_steps))
        sampler.request(cfg.batch_size)  # the shards gather the next batch while this one trains
        loss, grad, priorities = learn(net, target, batch, cfg, device)
        grads.post(grad)  # to every ps shard, not waiting for it to be applied
        sampler.update_priorities(batch, priorities)
        learner.updates += 1
        last.update(loss=loss, size=batch.size)
        if learner.updates % cfg.target_update_every == 0:
            pull(target)
        learner.checkpoint()

    def final() -> dict:  # the ps shards' final vector, which every gradient has reached
        versions = param_server.final_updates(rt, learner.life, window)
        pull(net)
        return {"updates": min(versions)}

    return learner.finish(row, sampler, grads, *([word] if learner.lead else []), final=final)


def run_ps(rt: Runtime, cfg: Config, planes: vc.Planes, resumed: State | None) -> None:
    """A `ps` shard: its optimizer on its slice of every learner's gradient (param_server.run_ps)."""
    from drlmpi.nets import flat_params

    expected = cfg.replay_ratio * cfg.total_env_steps  # updates the whole run should make

    def lr(updates: int) -> float:
        return linear(cfg.lr, cfg.lr_final, updates / expected) if expected > 0 else cfg.lr

    init, start = flat_params(planes.net), None
    if resumed:
        start = param_server.restore(resumed, len(init))
        if start is None:
            raise CheckpointError(f"{resumed.path}: no parameter-server parts")
        init = start["w"]
    opt_kwargs = {"eps": 1e-5} if cfg.optimizer != "adagrad" else {}
    param_server.run_ps(rt, planes.weights, init, vc.lead_learner(rt), len(rt.layout.ranks("learner")),
                        cfg.optimizer, lr, cfg.publish_every, cfg.run_dir, start, **opt_kwargs)


ROLES = {"actor": run_actor, "replay": vc.run_replay, "learner": run_learner, "ps": run_ps}
