"""The learner handle, written once for every algorithm: its declared state, the lead / non-lead split, one end.

  Parts     a learner's declared state: networks {name: module} and optimizers {name: optimizer}. A checkpoint
            saves exactly these (and the counters), a resume restores exactly these; nothing lives in a closure.
  Learner   built on every learner rank from its Parts. The lead (the first learner, or the first worker) keeps
            the run log, the checkpoints (lifecycle.Lifecycle) and, when the job has actors, their reports
            (comm.metrics.ActorStats); every other learner keeps a checkpoint client. Its algorithm calls:
              poll(row)        between messages and updates: the lead hears the actors, steps its greedy evaluation
                               (evaluate.GreedyEval), ticks the metrics row, stops the actors on a signal and
                               moves checkpoints on; the others answer requests
              checkpoint()     a periodic checkpoint when one is due (the lead; a no-op elsewhere)
              finish(row, ...) the end, in one order for every algorithm (below)
            and counts `updates` (and `steps`, where no actors report them) itself.

The end (`finish`), for every algorithm, once training has ended (every actor has stopped, or a signal asked them
to): the lead asks every other rank for the final checkpoint (LAST), so the replay and parameter-server shards have
the request before the lead's own STOP reaches them; each of the learner's own planes is closed in the order given
(every message received); a learner that does not lead answers the final request
and returns its summary; the lead hears the actors' last reports, publishes its final weights, writes the run's
last metrics row and the final checkpoint, and returns the run's summary (lifecycle.Lifecycle.close).
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from drlmpi import lifecycle
from drlmpi.checkpoint import State
from drlmpi.comm.checkpoint import CheckpointCollector
from drlmpi.comm.metrics import ActorStats
from drlmpi.config import to_dict
from drlmpi.envs import env_restarts, frames_per_step
from drlmpi.rundir import RunLog


@dataclass
class Parts:
    """A learner's declared state. optims: nets.optim optimizers, or any object with torch's `state_dict()` shape (A3C's
    shared RMSProp window, which its `restore` reads back). refresh(): brings the networks up to date before a
    copy (A3C reads the global weights from its window); restore(state) -> updates: how a checkpoint restores them,
    where that is not simply network by network and optimizer by optimizer (A3C: also from parameter-server
    parts)."""

    nets: dict
    optims: dict = field(default_factory=dict)
    refresh: Callable[[], None] | None = None
    restore: Callable[[State], int] | None = None

    def load(self, state: State) -> int:
        """Restore every declared network and optimizer from a checkpoint; its update count. CheckpointError when
        the checkpoint lacks one or holds another shape."""
        if self.restore is not None:
            return self.restore(state)
        return lifecycle.restore_learner(state, self.nets, self.optims)

    def snapshot(self, algo: str, cfg, log, counters: dict, gen, who: str, layout: dict) -> State:
        """Every declared network and optimizer copied into a checkpoint's State (lifecycle.snapshot)."""
        if self.refresh:
            self.refresh()
        return lifecycle.snapshot(algo, cfg, log, counters, self.nets, self.optims, gen, who, layout)


