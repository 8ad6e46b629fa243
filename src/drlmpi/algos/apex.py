"""Ape-X: distributed prioritized experience replay (Horgan et al., 2018), on the weights and replay planes.

Roles: `learner`s (the first leads), `replay` shards, and `actor`s on the other ranks.
  actor i   the replay actor loop (replay.actor) with epsilon_i = eps^(1 + alpha i / (N - 1)): acts on its
            node window's weights, sends n-step transitions with initial priorities to the shards, reports
            to the lead learner, pauses when the learners lag the replay ratio.
  replay    serves blocks, samples and priority updates until the learners and every actor have stopped.
  learner   once max(learning_starts, batch_size) transitions are stored, trains double DQN with dueling
            heads on prioritized batches (asking for the next one before training on one), sends back
            priorities, publishes its weights (version = updates) every `publish_every` updates, copies
            its target network every `target_update_every` updates, and stops when every actor has
            finished its share of `total_env_steps`. Several learners each sample their own batch and
            average gradients with one allreduce per update (MPI on CPU, NCCL on GPU), so their networks
            stay identical; the lead (the first) hears the actors, publishes and logs, and rides its
            progress and stop flag on the allreduce.
Defaults are CartPole-v1's (greedy return 500 in 150K env steps on 4 ranks); `Config.ATARI` is the Atari preset.

Messages (each plane on its own channel, see runtime.Channels; Tag names from comm.tags):
  tag / pattern          channel   from -> to                  payload                                when
  TRANSITIONS(_SHM)      replay    actor -> replay             transitions + priorities (or the        a block is full,
                                                               outbox slot and rows), Isend            or before a pause
  SAMPLE_REQUEST         replay    learner -> replay           int64 (rows, offset, inbox slot, 0)    before training
  SAMPLE_REPLY(_BLOCK)   replay    replay -> learner           int64 [8] (rows, size, total, min;     per request
                                                               no demo replay: 0, 0, 0, inf) [+ rows]
  PRIORITIES             replay    learner -> replay           slots, generations, |td| + eps         every update
  STOP                   replay    actor, learner -> replay    empty                                  at the end
  METRICS                reports   actor -> lead learner       float64 [9] (comm.metrics)             every 0.5 s
  STOP                   reports   actor -> lead learner       empty                                  share done
  Ibcast + Bcast         weights   lead -> other hosts'        version, float32 weights               every
                                   leaders                                                            publish_every
  Ibcast                 learners  lead -> learners            int64 go (0: actors finished first)    once
  Ibarrier + Allreduce   learners  learner <-> learners        gradients + (progress, stop)           every update
  CHECKPOINT             control   lead -> actors, learners    int64 (id, env steps, flags)           checkpoint_every,
                         replay    lead -> replay                                                     signal, end
  CHECKPOINT_DONE        control   any rank -> lead            uint8: RNG state, part files written   per request
  SIGNAL                 control   any rank -> lead            int64 signal number                    once, on a signal
Checkpoints, resume and signals: drlmpi.lifecycle (the final checkpoint's request reaches the shards before the
learners' STOP, so they write everything the actors sent).
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from drlmpi import value_config as vc
from drlmpi.checkpoint import State
from drlmpi.runtime import RoleSpec, Runtime

if TYPE_CHECKING:
    import torch

LAYOUT = RoleSpec(fixed=(("learner", 1), ("replay", 1)), min_actors=1, serial_ok=False)
build_net = vc.build_net  # (eval, benchmarks, tests; with learner_parts and load_policy, value_based's)


def __getattr__(name: str):  # learner_parts, load_policy: value_based's, imported on first use (torch)
    if name in ("learner_parts", "load_policy"):
        from drlmpi import value_based

        return getattr(value_based, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass
class Config(vc.LearnerConfig):
    ATARI: ClassVar[dict] = {  # Atari defaults (config.build applies them to ALE/ envs): Ape-X paper values,
        # scaled to a learner on a CPU: fewer samples per env step than on CartPole (4 instead of 32)
        "batch_size": 64, "replay_ratio": 0.0625, "learning_starts": 20_000, "lr": 1e-4, "lr_final": 1e-5,
        "target_update_every": 2500, "weight_sync_every": 100, "max_grad_norm": 40.0}


def learn(net, target, batch, device) -> tuple["torch.Tensor", np.ndarray]:
    """Ape-X's loss on a prioritized batch of n-step transitions [B] (replay.client.Batch): the importance-weighted
    Huber loss of the double-DQN TD errors, and the batch's new priorities |td| + eps [B]. The shared replay loop
    (value_based.run_learner) does the rest of the step: allreduce, clipped Adam, priorities, publish."""
    from drlmpi import value_based as vb

    loss, td = vb.td_loss(net, target, batch.data, batch.weights, device)
    return loss, vb.new_priorities(td)


def setup(rt: Runtime, cfg: Config) -> vc.Planes:
    """Collective: the lead learner's weights plane and the replay plane of n-step transitions."""
    return vc.setup(rt, cfg, rt.layout.ranks("learner")[:1])


def run_actor(rt: Runtime, cfg: Config, planes: vc.Planes, resumed: State | None) -> None:
    """The replay actor loop (replay.actor) at actor i's fixed epsilon."""
    eps = cfg.actor_epsilon(rt.layout.index(rt.rank), len(rt.layout.ranks("actor")))
    vc.run_actor(rt, cfg, planes, lambda steps, share: eps, resumed)


def run_learner(rt: Runtime, cfg: Config, planes: vc.Planes, resumed: State | None) -> dict:
    """The replay learner (value_based.run_learner) with `learn`."""
    from drlmpi import value_based as vb

    return vb.run_learner(rt, cfg, planes, resumed, "apex", learn)


ROLES = {"actor": run_actor, "replay": vc.run_replay, "learner": run_learner}
