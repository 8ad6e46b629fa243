"""Prioritized replay: the C++ sum-tree, ring storage, the n-step transition builder, and the replay plane
(shard role, writers and global samplers). This package builds on `drlmpi.comm`; `comm` never imports it."""

from drlmpi._core import SumTree
from drlmpi.replay.nstep import NStepBuilder, transition_fields
from drlmpi.replay.storage import PrioritizedReplay

__all__ = ["NStepBuilder", "PrioritizedReplay", "SumTree", "transition_fields"]
