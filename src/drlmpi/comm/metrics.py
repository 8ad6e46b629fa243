"""Actors report to the lead learner: point-to-point buffer messages, one in flight per actor.

  METRICS  actor -> lead learner  float64 [6]: env steps, episodes ended, sum of their returns,
                                  sum over vector steps of the weights version that acted, vector
                                  steps, seconds covered by this report
  STOP     actor -> lead learner  empty: this actor has finished its share of env steps

`ActorReport` (actor side) accumulates and sends at most every `every` seconds; `ActorStats`
(learner side) drains whatever arrived and keeps env steps, finished actors, per-actor frames/s
and policy lag (the learner's version when the report arrives minus the mean version that acted).
"""

import time

import numpy as np
from mpi4py import MPI

from drlmpi.comm.tags import Tag
from drlmpi.runtime import wait

FIELDS = 6


class ActorReport:
    def __init__(self, comm: MPI.Intracomm, dest: int, every: float = 0.5):
        self.comm, self.dest, self.every = comm, dest, every
        self.msg = np.zeros(FIELDS, np.float64)
        self.steps = self.episodes = self.return_sum = self.version_sum = self.vsteps = 0
        self.req = MPI.REQUEST_NULL
        self.last = time.monotonic()

    def step(self, env_steps: int, returns: list[float], version: int) -> None:
        """Count one vector step of env_steps steps, the returns of episodes that ended, the acting version."""
        self.steps += env_steps  # plain Python numbers: this runs every vector step
        self.version_sum += version
        self.vsteps += 1
        if returns:
            self.episodes += len(returns)
            self.return_sum += sum(returns)

    def maybe_send(self) -> None:
        if time.monotonic() - self.last > self.every and self.req.Test():
            self.send()

    def send(self) -> None:
        wait(self.req, what="metrics")
        now = time.monotonic()
        self.msg[:] = self.steps, self.episodes, self.return_sum, self.version_sum, self.vsteps, now - self.last
        self.last = now
        self.steps = self.episodes = self.return_sum = self.version_sum = self.vsteps = 0
        self.req = self.comm.Isend(self.msg, dest=self.dest, tag=Tag.METRICS)

    def close(self) -> None:
        """Send what is left, then STOP."""
        self.send()
        wait(self.req, what="metrics")
        self.comm.Send(np.zeros(0, np.uint8), dest=self.dest, tag=Tag.STOP)


class ActorStats:
    def __init__(self, comm: MPI.Intracomm, actors: list[int], frames_per_step: int = 1):
        self.comm, self.actors, self.frames_per_step = comm, actors, frames_per_step
        self.steps = self.done = 0
        self.fps, self.lag = np.zeros(len(actors)), np.zeros(len(actors))
        self._msg, self._status = np.zeros(FIELDS, np.float64), MPI.Status()

    @property
    def all_done(self) -> bool:
        return self.done == len(self.actors)

    def drain(self, version: int, on_return=None) -> None:
        """Receive every report that has arrived; `version` is the learner's now; on_return(r) per mean return."""
        while self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, self._status):
            src, tag = self._status.source, self._status.tag
            if tag == Tag.METRICS:
                self.comm.Recv(self._msg, source=src, tag=tag)
                steps, episodes, ret_sum, version_sum, vsteps, seconds = self._msg
                self.steps += int(steps)
                i = self.actors.index(src)
                self.fps[i] = steps * self.frames_per_step / max(seconds, 1e-9)
                if vsteps:
                    self.lag[i] = version - version_sum / vsteps
                if episodes and on_return is not None:
                    on_return(ret_sum / episodes)
            elif tag == Tag.STOP:
                self.comm.Recv(np.zeros(0, np.uint8), source=src, tag=tag)
                self.done += 1
            else:
                raise RuntimeError(f"learner: unexpected tag {tag} from rank {src}")

    def row(self) -> dict:
        """Metrics columns: policy_lag (mean over actors), actor_fps_min/mean/max."""
        return {"policy_lag": round(float(self.lag.mean()), 2), "actor_fps_min": round(float(self.fps.min()), 1),
                "actor_fps_mean": round(float(self.fps.mean()), 1), "actor_fps_max": round(float(self.fps.max()), 1)}

    COLUMNS = ["policy_lag", "actor_fps_min", "actor_fps_mean", "actor_fps_max"]
