"""Prometheus metrics, in a registry private to each app (two apps in one process never share counters).

Names follow Prometheus conventions (``_total`` counters, ``_seconds`` durations); ``model`` is a label on
everything model-specific. Scrape ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

MODEL_STATES = ["loading", "ready", "draining", "stopped", "failed"]
_LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServiceMetrics:
    """Every metric the service exports, plus the per-model :class:`BatchObserver` adapters."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "pointserve_requests",
            "HTTP requests answered, by model, route and status",
            ["model", "route", "status"],
            registry=r,
        )
        self.request_latency = Histogram(
            "pointserve_request_duration_seconds",
            "end-to-end request latency in the app",
            ["model", "route"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.queue_latency = Histogram(
            "pointserve_queue_wait_seconds",
            "time a cloud waited in the batch queue",
            ["model"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.compute_latency = Histogram(
            "pointserve_batch_compute_seconds",
            "time to run one batch on a runner",
            ["model"],
            buckets=_LATENCY_BUCKETS_S,
            registry=r,
        )
        self.batch_size = Histogram(
            "pointserve_batch_size", "clouds per executed batch", ["model"], buckets=_BATCH_BUCKETS, registry=r
        )
        self.batches = Counter("pointserve_batches", "executed batches by outcome", ["model", "outcome"], registry=r)
        self.dropped = Counter(
            "pointserve_requests_dropped",
            "dropped before an answer: clouds (cancelled, timeout) and requests whose client went away "
            "(client_disconnected) or was too slow (client_timeout)",
            ["model", "reason"],
            registry=r,
        )
        self.queue_depth = Gauge("pointserve_queue_depth", "clouds waiting in the batch queue", ["model"], registry=r)
        self.admitted = Gauge(
            "pointserve_admitted_requests", "requests admitted (uploading, queued or computing)", ["model"], registry=r
        )
        self.admission_limit = Gauge(
            "pointserve_admission_limit", "requests a model admits before refusing with 503", ["model"], registry=r
        )
        self.in_flight = Gauge("pointserve_requests_in_flight", "requests being handled", registry=r)
        self.connections_open = Gauge("pointserve_connections_open", "client connections open", registry=r)
        self.connections_cut = Counter(
            "pointserve_connections_cut",
            "connections the server closed to protect itself (header_timeout, max_connections)",
            ["reason"],
            registry=r,
        )
        self.model_state = Enum(
            "pointserve_model_state", "serving state of each model", ["model"], states=MODEL_STATES, registry=r
        )
        self.ready = Gauge("pointserve_ready", "1 while the service is ready for traffic", registry=r)

    def observer(self, model: str) -> ModelBatchObserver:
        return ModelBatchObserver(self, model)

    def watch_queue(self, model: str, depth: Callable[[], float]) -> None:
        """Read the queue depth at scrape time (no cost per request)."""
        self.queue_depth.labels(model=model).set_function(depth)

    def watch_admission(self, model: str, admitted: Callable[[], float], limit: Callable[[], float]) -> None:
        self.admitted.labels(model=model).set_function(admitted)
        self.admission_limit.labels(model=model).set_function(limit)

    def set_state(self, model: str, state: str) -> None:
        self.model_state.labels(model=model).state(state)

    def observe_request(self, model: str, route: str, status: int, duration_s: float) -> None:
        self.requests.labels(model=model, route=route, status=str(status)).inc()
        self.request_latency.labels(model=model, route=route).observe(duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class ModelBatchObserver:
    """Feeds one model's batcher events into the histograms (see
    :class:`~pointserve.service.core.batcher.BatchObserver`)."""

    def __init__(self, metrics: ServiceMetrics, model: str):
        self._queue = metrics.queue_latency.labels(model=model)
        self._compute = metrics.compute_latency.labels(model=model)
        self._size = metrics.batch_size.labels(model=model)
        self._ok = metrics.batches.labels(model=model, outcome="ok")
        self._failed = metrics.batches.labels(model=model, outcome="failed")
        self._dropped = metrics.dropped
        self._model = model

    def on_batch(self, size: int, queue_wait_s: Sequence[float], compute_s: float, ok: bool) -> None:
        for wait in queue_wait_s:
            self._queue.observe(wait)
        self._compute.observe(compute_s)
        self._size.observe(size)
        (self._ok if ok else self._failed).inc()

    def on_dropped(self, reason: str, count: int) -> None:
        self._dropped.labels(model=self._model, reason=reason).inc(count)
