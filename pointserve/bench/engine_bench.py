"""The measurement behind ``pointserve bench``: warm-up, then timed queries until both the duration and the
iteration count are reached (as trtexec's ``--warmUp``, ``--duration``, ``--iterations``), on one or more
parallel streams, each stream with its own runner.

A *query* is one ``infer`` call of ``batch`` clouds. Throughput is queries per second of host walltime
(and clouds per second = queries x batch). Everything is bounded: at most ``max_iterations`` queries and
``max_time_s`` seconds, whatever the other settings say.

The inputs are the graph's named feeds for ``batch`` random clouds (fixed seed), made by the target: through
the model family's preprocessing and collate policy for a repository version, raw unit-sphere clouds for a
bare file. Shapes (PointNet, for example):
    points:   (B, N, C) float32
    category: (B,) int64, part segmentation only
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pointserve.bench.phases import Feeds, Phases, TimedCall, timed_call
from pointserve.bench.targets import BenchTarget
from pointserve.engines.base import Runner
from pointserve.errors import ConfigError

DEFAULT_PERCENTILES = (90.0, 95.0, 99.0)


@dataclass(frozen=True)
class BenchConfig:
    """What to run and for how long (trtexec's defaults: 200 ms warm-up, 3 s, at least 10 iterations)."""

    batch: int = 1
    num_points: int | None = None
    warmup_ms: float = 200.0
    duration_s: float = 3.0
    iterations: int = 10
    streams: int = 1
    threads: int | None = None
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    seed: int = 0
    max_iterations: int = 1_000_000
    max_time_s: float = 600.0
    cov_threshold_pct: float = 1.0
    gpu_phases: bool = True

    def __post_init__(self) -> None:
        if self.batch < 1 or self.streams < 1 or self.iterations < 1:
            raise ConfigError("batch, streams and iterations must be at least 1")
        if self.warmup_ms < 0 or self.duration_s < 0 or self.max_time_s <= 0:
            raise ConfigError("warm-up and duration must be >= 0, the time limit > 0")
        for q in self.percentiles:
            if not 0 < q < 100:
                raise ConfigError(f"percentile {q} is outside (0, 100)")


@dataclass(frozen=True)
class QueryTime:
    """One timed query: when it started (s since measurement start), its host latency and its phases, the
    stream that ran it and (with ``--compare``) the interleaved round it belongs to."""

    start_s: float
    latency_s: float
    phases: Phases
    stream: int = 0
    round: int = 0


@dataclass(frozen=True)
class Stats:
    """min / max / mean / median / percentiles of one series, in milliseconds."""

    min_ms: float
    max_ms: float
    mean_ms: float
    median_ms: float
    percentiles_ms: dict[float, float]
    std_ms: float
    total_s: float

    @property
    def cov_pct(self) -> float:
        """Coefficient of variance (std / mean) in percent, as trtexec's stability warning uses it."""
        return 100.0 * self.std_ms / self.mean_ms if self.mean_ms > 0 else 0.0

    @classmethod
    def of(cls, seconds: Sequence[float], percentiles: Sequence[float]) -> Stats:
        ms = np.asarray(seconds, dtype=np.float64) * 1e3
        return cls(
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            mean_ms=float(ms.mean()),
            median_ms=float(np.median(ms)),
            percentiles_ms={float(q): float(np.percentile(ms, q)) for q in percentiles},
            std_ms=float(ms.std()),
            total_s=float(ms.sum()) / 1e3,
        )


@dataclass
class BenchResult:
    """Every timed query of one (target, batch) and the host walltime they took."""

    target: BenchTarget
    config: BenchConfig
    num_points: int
    times: list[QueryTime] = field(default_factory=list)
    walltime_s: float = 0.0
    gpu_phases: bool = False
    warnings: list[str] = field(default_factory=list)
    # Seconds the family's CPU preprocessing (neighbourhoods, sampling) took per cloud of num_points; empty for
    # a bare file (no card, so no family). Not part of the timed queries: the service pays it per request.
    preprocess_s: list[float] = field(default_factory=list)

    @property
    def queries(self) -> int:
        return len(self.times)

    @property
    def qps(self) -> float:
        return self.queries / self.walltime_s if self.walltime_s > 0 else 0.0

    @property
    def clouds_per_s(self) -> float:
        return self.qps * self.config.batch

    def stats(self, phase: str = "latency") -> Stats | None:
        """Stats of ``latency`` or of a phase (``enqueue``, ``compute``, ``h2d``, ``gpu_compute``, ``d2h``)."""
        if phase == "latency":
            values = [t.latency_s for t in self.times]
        else:
            values = [getattr(t.phases, f"{phase}_s") for t in self.times]
            if not values or any(v is None for v in values):
                return None
        return Stats.of(values, self.config.percentiles) if values else None

    @property
    def stability_series(self) -> str:
        """The series whose spread decides the stability warning: GPU compute on GPUs, else latency."""
        return "gpu_compute" if self.gpu_phases else "latency"


def measure_preprocessing(target: BenchTarget, num_points: int, seed: int = 0, clouds: int = 16) -> list[float]:
    """Seconds per cloud of the family's CPU preprocessing (what the service runs on every request before the
    engine sees it), over ``clouds`` random clouds; empty when the target has no card."""
    if target.card is None:
        return []
    from pointserve.models.collate import cloud_inputs, random_clouds
    from pointserve.models.registry import get_spec

    spec = get_spec(target.card.architecture)
    rng = np.random.default_rng(seed)
    seconds = []
    for cloud in random_clouds(target.card, clouds, num_points, rng):
        category = 0 if target.card.needs_category else None
        started = time.perf_counter()
        cloud_inputs(spec, target.card, cloud, category)
        seconds.append(time.perf_counter() - started)
    return seconds


def make_inputs(target: BenchTarget, batch: int, num_points: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A fixed random batch of ``batch`` clouds as the graph's named inputs, the same for every variant compared."""
    return target.make_feeds(batch, num_points, seed)


class Session:
    """The runners of one target (one per stream), loaded, with their timed-call functions."""

    def __init__(self, target: BenchTarget, config: BenchConfig):
        self.target = target
        self.config = config
        self.runners: list[Runner] = []
        self.calls: list[TimedCall] = []
        self.gpu_phases = False
        try:
            for _ in range(config.streams):
                runner = target.make_runner().load()
                self.runners.append(runner)
                call, self.gpu_phases = timed_call(runner, gpu_phases=config.gpu_phases)
                self.calls.append(call)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for runner in self.runners:
            runner.close()
        self.runners.clear()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def warm_up(session: Session, inputs: Feeds, warmup_ms: float) -> None:
    """At least one query per stream, then more until ``warmup_ms`` has passed (untimed)."""
    deadline = time.perf_counter() + warmup_ms / 1e3
    for call in session.calls:
        call(inputs)
    while time.perf_counter() < deadline:
        for call in session.calls:
            call(inputs)


def measure(
    session: Session,
    inputs: Feeds,
    *,
    duration_s: float,
    iterations: int,
    max_iterations: int,
    max_time_s: float,
) -> tuple[list[QueryTime], float]:
    """Timed queries on every stream in parallel until ``duration_s`` and ``iterations`` are both reached
    (or a bound is hit). Returns the queries and the host walltime from the first start to the last end."""
    lock = threading.Lock()
    times: list[QueryTime] = []
    stop = threading.Event()
    origin = time.perf_counter()
    last_end = [origin]

    def worker(stream: int, call: TimedCall) -> None:
        while not stop.is_set():
            start = time.perf_counter()
            phases = call(inputs)
            end = time.perf_counter()
            with lock:
                times.append(QueryTime(start - origin, end - start, phases, stream))
                last_end[0] = max(last_end[0], end)
                elapsed = end - origin
                done = len(times) >= iterations and elapsed >= duration_s
                if done or len(times) >= max_iterations or elapsed >= max_time_s:
                    stop.set()

    if len(session.calls) == 1:
        worker(0, session.calls[0])
    else:
        threads = [
            threading.Thread(target=worker, args=(i, call), name=f"bench-stream-{i}", daemon=True)
            for i, call in enumerate(session.calls)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    times.sort(key=lambda t: t.start_s)
    return times, last_end[0] - origin


def stability_warnings(result: BenchResult) -> list[str]:
    """trtexec's warning when the timings spread too much to be trusted as one number."""
    stats = result.stats(result.stability_series)
    if stats is None or result.queries < 2:
        return []
    if stats.cov_pct <= result.config.cov_threshold_pct:
        return []
    what = "GPU compute time" if result.gpu_phases else "Latency"
    return [
        f"* {what} is unstable, with coefficient of variance = {stats.cov_pct:.2f}%.",
        "  Fewer --streams, fixed --threads, locked clocks or an otherwise idle machine may improve the stability.",
    ]


def run_benchmark(target: BenchTarget, config: BenchConfig) -> BenchResult:
    """Load ``target`` (one runner per stream), warm up, measure, and return every timed query."""
    num_points = config.num_points or target.default_points
    inputs = make_inputs(target, config.batch, num_points, config.seed)
    with Session(target, config) as session:
        warm_up(session, inputs, config.warmup_ms)
        times, walltime = measure(
            session,
            inputs,
            duration_s=config.duration_s,
            iterations=config.iterations,
            max_iterations=config.max_iterations,
            max_time_s=config.max_time_s,
        )
        result = BenchResult(target, config, num_points, times, walltime, gpu_phases=session.gpu_phases)
    result.preprocess_s = measure_preprocessing(target, num_points, config.seed)
    result.warnings = stability_warnings(result)
    return result


__all__ = [
    "DEFAULT_PERCENTILES",
    "BenchConfig",
    "BenchResult",
    "QueryTime",
    "Session",
    "Stats",
    "make_inputs",
    "measure",
    "measure_preprocessing",
    "run_benchmark",
    "stability_warnings",
    "warm_up",
]
