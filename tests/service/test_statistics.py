"""Triton's statistics from the serving core's counters: one writer per counter, merged on read."""

from __future__ import annotations

import threading
import time

from pointserve.service.core.statistics import ModelStatistics


def test_instances_written_from_their_own_threads_add_up():
    statistics = ModelStatistics()
    phases = [statistics.for_instance(i) for i in range(2)]
    batches = 20_000

    def run(index: int) -> None:  # what each runner's worker thread does, batch after batch
        for n in range(batches):
            phases[index].add(1 + n % 4, 10, 100, 1)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        statistics.triton("m", "1")  # readers never stop the writers
    for thread in threads:
        thread.join()
    entry = statistics.triton("m", "1")
    assert entry["execution_count"] == 2 * batches
    assert entry["inference_count"] == 2 * batches * (1 + 2 + 3 + 4) // 4
    assert [b["batch_size"] for b in entry["batch_stats"]] == [1, 2, 3, 4]
    assert all(b["compute_infer"] == {"count": batches // 2, "ns": 100 * batches // 2} for b in entry["batch_stats"])
    infer = entry["inference_stats"]["compute_infer"]
    assert infer == {"count": entry["inference_count"], "ns": 100 * entry["inference_count"]}  # per cloud


def test_requests_queue_and_preparation():
    statistics = ModelStatistics()
    started = time.perf_counter_ns()
    statistics.prepare.add(5_000, 2)
    statistics.on_batch(2, [0.001, 0.003], compute_s=0.01, ok=True)
    statistics.for_instance(0).add(2, 1_000, 10_000, 100)
    statistics.request_done(started, ok=True)
    statistics.request_done(started, ok=False)
    entry = statistics.triton("m", "3")
    stats = entry["inference_stats"]
    assert entry["version"] == "3" and entry["last_inference"] > 0
    assert stats["success"]["count"] == 1 and stats["fail"]["count"] == 1 and stats["success"]["ns"] > 0
    assert stats["queue"] == {"count": 2, "ns": 4_000_000}
    assert stats["compute_input"] == {"count": 2, "ns": 2 * 1_000 + 5_000}  # the batch's collation + preparation
    assert stats["compute_output"] == {"count": 2, "ns": 200}
    assert stats["cache_hit"] == stats["cache_miss"] == {"count": 0, "ns": 0}
