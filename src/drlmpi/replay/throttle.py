"""The replay-ratio throttle: learners make `ratio` updates per env step, within a tolerance band.

As Reverb's `SampleToInsertRatio` with its error buffer, on Ape-X's counters. With U updates (as the
actors see them through the weights version) and N env steps of all actors:

  learners wait   while U >= ratio (1 + band) N                                 (ahead of the data)
  actors pause    while N >  start + slack + (U + lag) / (ratio (1 - band))     (ahead of the learners)

`start` = max(learning_starts, batch_size): the transitions the learners need before their first
update, which actors may always provide (so a small `learning_starts` can never stall a job);
`slack`: env steps whose transitions are not in the shards yet (actors' n-step builders); `lag`:
updates an actor cannot see yet (the publication interval). Inside the band neither side waits;
`ratio` 0 turns both off. The two conditions cannot hold at once once the actors' steps have
reached the learners (an actor reports and flushes before it pauses), so the job never deadlocks.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Throttle:
    ratio: float  # updates per env step
    band: float  # relative tolerance, in [0, 1)
    start: int  # transitions needed before the first update
    slack: int = 0  # env steps that may sit in the actors' builders
    lag: int = 0  # updates not yet visible to the actors

    def actors_pause(self, env_steps: float, updates: int) -> bool:
        """Should actors pause, with env_steps of all actors and `updates` as last seen?"""
        return self.ratio > 0 and env_steps > self.env_steps_allowed(updates)

    def env_steps_allowed(self, updates: int) -> float:
        return self.start + self.slack + (updates + self.lag) / (self.ratio * (1 - self.band))

    def learners_wait(self, updates: int, env_steps: float) -> bool:
        """Should learners wait, having made `updates` with env_steps of all actors reported?"""
        return self.ratio > 0 and updates >= self.ratio * (1 + self.band) * env_steps
