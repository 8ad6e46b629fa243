"""What the value-based algorithms (DQN, Ape-X, GORILA, R2D2, R2D3, QT-Opt) share, written once: the torch-free
part is drlmpi.value_config (configs, Rows, the planes, the actor and replay roles: what an actor that acts in
numpy and a replay shard import), re-exported here; the learners' part is here.

  learner_parts, load_policy
                   a double-DQN learner's declared state, and the greedy policy of a checkpoint
  td_loss, new_priorities
                   the prioritized double-DQN step: batch -> (loss, td [B]) -> |td| + eps
  run_learner      the replay learner (Ape-X, R2D2): prioritized batches -> loss -> allreduced sgd -> priorities,
                   weights published to the actors, the lead's checkpoints and logs
  wait_for_replay, Stopwatch
                   a learner's wait for its first batch, and the time it spends waiting
"""

import copy
import time

import numpy as np
import torch

from drlmpi import nets
from drlmpi.checkpoint import State
from drlmpi.comm.allreduce import GradAllreduce
from drlmpi.learner import Learner, Parts
from drlmpi.nets import flat_params, greedy, load_arrays
from drlmpi.nets.optim import Adam
from drlmpi.ops.qlearning import double_dqn_td, weighted_huber
from drlmpi.ops.schedules import linear
from drlmpi.replay.throttle import Throttle
from drlmpi.runtime import Runtime, wait
from drlmpi.value_config import (  # noqa: F401 (re-exported: the family's names in one place)
    ACTOR_BATCH,
    FRAME_BATCH,
    PRIORITY_EPS,
    AnnealedEpsilon,
    EpsilonGreedyQ,
    LearnerConfig,
    Planes,
    ReplayConfig,
    Rows,
    TorchQ,
    ValueConfig,
    build_net,
    lead_learner,
    run_actor,
    run_replay,
    setup,
    throttle,
    transitions,
)


def learner_parts(cfg: ValueConfig, net: torch.nn.Module) -> Parts:
    """A double-DQN learner's declared state: the online network, its target copy, Adam."""
    target = copy.deepcopy(net).requires_grad_(False)
    return Parts({"online": net, "target": target}, {"adam": Adam(net.parameters(), lr=cfg.lr, eps=1e-5)})


def load_policy(cfg: ValueConfig, weights: dict, env):
    """Greedy policy obs [E, ...] -> actions [E] from checkpoint weights (raises ValueError on mismatch)."""
    net = build_net(cfg, env.observation_space, env.action_space)
    load_arrays(net, weights["online"])
    net.eval()
    return lambda obs: greedy(net, obs, torch.device("cpu"))


def td_loss(net, target, data: dict[str, np.ndarray], weights: np.ndarray, device) -> tuple[torch.Tensor,
                                                                                              torch.Tensor]:
    """Importance-weighted Huber loss of n-step double-DQN TD errors on a batch: (loss, td [B]).

    data: obs, next_obs [B, ...], action int64 [B], ret, discount float32 [B]; weights float32 [B].
    """
    t = {k: torch.as_tensor(v, device=device) for k, v in data.items()}
    td = double_dqn_td(net, target, t["obs"], t["action"], t["ret"], t["next_obs"], t["discount"])
    return weighted_huber(td, torch.as_tensor(weights, device=device)), td


def new_priorities(td: torch.Tensor) -> np.ndarray:
    """|td| + eps, float64 [B]: the priorities a batch's slots get back."""
    return td.detach().abs().cpu().numpy().astype(np.float64) + PRIORITY_EPS


REPLAY_COLUMNS = ["loss", "replay_size", "replay_fill", "sample_rate", "learner_waiting", "learners"]


def run_learner(rt: Runtime, cfg: LearnerConfig, planes: Planes, resumed: State | None, algo: str, learn,
                demo_ratio: float = 0.0) -> dict:
    """The replay learner (Ape-X, R2D2, R2D3): once max(learning_starts, batch_size) rows are stored, sample a
    prioritized batch (each row from the shards' demo replays with probability demo_ratio), asking for the next one
    before training on it -> learn(net, target, batch, device) -> (loss, new priorities float64 [B]) -> one
    allreduce of the gradients of every learner (the lead's progress and stop flag ride on it) -> clipped Adam step
    -> priorities back to the shards -> the lead publishes its weights every `publish_every` updates, logs and
    checkpoints. The target network is copied every `target_update_every` updates."""
    learners = rt.role_comm
    parts = learner_parts(cfg, planes.net.to(nets.device(cfg.device)))
    learner = Learner(rt, cfg, algo, parts, REPLAY_COLUMNS + (["demo_fraction"] if demo_ratio else []), resumed)
    net = parts.nets["online"]
    allreduce = GradAllreduce(learners, list(net.parameters()), cfg.allreduce, extra=2)  # + progress, stop

    def publish():
        planes.weights.publish(flat_params(net), learner.updates)  # version = updates

    if learner.lead:
        publish()
    sampler = planes.replay.sampler(rt.gen)
    loop = ReplayLoop(cfg, learner, sampler, allreduce, throttle(cfg, len(rt.layout.ranks("actor")), planes.rows),
                      learn, demo_ratio, publish)
    if loop.start(learners):
        while loop.step():
            pass
    return learner.finish(loop.row, sampler, allreduce, final=publish)


