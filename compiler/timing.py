"""Latency measurement shared by the demo, the benchmarks and the schedule chooser.

Machines here are shared and noisy: always take the median of many repetitions after a
warm-up, and compare systems as ratios measured in the same run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def run_times(fn: Callable[[], object], *, warmup: int = 3, reps: int = 20,
              min_seconds: float = 0.0) -> list[float]:
    """Wall time of each of ``reps`` calls of ``fn()`` in seconds (at least
    ``min_seconds`` of calls in all) after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < reps or time.perf_counter() - start < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def median_ms(fn: Callable[[], object], *, warmup: int = 3, reps: int = 20,
              min_seconds: float = 0.0) -> float:
    """Median wall time of ``fn()`` in milliseconds (``run_times``)."""
    return statistics.median(run_times(fn, warmup=warmup, reps=reps,
                                       min_seconds=min_seconds)) * 1e3
