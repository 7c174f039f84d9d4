"""Per-model inference statistics in the terms of Triton's statistics extension (``GET /v2/models/{m}/stats``).

What is counted, and by whom (each counter has one writer, so the hot path takes no lock):

* **requests** (``success`` / ``fail``: count and nanoseconds from the start of ``ServedModel.predict`` to its
  answer or error) and ``last_inference``: written on the event loop, once per request;
* **queue**: each cloud's wait from joining the batcher to its batch starting, written on the event loop by the
  batcher's observer (:meth:`ModelStatistics.on_batch`), once per batch;
* **compute**: per runner instance, a :class:`BatchPhases` that only that instance's worker thread writes: per
  batch size, the executions and the nanoseconds spent collating (``compute_input``), in the runtime
  (``compute_infer``) and splitting the answers (``compute_output``). A cloud's preparation (normalising,
  resampling, the family's preprocessor) happens before it is queued and is added to ``compute_input`` on the
  event loop.

Triton counts ``queue`` and ``compute_*`` per request; here each cloud of a request joins the batcher on its own,
so those counts are clouds (the same thing for one-cloud requests, what perf_analyzer sends). ``inference_count``
is clouds computed, ``execution_count`` batches run, ``batch_stats`` the executions per batch size.

Readers (the stats route) sum these without stopping the writers: a snapshot may be a batch behind in one field,
which is what Triton's own counters allow too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class Duration:
    """A count and the nanoseconds it took, Triton's ``StatisticDuration``."""

    count: int = 0
    ns: int = 0

    def add(self, ns: int, count: int = 1) -> None:
        self.count += count
        self.ns += ns

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "ns": self.ns}


class BatchPhases:
    """One runner instance's executions by batch size; written only by that instance's worker thread."""

    __slots__ = ("by_size",)

    def __init__(self) -> None:
        # batch size -> [executions, input ns, infer ns, output ns]
        self.by_size: dict[int, list[int]] = {}

    def add(self, size: int, input_ns: int, infer_ns: int, output_ns: int) -> None:
        entry = self.by_size.get(size)
        if entry is None:
            entry = self.by_size[size] = [0, 0, 0, 0]
        entry[0] += 1
        entry[1] += input_ns
        entry[2] += infer_ns
        entry[3] += output_ns


@dataclass
class ModelStatistics:
    """One served model's counters; also a :class:`~pointserve.service.core.batcher.BatchObserver` (queue waits)."""

    instances: list[BatchPhases] = field(default_factory=list)
    success: Duration = field(default_factory=Duration)
    fail: Duration = field(default_factory=Duration)
    queue: Duration = field(default_factory=Duration)
    prepare: Duration = field(default_factory=Duration)
    last_inference_ms: int = 0

    def for_instance(self, index: int) -> BatchPhases:
        while len(self.instances) <= index:
            self.instances.append(BatchPhases())
        return self.instances[index]

    # -- writers on the event loop ------------------------------------------------------------------------
    def request_done(self, started_ns: int, ok: bool) -> None:
        (self.success if ok else self.fail).add(time.perf_counter_ns() - started_ns)
        if ok:
            self.last_inference_ms = time.time_ns() // 1_000_000

    def on_batch(self, size: int, queue_wait_s: Sequence[float], compute_s: float, ok: bool) -> None:
        self.queue.add(int(sum(queue_wait_s) * 1e9), len(queue_wait_s))

    def on_dropped(self, reason: str, count: int) -> None:
        pass  # dropped clouds end as failed requests, counted by request_done

    # -- the reader -----------------------------------------------------------------------------------------
    def batch_sizes(self) -> dict[int, list[int]]:
        """Every instance's executions merged: batch size -> [executions, input ns, infer ns, output ns]."""
        merged: dict[int, list[int]] = {}
        for instance in list(self.instances):
            for size, entry in list(instance.by_size.items()):
                total = merged.setdefault(size, [0, 0, 0, 0])
                for i, value in enumerate(list(entry)):
                    total[i] += value
        return dict(sorted(merged.items()))

    def triton(self, name: str, version: str) -> dict:
        """This model's entry of Triton's ``model_stats`` (``ModelStatistics`` in Triton's protobuf-JSON)."""
        sizes = self.batch_sizes()
        executions = sum(entry[0] for entry in sizes.values())
        clouds = sum(size * entry[0] for size, entry in sizes.items())

        def per_cloud(phase: int) -> Duration:  # each cloud of a batch spent the batch's time in that phase
            return Duration(clouds, sum(size * entry[phase] for size, entry in sizes.items()))

        compute_input = per_cloud(1)
        compute_input.add(self.prepare.ns, 0)
        zero = Duration().as_dict()
        return {
            "name": name,
            "version": version,
            "last_inference": self.last_inference_ms,
            "inference_count": clouds,
            "execution_count": executions,
            "inference_stats": {
                "success": self.success.as_dict(),
                "fail": self.fail.as_dict(),
                "queue": self.queue.as_dict(),
                "compute_input": compute_input.as_dict(),
                "compute_infer": per_cloud(2).as_dict(),
                "compute_output": per_cloud(3).as_dict(),
                "cache_hit": zero,  # no response cache; perf_analyzer reads these fields all the same
                "cache_miss": zero,
            },
            "batch_stats": [
                {
                    "batch_size": size,
                    "compute_input": {"count": entry[0], "ns": entry[1]},
                    "compute_infer": {"count": entry[0], "ns": entry[2]},
                    "compute_output": {"count": entry[0], "ns": entry[3]},
                }
                for size, entry in sizes.items()
            ],
            "memory_usage": [],
        }


__all__ = ["BatchPhases", "Duration", "ModelStatistics"]