class ReplayLoop:
    """The replay learner's steps (run_learner): sample -> learn -> allreduce -> sgd -> priorities -> publish -> poll,
    and the metrics they leave (`row`)."""

    def __init__(self, cfg: LearnerConfig, learner: Learner, sampler, allreduce, gate: Throttle, learn,
                 demo_ratio: float, publish):
        self.cfg, self.learner, self.sampler, self.grads, self.gate = cfg, learner, sampler, allreduce, gate
        self.learn, self.demo_ratio, self.publish = learn, demo_ratio, publish
        self.device = nets.device(cfg.device)
        self.frac, self.loss, self.size = 0.0, float("nan"), 0
        self.demo_rows = np.zeros(2, np.int64)  # (demo rows, rows) of the lead's batches since the last row
        self.waiting = Stopwatch()

    def row(self) -> dict:
        cfg, learners = self.cfg, self.grads.comm.size
        out = {"loss": self.loss, "replay_size": self.size, "replay_fill": round(self.size / cfg.buffer_size, 4),
               "sample_rate": round(self.learner.log.rates[1] * cfg.batch_size * learners, 1),
               "learner_waiting": self.waiting.fraction(), "learners": learners}
        if self.demo_ratio:
            out["demo_fraction"] = round(self.demo_rows[0] / max(self.demo_rows[1], 1), 4)
            self.demo_rows[:] = 0
        return out

    def start(self, learners) -> bool:
        """The lead waits for the first batch's rows and says whether training starts at all (not when the actors
        finished first); every learner then asks for its first batch."""
        go = np.zeros(1, np.int64)
        if self.learner.lead:
            go[0] = wait_for_replay(self.sampler, self.cfg, lambda: self.learner.stats.all_done,
                                    lambda: self.learner.poll(self.row))
        wait(learners.Ibcast(go, root=0), what="the lead learner's start")
        if go[0]:
            self.sampler.request(self.cfg.batch_size, self.demo_ratio)
        return bool(go[0])

    def hold(self) -> bool:
        """Poll; the lead waits while ahead of the actors (replay ratio) and returns True once they are all done."""
        learner = self.learner
        if not learner.lead:
            learner.poll()
            return False
        t0 = time.monotonic()
        while True:
            learner.poll(self.row)
            if learner.stats.all_done or not self.gate.learners_wait(learner.updates, learner.steps):
                break
            time.sleep(0.001)
        self.waiting.add(time.monotonic() - t0)
        return learner.stats.all_done

    def step(self) -> bool:
        """One update; False once the lead said stop (no update then)."""
        cfg, learner, sampler = self.cfg, self.learner, self.sampler
        net, target = learner.parts.nets["online"], learner.parts.nets["target"]
        opt = learner.parts.optims["adam"]
        stop = self.hold()
        batch = sampler.receive(linear(cfg.beta_start, 1.0, self.frac))
        sampler.request(cfg.batch_size, self.demo_ratio)  # the shards gather the next batch while this one trains
        loss, priorities = self.learn(net, target, batch, self.device)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        progress, stop_sum = self.grads(np.array([learner.progress, stop]) if learner.lead else None)
        if stop_sum:
            return False
        self.frac = float(progress)
        for g in opt.param_groups:
            g["lr"] = linear(cfg.lr, cfg.lr_final, self.frac)
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
        opt.step()
        sampler.update_priorities(batch, priorities)
        learner.updates += 1
        self.size = batch.size
        self.demo_rows += (int(batch.demo.sum()), len(batch.demo))
        if learner.updates % cfg.target_update_every == 0:
            target.load_state_dict(net.state_dict())
        if learner.lead:
            self.loss = float(loss.detach())
            if learner.updates % cfg.publish_every == 0:
                self.publish()
        learner.checkpoint()
        return True


def wait_for_replay(sampler, cfg: ValueConfig, done, tick) -> bool:
    """Poll the shards' sizes (every 10 ms) until max(learning_starts, batch_size) transitions are stored: True;
    or until done() says the actors have finished first: False. tick() runs between polls."""
    while not done():
        if sampler.stats()[0].sum() >= max(cfg.learning_starts, cfg.batch_size):
            return True
        tick()
        time.sleep(0.01)
    return False


class Stopwatch:
    """Seconds spent waiting, as a fraction of the wall time since the last `fraction()`."""

    def __init__(self):
        self.waited, self.since = 0.0, time.monotonic()

    def add(self, seconds: float) -> None:
        self.waited += seconds

    def fraction(self) -> float:
        now = time.monotonic()
        f = self.waited / max(now - self.since, 1e-9)
        self.waited, self.since = 0.0, now
        return round(f, 4)
