"""drlmpi: distributed deep reinforcement learning on MPI."""

import os

# numpy's BLAS on one thread a rank, unless told otherwise: a numpy actor's matmuls are small, and OpenBLAS's default
# (a spinning thread per core in every rank) would oversubscribe a node of ranks. Set before numpy loads OpenBLAS.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__version__ = "0.1.0"
