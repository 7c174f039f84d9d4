"""Wall-clock timing of a callable: warm-up, repeats, robust statistics (median, percentiles).

Used by ``pointserve doctor`` for its throughput tables and meant to be reused by ``pointserve bench``.
Only measured numbers leave this module: nothing is extrapolated.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Seconds per call over ``repeats`` timed calls (after warm-up) of one batch of ``batch`` clouds."""

    batch: int
    times_s: list[float] = field(repr=False)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def min_s(self) -> float:
        return min(self.times_s)

    def percentile_s(self, q: float) -> float:
        return float(np.percentile(self.times_s, q))

    @property
    def clouds_per_s(self) -> float:
        """Throughput at the median latency."""
        return self.batch / self.median_s

    def summary(self) -> dict[str, float]:
        return {
            "batch": self.batch,
            "repeats": len(self.times_s),
            "median_ms": 1e3 * self.median_s,
            "p90_ms": 1e3 * self.percentile_s(90),
            "min_ms": 1e3 * self.min_s,
            "clouds_per_s": self.clouds_per_s,
        }


def time_callable(
    fn: Callable[[], object],
    *,
    batch: int = 1,
    warmup: int = 3,
    repeats: int = 20,
    min_total_s: float = 0.0,
    max_total_s: float = 60.0,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then at least ``repeats`` times timed (more while the timed
    total is under ``min_total_s``, never past ``max_total_s``)."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        elapsed = time.perf_counter() - started
        if len(times) >= repeats and elapsed >= min_total_s:
            break
        if elapsed >= max_total_s and times:
            break
    return Timing(batch=batch, times_s=times)


def runner_throughput(
    runner,
    feeds: Mapping[str, np.ndarray],
    batch: int,
    *,
    warmup: int = 3,
    repeats: int = 20,
    max_total_s: float = 60.0,
) -> Timing:
    """Time ``runner.infer(feeds)`` on one fixed batch of ``batch`` clouds (the graph's named inputs, e.g. from
    :func:`pointserve.models.collate.random_feeds`)."""
    return time_callable(
        lambda: runner.infer(feeds), batch=batch, warmup=warmup, repeats=repeats, max_total_s=max_total_s
    )


__all__ = ["Timing", "runner_throughput", "time_callable"]