class Learner:
    """One learner rank's run: see the module docstring."""

    def __init__(self, rt, cfg, algo: str, parts: Parts, columns: list[str], resumed: State | None = None, *,
                 lead_rank: int | None = None, actors: list[int] | None = None, counters=None, version=None,
                 part_files=None, restore: bool = True):
        """columns: the algorithm's metric columns (the actors' are added when there are actors); lead_rank: the
        lead's world rank (default: the first learner); actors: the ranks whose reports the lead hears (default:
        the `actor` ranks; [] for none); counters() -> {name: int}: counters saved beside env_steps and updates;
        version() -> the weights version the actors act on (default: updates), for the policy lag; part_files:
        lifecycle.Lifecycle.begin's `parts` (a serial run's own part files); restore=False: the algorithm calls
        parts.load itself (A3C's lead, into the shared window)."""
        self.rt, self.cfg, self.algo, self.parts = rt, cfg, algo, parts
        self.lead_rank = lead_rank if lead_rank is not None else (rt.layout.ranks("learner") or [0])[0]
        self.lead = rt.rank == self.lead_rank
        self.counters, self.part_files = counters or dict, part_files
        self.version = version or (lambda: self.updates)
        self.updates = parts.load(resumed) if resumed is not None and restore else 0
        self._steps = resumed.env_steps if resumed is not None else 0
        actors = rt.layout.ranks("actor") if actors is None else actors
        self.stats, self.log, self.life, self.ckpt, self.evaluator = None, None, None, None, None
        self.env_restarts: int | None = None  # the job's env restarts where the algorithm sums them (A2C, ES)
        if not self.lead:
            self.ckpt = lifecycle.client(rt, self.lead_rank)
            return
        fps = frames_per_step(cfg.env)
        if actors:
            self.stats = ActorStats(rt.channels.reports, len(actors), frames_per_step=fps, steps=self._steps)
            columns = [*columns, *ActorStats.COLUMNS]
        columns = [*columns, "env_restarts"]
        if getattr(cfg, "eval_episodes", 0) > 0:  # (the Trained families; ES evaluates in its own loop)
            from drlmpi.evaluate import GreedyEval

            self.evaluator = GreedyEval.make(cfg, algo, parts, self._steps)
        if self.evaluator is not None:
            columns = [*columns, "eval_return", "eval_env_steps"]
        self.log = RunLog(cfg.run_dir, algo, to_dict(cfg), columns, frames_per_step=fps,
                          world_size=rt.size, resumed=resumed)
        collector = CheckpointCollector(rt.channels.control, lifecycle.targets(rt, rt.rank)) if rt.size > 1 else None
        self.life = lifecycle.Lifecycle(cfg, self.log, collector, resumed)

    @property
    def steps(self) -> int:
        """Env steps so far: the actors' reports on a lead that hears actors, else what the algorithm counts."""
        return self.stats.steps if self.stats is not None else self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        self._steps = value

    @property
    def progress(self) -> float:
        """The lead's fraction of total_env_steps done (0 elsewhere: the lead's rides on an allreduce)."""
        return self.steps / self.cfg.total_env_steps if self.lead else 0.0

    def signal(self) -> int:
        """The lead: what asks the run to stop now (lifecycle.Lifecycle.signal); 0 on the other learners."""
        return self.life.signal() if self.lead else 0

    @property
    def stopping(self) -> bool:
        """The final checkpoint was asked for: by the lead (itself), or from the lead (the others)."""
        return self.life.final is not None if self.lead else self.ckpt.last is not None

    def poll(self, row=None) -> None:
        """Between messages and updates (see the module docstring); row() -> the algorithm's metrics."""
        if not self.lead:
            self.ckpt.poll()
            return
        if self.stats is not None:
            self.stats.drain(self.version(), self.log.episode)
        if self.evaluator is not None:
            self.evaluator.poll(self.steps)
        self.log.tick(self.steps, self.updates, self.cfg.total_env_steps, lambda: self.row(row))
        if self.life.signal():  # the actors (if any) stop and answer the final checkpoint: `stopping` from now on
            self.life.stop_actors(self.steps)
        self.life.poll()

    def row(self, row=None) -> dict:
        """The metrics row: the algorithm's columns, then the actors', the greedy evaluation's (evaluate.GreedyEval),
    then env_restarts unless the row has it (the
        sum the algorithm set, else the actors' reports, which a lead that acts adds its own to (A3C), else this rank's
        own envs')."""
        out = dict(row() if row else {})
        if self.stats is not None:
            out.update(self.stats.row())
        if self.evaluator is not None:
            out.update(self.evaluator.row())
        own = self.stats.env_restarts if self.stats is not None else env_restarts()
        out.setdefault("env_restarts", own if self.env_restarts is None else self.env_restarts)
        return out

    def checkpoint(self) -> None:
        """A periodic checkpoint, if one is due (the lead)."""
        if self.lead and self.life.due():
            self.life.begin(self.steps, self.snapshot, parts=self.part_files)

    def snapshot(self) -> State:
        """The lead's declared state copied into memory: the only pause of training for a checkpoint."""
        counters = {"env_steps": self.steps, "updates": self.updates, **self.counters()}
        return self.parts.snapshot(self.algo, self.cfg, self.log, counters, self.rt.gen, self.rt.who,
                                   lifecycle.layout_dict(self.rt))

    def finish(self, row=None, *closing, final=None) -> dict:
        """The end of training (see the module docstring). closing: this learner's planes and peers, each
        `.close()`d in order; final() -> None or entries for the summary: the lead's last work before the final copy
        (publish its final weights; GORILA: hear the parameter server's last updates)."""
        if self.lead:
            self.life.ask_last(self.steps)
        for c in closing:
            c.close()
        if not self.lead:
            self.ckpt.close()
            return self.summary()
        if self.stats is not None:
            self.life.last_reports(self.stats, self.rt.channels.reports, self.version())
        extra = final() if final else None
        if self.evaluator is not None:
            self.evaluator.close()  # (an evaluation under way is dropped)
        self.life.begin(self.steps, self.snapshot, last=True, parts=self.part_files,
                        final_row=(self.updates, self.row(row)))
        return self.life.close(self.steps, self.updates, {**self.summary(), **(extra or {})})

    def summary(self) -> dict:
        """This learner's update count, the hash of its "online" network's weights and that of every declared
        network's state, buffers included (equal learners, equal hashes)."""
        return {**lifecycle.summary_of(self.parts.nets["online"], self.updates),
                "state_sha256": lifecycle.state_sha256(self.parts.nets)}
