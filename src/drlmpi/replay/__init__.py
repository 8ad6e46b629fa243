"""Prioritized replay: the C++ sum-tree, ring storage, the n-step transition and sequence builders, and the replay plane
(shard role, writers and global samplers). This package builds on `drlmpi.comm`; `comm` never imports it."""

from drlmpi._core import SumTree
from drlmpi.replay.nstep import NStepBuilder, transition_fields
from drlmpi.replay.sequence import SequenceBuilder, sequence_fields
from drlmpi.replay.storage import PrioritizedReplay

__all__ = ["NStepBuilder", "PrioritizedReplay", "SequenceBuilder", "SumTree", "sequence_fields", "transition_fields"]
