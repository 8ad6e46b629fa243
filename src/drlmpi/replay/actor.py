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
            (n-step transitions, or sequences: the rows match the replay plane's fields)
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
from drlmpi.comm.weights import NodeWeights
from drlmpi.envs import clips_rewards, make_vec
from drlmpi.replay.plane import ReplayPlane, share_of
from drlmpi.replay.throttle import Throttle
from drlmpi.runtime import Runtime, poll
from drlmpi.runtime.context import startup_timeout

PAUSED_SLEEP = 0.01  # longest sleep between checks while paused: the throttle's slack covers the late wake-up, and
# many paused actors on few cores must not spend the learner's CPU on wake-ups (61 actors at 1 ms: over a core)
CKPT_EVERY = 16  # vector steps between looks for a checkpoint request (an Iprobe)


def run_actor(rt: Runtime, cfg, replay: ReplayPlane, window: NodeWeights, policy, builder, epsilon,
              throttle: Throttle, ckpt: CheckpointClient, start: int = 0) -> None:
    """Act until this actor's share of cfg.total_env_steps is done, or the lead's LAST checkpoint request; then
    drain the writer, say STOP, and answer the LAST request."""
    n_actors, i = len(rt.layout.ranks("actor")), rt.layout.index(rt.rank)
    rng = rt.gen
    env = make_vec(cfg.env, cfg.num_envs, seed=int(rng.integers(2**31)))
    clip = clips_rewards(cfg)
    flat = np.empty(window.n, np.float32)
    poll(lambda: True if window.published() else None, startup_timeout(rt.size), "the learners' first weights",
         max_sleep=PAUSED_SLEEP)
    version = window.read(flat)
    policy.load(flat)
    writer = replay.writer(first=i)
    share = share_of(cfg.total_env_steps, i, n_actors)
    report = ActorReport(rt.channels.reports, rt.layout.ranks("learner")[0], i)
    obs = env.reset()
    reset = getattr(policy, "reset", None)
    steps, vsteps = share_of(start, i, n_actors), 0
    allowed = 0.0  # env steps of all actors that the last known update count allows (only grows)

    def learners_lag() -> bool:
        nonlocal allowed
        if throttle.ratio <= 0 or steps * n_actors <= allowed:
            return False  # no need to read the window
        allowed = throttle.env_steps_allowed(window.version)
        return steps * n_actors > allowed

    while steps < share:
        if vsteps % CKPT_EVERY == 0:
            ckpt.poll()
            if ckpt.last:
                break
        if learners_lag():
            writer.flush()  # the learners may be waiting for these to start,
            report.post()  # and the lead for our steps to allow more updates
            t0 = time.monotonic()
            poll(lambda: True if ckpt.poll() or ckpt.last or not learners_lag() else None, 600,
                 "the learners to catch up", max_sleep=PAUSED_SLEEP)
            report.pause(time.monotonic() - t0)
            if ckpt.last:
                break
        if vsteps % cfg.weight_sync_every == 0 and window.version > version:
            version = window.read(flat)
            policy.load(flat)
        actions, extras = policy.act(obs, epsilon(steps, share), rng)
        step = env.step(actions)
        if reset is not None:
            reset(step.done)
        if clip:  # for learning only: episode returns were summed unclipped by the env
            step.reward = np.clip(step.reward, -1, 1)
        steps += cfg.num_envs
        vsteps += 1
        report.step(cfg.num_envs, [r for r, _ in step.episodes], version)
        rows = builder.push(obs, actions, step, **extras)
        if rows is not None:
            writer.add(rows, policy.priorities(rows))
        obs = step.obs
        report.maybe_post()
    rows = builder.flush()
    if rows is not None:
        writer.add(rows, policy.priorities(rows))
    writer.close()  # drain (every shard stored our blocks), then STOP to every shard
    report.close()
    ckpt.close()
    env.close()
