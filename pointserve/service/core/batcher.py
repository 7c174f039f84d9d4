"""A dynamic batcher in the manner of Ray Serve's ``batching.py``: a private bounded queue and a small public API.

Each request gets a future and waits in the queue; worker tasks (one per runner instance) take turns to
collect a batch — up to ``max_batch_size`` requests, at most ``max_queue_delay_ms`` after the oldest one
arrived, and at most ``max_points_per_batch`` padded points — then run it in their own thread (so the event
loop keeps serving while onnxruntime computes with the GIL released) and hand each request its own answer.

Guarantees, each covered by a test:

* a full queue raises :class:`ServiceUnavailableError` at once (the service answers 503 + Retry-After);
* a request not answered within ``request_timeout_s`` raises :class:`RequestTimeoutError` (504);
* a request whose future was cancelled (its client went away, or it timed out) is dropped before compute;
* a batch whose handler raises fails only its own requests, and the worker carries on;
* the handler gets a list and must return a list of the same length, in the same order (checked);
* items submitted with a ``group`` key share a batch only with items of the same key (the ``bucket``
  collate policy: same-size clouds only); items of other groups keep their place in the queue.

The points budget counts padded points (``len(batch) * max(cost)``: clouds are padded to the largest) or,
with ``padded=False``, the sum of the costs (clouds concatenated, nothing padded).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from pointserve.errors import EngineError, PointServeError, RequestTimeoutError, ServiceUnavailableError

log = logging.getLogger("pointserve.service.core.batcher")

ItemT = TypeVar("ItemT")
ResultT = TypeVar("ResultT")
BatchHandler = Callable[[list[Any]], list[Any]]


class BatchObserver(Protocol):
    """What the batcher reports (the service's Prometheus metrics implement it)."""

    def on_batch(self, size: int, queue_wait_s: Sequence[float], compute_s: float, ok: bool) -> None: ...

    def on_dropped(self, reason: str, count: int) -> None: ...


@dataclass(frozen=True)
class ObserverChain:
    """Several observers fed the same events, in order."""

    observers: tuple[BatchObserver, ...]

    def on_batch(self, size: int, queue_wait_s: Sequence[float], compute_s: float, ok: bool) -> None:
        for observer in self.observers:
            observer.on_batch(size, queue_wait_s, compute_s, ok)

    def on_dropped(self, reason: str, count: int) -> None:
        for observer in self.observers:
            observer.on_dropped(reason, count)


@dataclass(slots=True)
class _Queued:
    item: Any
    cost: int
    future: asyncio.Future
    group: Any = None
    enqueued_at: float = field(default_factory=time.monotonic)


class _BatchQueue:
    """Bounded FIFO of waiting requests; one collector at a time takes batches from its head."""

    def __init__(self, max_size: int):
        self.max_size = max_size
        self._items: deque[_Queued] = deque()
        self._arrived = asyncio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, entry: _Queued, name: str) -> None:
        if len(self._items) >= self.max_size:
            # Cancelled entries still sit in the deque until collected; do not refuse on their account.
            self._items = deque(e for e in self._items if not e.future.done())
            if len(self._items) >= self.max_size:
                raise ServiceUnavailableError(
                    f"model {name!r} is overloaded: {len(self._items)} requests already waiting; retry later"
                )
        self._items.append(entry)
        self._arrived.set()

    def close(self) -> None:
        self.closed = True
        self._arrived.set()

    async def _wait_for_arrival(self, timeout_s: float | None) -> bool:
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def next_batch(
        self, max_size: int, delay_s: float, max_cost: int, padded: bool = True
    ) -> tuple[list[_Queued], int]:
        """Collect one batch; returns ``(batch, n_skipped_cancelled)``. An empty batch means closed and drained.

        The cost of a batch is ``len(batch) * max(cost)`` when ``padded`` (clouds are padded to the largest
        one), else the sum of the costs; an entry that would push it past ``max_cost`` waits for the next
        batch. A single entry is always taken. Entries of another ``group`` than the batch's first are left
        in the queue, in their order.
        """
        skipped = 0
        batch: list[_Queued] = []
        deferred: list[_Queued] = []
        deadline = 0.0
        largest = total = 0
        try:
            while len(batch) < max_size:
                if not self._items:
                    if not batch:
                        if self.closed:
                            break
                        await self._wait_for_arrival(None)
                        continue
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or self.closed or not await self._wait_for_arrival(remaining):
                        break
                    continue
                entry = self._items.popleft()
                if entry.future.done():  # cancelled: its client left or its deadline passed
                    skipped += 1
                    continue
                if batch and entry.group != batch[0].group:
                    deferred.append(entry)
                    continue
                new_largest = max(largest, entry.cost)
                cost = (len(batch) + 1) * new_largest if padded else total + entry.cost
                if batch and cost > max_cost:
                    self._items.appendleft(entry)
                    break
                if not batch:
                    # The delay counts from the oldest request's arrival: under load the queue has already waited.
                    deadline = entry.enqueued_at + delay_s
                batch.append(entry)
                largest, total = new_largest, total + entry.cost
        finally:
            self._items.extendleft(reversed(deferred))
        return batch, skipped


