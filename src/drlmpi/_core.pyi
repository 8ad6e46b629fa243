"""Type stub for the C++ extension drlmpi._core."""

import numpy as np
import numpy.typing as npt

def fence() -> None:
    """Full memory fence (C++ std::atomic_thread_fence(seq_cst)): no load or store moves across it."""

class SumTree:
    """Sum-tree with min over non-negative leaf priorities (8-ary, C++).

    Leaves never set have priority 0 and are never sampled. Batched calls
    validate all input before writing and release the GIL.
    """

    def __init__(self, capacity: int) -> None: ...
    @property
    def capacity(self) -> int: ...
    def total(self) -> float:
        """Sum of all priorities."""
    def min(self) -> float:
        """Smallest priority among leaves ever set; inf when none."""
    def update(self, idx: npt.ArrayLike, priority: npt.ArrayLike) -> None:
        """Set leaves idx[n] (int) to priority[n] (finite, >= 0); duplicates: the last wins.

        Raises ValueError (bad priority, lengths differ) or IndexError (idx outside [0, capacity)).
        """
    def clear(self, idx: npt.ArrayLike) -> None:
        """Clear leaves idx[n]: as if never set (priority 0, not counted by min(), never sampled)."""
    def get(self, idx: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Priorities of leaves idx[n], float64[n]."""
    def sample(self, u: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """For each u[n] in [0, total()), the leaf whose prefix-sum interval holds it, int64[n]."""
