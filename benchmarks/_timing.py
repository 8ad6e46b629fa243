"""Small timing helpers shared by the benchmark scripts."""

import platform
import time

import numpy as np


def best_of(fn, repeats: int = 5, number: int = 200) -> float:
    """Median over `repeats` of the mean seconds per call of fn() over `number` calls."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t0) / number)
    return float(np.median(times))


def machine() -> str:
    import os

    return f"{platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}"
