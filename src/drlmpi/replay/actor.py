"""The replay actor role: one loop for every replay-based algorithm (Ape-X, GORILA, R2D2, R2D3, QT-Opt).

An actor steps a vector of envs with a policy, reads new weights from its node window every
`weight_sync_every` vector steps, turns steps into storage rows with a builder, gives each row an
initial priority, writes the rows to the replay shards in blocks (`ReplayWriter`: buffer Isend, or
the node outbox and a doorbell), reports to the lead learner on the reports channel (`ActorReport`:
Tag.METRICS, Tag.STOP), and pauses politely while the learners lag (`Throttle`). What differs
between algorithms comes in as arguments:

  policy    .load(flat float32 [P]); .act(obs [E, ...], eps, rng) -> (actions [E], extras {name: [E]});
            .priorities(rows) -> float64 [n] (|td| + eps); a recurrent policy also has .reset(done [E]),
            called after each env step to zero the state of the envs whose episode ended
  builder   .push(obs, actions, step, **extras) -> rows {name: [n, ...]} | None; .flush() -> rows | None
            (n-step transitions, or sequences: the rows match the replay plane's fields); .dropped: rows it
            dropped (a failed env's steps) since the actor last reset it to 0
  epsilon   (env steps done, this actor's share) -> exploration rate
  throttle  the replay-ratio throttle (its slack covers the builders' held steps)
  ckpt      this rank's comm.checkpoint.CheckpointClient: checkpoint requests are answered (with the
            actor's RNG state) every CKPT_EVERY vector steps and while paused; the LAST one stops the actor
  start     env steps of all actors already done (a resumed run): this actor starts at its share of them

The weights window's version is the learners' update count (every writer publishes `updates`).
"""

import time

import numpy as np

from drlmpi.comm.checkpoint import CheckpointClient
from drlmpi.comm.metrics import ActorReport
from drlmpi.comm.weights import NodeWeights, first_weights
from drlmpi.envs import clips_rewards, make_vec
from drlmpi.replay.plane import ReplayPlane
from drlmpi.replay.throttle import Throttle
from drlmpi.runtime import Runtime, poll
from drlmpi.runtime.context import startup_timeout
from drlmpi.runtime.layout import share_of

PAUSED_SLEEP = 0.01  # longest sleep between checks while paused: the throttle's slack covers the late wake-up, and
# many paused actors on few cores must not spend the learner's CPU on wake-ups (61 actors at 1 ms: over a core)
CKPT_EVERY = 16  # vector steps between looks for a checkpoint request (an Iprobe)


def run_actor(rt: Runtime, cfg, replay: ReplayPlane, window: NodeWeights, policy, builder, epsilon,
              throttle: Throttle, ckpt: CheckpointClient, start: int = 0) -> None:
    """Act until this actor's share of cfg.total_env_steps is done, or the lead's LAST checkpoint request; then
    drain the writer, say STOP, and answer the LAST request."""
    n_actors, i = len(rt.layout.ranks("actor")), rt.layout.index(rt.rank)
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rt.gen.integers(2**31)))
    clip = clips_rewards(cfg)
    version, flat = first_weights(window, startup_timeout(rt.size), "the learners' first weights")
    policy.load(flat)
    writer = replay.writer(first=i)
    share = share_of(cfg.total_env_steps, i, n_actors)
    report = ActorReport(rt.channels.reports, rt.layout.ranks("learner")[0], i)
    gate = LearnerGate(throttle, window, n_actors)
    obs, steps, vsteps = env.reset(), share_of(start, i, n_actors), 0
    while steps < share:
        if vsteps % CKPT_EVERY == 0:
            ckpt.poll()
        if ckpt.last or (gate.lags(steps) and not wait_for_learners(gate, steps, writer, report, ckpt)):
            break
        if vsteps % cfg.weight_sync_every == 0 and window.version > version:
            version = window.read(flat)
            policy.load(flat)
        actions, extras = policy.act(obs, epsilon(steps, share), rt.gen)
        step = env.step(actions)
        if clip:  # for learning only: episode returns were summed unclipped by the env
            step.reward = np.clip(step.reward, -1, 1)
        steps, vsteps = steps + cfg.num_envs, vsteps + 1
        report.step(cfg.num_envs, [r for r, _ in step.episodes], version)
        store(policy, builder.push(obs, actions, step, **extras), writer, step.done)
        if builder.dropped:  # a failed env's step was dropped: blocks start whole again (one env's)
            writer.flush()
            builder.dropped = 0
        obs = step.obs
        report.maybe_post()
    store(policy, builder.flush(), writer)
    writer.close()  # drain (every shard stored our blocks), then STOP to every shard
    report.close()
    ckpt.close()
    env.close()


def store(policy, rows: dict | None, writer, done: np.ndarray | None = None) -> None:
    """Rows the builder completed (if any) to the shards with the policy's initial priorities; a recurrent policy
    zeroes its state where episodes ended (done [E])."""
    if done is not None and hasattr(policy, "reset"):
        policy.reset(done)
    if rows is not None:
        writer.add(rows, policy.priorities(rows))


class LearnerGate:
    """The replay-ratio throttle on an actor's side: is this actor ahead of what the learners' update count (the
    window's version) allows? Reads the window only when the last known allowance is used up."""

    def __init__(self, throttle: Throttle, window: NodeWeights, n_actors: int):
        self.throttle, self.window, self.n = throttle, window, n_actors
        self.allowed = 0.0  # env steps of all actors that the last known update count allows (only grows)

    def lags(self, steps: int) -> bool:
        if self.throttle.ratio <= 0 or steps * self.n <= self.allowed:
            return False  # no need to read the window
        self.allowed = self.throttle.env_steps_allowed(self.window.version)
        return steps * self.n > self.allowed


def wait_for_learners(gate: LearnerGate, steps: int, writer, report: ActorReport, ckpt: CheckpointClient) -> bool:
    """Pause (politely, answering checkpoint requests) until the learners catch up: True; False if the lead's LAST
    request came instead. The learners may be waiting for this actor's rows and steps: they go out first."""
    writer.flush()
    report.post()
    t0 = time.monotonic()
    poll(lambda: True if ckpt.poll() or ckpt.last or not gate.lags(steps) else None, 600,
         "the learners to catch up", max_sleep=PAUSED_SLEEP)
    report.pause(time.monotonic() - t0)
    return ckpt.last is None