class DynamicBatcher(Generic[ItemT, ResultT]):
    """Batches items for ``handlers`` (one per runner instance, each run in its own worker thread).

    >>> batcher = DynamicBatcher([runner_batch_fn], max_batch_size=32, max_queue_delay_ms=0)
    >>> await batcher.start(); result = await batcher.submit(item, cost=len(item.points))
    """

    def __init__(
        self,
        handlers: Sequence[Callable[[list[ItemT]], list[ResultT]]],
        *,
        max_batch_size: int = 32,
        max_queue_delay_ms: float = 0.0,
        max_points_per_batch: int | None = None,
        max_queue_size: int = 256,
        request_timeout_s: float = 30.0,
        name: str = "model",
        observer: BatchObserver | None = None,
        padded: bool = True,
    ):
        if not handlers:
            raise ValueError("DynamicBatcher needs at least one handler (one per instance)")
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_queue_delay_s = max_queue_delay_ms / 1000.0
        self.max_points_per_batch = max_points_per_batch or 2**62
        self.request_timeout_s = request_timeout_s
        self.observer = observer
        self.padded = padded
        self._handlers = list(handlers)
        self._max_queue_size = max_queue_size
        self._queue: _BatchQueue | None = None
        self._collect_lock: asyncio.Lock | None = None
        self._workers: list[asyncio.Task] = []
        self._executors: list[ThreadPoolExecutor] = []
        self._busy = 0

    # -- public API ---------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._queue is not None and not self._queue.closed

    @property
    def queue_depth(self) -> int:
        return len(self._queue) if self._queue is not None else 0

    @property
    def busy_instances(self) -> int:
        return self._busy

    async def start(self) -> None:
        """Start one worker task (and thread) per handler on the running event loop."""
        if self._queue is not None:
            return
        self._queue = _BatchQueue(self._max_queue_size)
        self._collect_lock = asyncio.Lock()
        for index in range(len(self._handlers)):
            executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"batch-{self.name}-{index}")
            self._executors.append(executor)
            self._workers.append(asyncio.create_task(self._worker(index), name=f"batcher-{self.name}-{index}"))

    async def submit(self, item: ItemT, cost: int = 1, group: Any = None) -> ResultT:
        """Queue ``item`` and wait for its answer; it shares a batch only with items of the same ``group``.

        Raises :class:`ServiceUnavailableError` at once when the queue is full or the batcher stopped,
        :class:`RequestTimeoutError` after ``request_timeout_s``, or whatever the batch's handler raised.
        Cancelling the caller (a client that disconnected) removes the item before it is computed.
        """
        queue = self._queue
        if queue is None or queue.closed:
            raise ServiceUnavailableError(f"model {self.name!r} is not accepting requests (not running)")
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        queue.put_nowait(_Queued(item, max(int(cost), 1), future, group), self.name)
        try:
            return await asyncio.wait_for(future, self.request_timeout_s)
        except TimeoutError:
            self._report_dropped("timeout", 1)
            raise RequestTimeoutError(
                f"model {self.name!r} did not answer within request_timeout_s={self.request_timeout_s:g}"
            ) from None

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Refuse new items, finish the queued ones (up to ``timeout_s``), then stop the workers and threads."""
        if self._queue is None:
            return
        self._queue.close()
        done, pending = await asyncio.wait(self._workers, timeout=timeout_s) if self._workers else (set(), set())
        for task in pending:
            task.cancel()
        for entry in list(self._queue._items):
            if not entry.future.done():
                entry.future.set_exception(ServiceUnavailableError(f"model {self.name!r} stopped"))
        for executor in self._executors:
            executor.shutdown(wait=False, cancel_futures=True)
        self._workers.clear()
        self._executors.clear()

    # -- workers ------------------------------------------------------------------------------------------
    async def _worker(self, index: int) -> None:
        loop = asyncio.get_running_loop()
        handler, executor = self._handlers[index], self._executors[index]
        assert self._queue is not None and self._collect_lock is not None
        while True:
            async with self._collect_lock:
                batch, skipped = await self._queue.next_batch(
                    self.max_batch_size, self.max_queue_delay_s, self.max_points_per_batch, self.padded
                )
            if skipped:
                self._report_dropped("cancelled", skipped)
            if not batch:
                if self._queue.closed:
                    return
                continue
            live = [entry for entry in batch if not entry.future.done()]
            if len(live) < len(batch):
                self._report_dropped("cancelled", len(batch) - len(live))
            if not live:
                continue
            started = time.monotonic()
            waits = [started - entry.enqueued_at for entry in live]
            self._busy += 1
            try:
                results = await loop.run_in_executor(executor, handler, [entry.item for entry in live])
                if not isinstance(results, list) or len(results) != len(live):
                    got = len(results) if isinstance(results, list) else type(results).__name__
                    raise EngineError(f"batch handler returned {got} results for {len(live)} requests")
            except Exception as exc:  # noqa: BLE001 - a failing batch fails its own requests, never the worker
                error = exc if isinstance(exc, PointServeError) else EngineError(f"inference failed: {exc!r}")
                if not isinstance(exc, PointServeError):
                    log.error("batch of %d for %s failed", len(live), self.name, exc_info=exc)
                for entry in live:
                    if not entry.future.done():
                        entry.future.set_exception(error)
                self._report_batch(len(live), waits, time.monotonic() - started, ok=False)
                continue
            finally:
                self._busy -= 1
            for entry, result in zip(live, results, strict=True):
                if not entry.future.done():
                    entry.future.set_result(result)
            self._report_batch(len(live), waits, time.monotonic() - started, ok=True)

    def _report_batch(self, size: int, waits: list[float], compute_s: float, ok: bool) -> None:
        if self.observer is not None:
            self.observer.on_batch(size, waits, compute_s, ok)

    def _report_dropped(self, reason: str, count: int) -> None:
        if self.observer is not None:
            self.observer.on_dropped(reason, count)
