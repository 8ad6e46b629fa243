"""Actors report to the lead learner on the reports channel: buffer messages, one in flight per actor.

  METRICS  actor -> lead learner  float64 [9]: actor index, env steps, episodes ended, sum of their
                                  returns, sum over vector steps of the weights version that acted,
                                  vector steps, seconds covered by this report, seconds paused in them,
                                  environment restarts (envs.env_restarts) since the last report
  STOP     actor -> lead learner  empty: this actor has finished its share of env steps

`ActorReport` (actor side) accumulates and sends at most every `every` seconds; `ActorStats`
(learner side) drains whatever arrived and keeps env steps, finished actors, per-actor frames/s,
policy lag (the learner's version when the report arrives minus the mean version that acted) and
the fraction of time paused by the replay-ratio throttle. Its work per report is O(1) (the actor
index rides in the message), so a lead with thousands of actors spends little on them
(benchmarks/reports.py).
"""

import time

import numpy as np
from mpi4py import MPI

from drlmpi.comm.tags import Tag
from drlmpi.envs import env_restarts
from drlmpi.runtime import wait

FIELDS = 9


class ActorReport:
    def __init__(self, comm: MPI.Intracomm, dest: int, index: int, every: float = 0.5):
        """comm: the reports channel; dest: the lead learner; index: this actor's index among the actors."""
        self.comm, self.dest, self.index, self.every = comm, dest, index, every
        self.msg = np.zeros(FIELDS, np.float64)
        self.steps = self.episodes = self.return_sum = self.version_sum = self.vsteps = self.paused = 0
        self.req = MPI.REQUEST_NULL
        self.last = time.monotonic()
        self.restarts = env_restarts()  # this process's count when last reported

    def step(self, env_steps: int, returns: list[float], version: int) -> None:
        """Count one vector step of env_steps steps, the returns of episodes that ended, the acting version."""
        self.steps += env_steps  # plain Python numbers: this runs every vector step
        self.version_sum += version
        self.vsteps += 1
        if returns:
            self.episodes += len(returns)
            self.return_sum += sum(returns)

    def pause(self, seconds: float) -> None:
        """Count seconds spent paused by the throttle."""
        self.paused += seconds

    def due(self) -> bool:
        return time.monotonic() - self.last > self.every

    def maybe_post(self) -> None:
        if self.due() and self.req.Test():
            self.post()

    def pack(self) -> np.ndarray:
        """What was counted since the last report, as the METRICS message (float64 [9]); the counts restart."""
        now, restarts = time.monotonic(), env_restarts()
        self.msg[:] = (self.index, self.steps, self.episodes, self.return_sum, self.version_sum, self.vsteps,
                       now - self.last, self.paused, restarts - self.restarts)
        self.last, self.restarts = now, restarts
        self.steps = self.episodes = self.return_sum = self.version_sum = self.vsteps = self.paused = 0
        return self.msg

    def post(self) -> None:
        """Isend what was counted since the last report (Tag.METRICS)."""
        wait(self.req, what="the previous metrics send")
        self.req = self.comm.Isend(self.pack(), dest=self.dest, tag=Tag.METRICS)

    def close(self) -> None:
        """Send what is left, then STOP."""
        self.post()
        wait(self.req, what="the last metrics send")
        wait(self.comm.Isend(np.zeros(0, np.uint8), dest=self.dest, tag=Tag.STOP), what="the stop to the lead")


class ActorStats:
    def __init__(self, comm: MPI.Intracomm, n_actors: int, frames_per_step: int = 1, steps: int = 0):
        """comm: the reports channel (only actor reports travel on it); n_actors: how many report; steps: env
        steps done before (a resumed run)."""
        self.comm, self.n_actors, self.frames_per_step = comm, n_actors, frames_per_step
        self.steps, self.done, self.received, self.env_restarts = steps, 0, 0, 0
        self.fps, self.lag, self.paused = np.zeros(n_actors), np.zeros(n_actors), np.zeros(n_actors)
        self._msg, self._stop, self._status = np.zeros(FIELDS, np.float64), np.zeros(0, np.uint8), MPI.Status()

    @property
    def all_done(self) -> bool:
        return self.done == self.n_actors

    def drain(self, version: int, on_return=None) -> None:
        """Receive every report that has arrived; `version` is the learner's now; on_return(r) per mean return."""
        while self.comm.Iprobe(MPI.ANY_SOURCE, MPI.ANY_TAG, self._status):
            src, tag = self._status.source, self._status.tag
            if tag == Tag.METRICS:
                self.comm.Recv(self._msg, source=src, tag=tag)
                self.add(version, on_return)
            elif tag == Tag.STOP:
                self.comm.Recv(self._stop, source=src, tag=tag)
                self.done += 1
            else:
                raise RuntimeError(f"reports channel: unexpected tag {tag} from rank {src}")

    def take(self, msg: np.ndarray, version: int, on_return=None) -> None:
        """Account a report made on this rank (a lead that also acts: ActorReport.pack())."""
        self._msg[:] = msg
        self.add(version, on_return)

    def add(self, version: int, on_return=None) -> None:
        """Account the report in the message buffer (O(1))."""
        index, steps, episodes, ret_sum, version_sum, vsteps, seconds, paused, restarts = self._msg.tolist()
        i = int(index)
        self.received += 1
        self.env_restarts += int(restarts)
        self.steps += int(steps)
        self.fps[i] = steps * self.frames_per_step / max(seconds, 1e-9)
        self.paused[i] = paused / max(seconds, 1e-9)
        if vsteps:
            self.lag[i] = version - version_sum / vsteps
        if episodes and on_return is not None:
            on_return(ret_sum / episodes)

    def row(self) -> dict:
        """Metrics columns: policy_lag (mean over actors), actor_fps_min/mean/max, actor_paused (mean fraction);
        NaN without actors."""
        if not self.n_actors:
            return dict.fromkeys(self.COLUMNS, float("nan"))
        return {"policy_lag": round(float(self.lag.mean()), 2), "actor_fps_min": round(float(self.fps.min()), 1),
                "actor_fps_mean": round(float(self.fps.mean()), 1), "actor_fps_max": round(float(self.fps.max()), 1),
                "actor_paused": round(float(self.paused.mean()), 4)}

    COLUMNS = ["policy_lag", "actor_fps_min", "actor_fps_mean", "actor_fps_max", "actor_paused"]
