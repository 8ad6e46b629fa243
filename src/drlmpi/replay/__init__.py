"""Prioritized replay: the C++ sum-tree, ring storage, and the n-step transition builder."""

from drlmpi._core import SumTree
from drlmpi.replay.nstep import NStepBuilder, transition_fields
from drlmpi.replay.storage import PrioritizedReplay

__all__ = ["NStepBuilder", "PrioritizedReplay", "SumTree", "transition_fields"]
