"""Prioritized replay: the C++ sum-tree and (later) the replay shard storage."""

from drlmpi._core import SumTree

__all__ = ["SumTree"]
