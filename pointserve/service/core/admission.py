"""Admission control: how many requests a model takes in, decided on the request line, before any body is read.

A model admits at most ``limit`` requests at a time (uploading, queued or computing). The limit comes from a
latency budget: the work the model can finish within ``latency_budget_s`` at its measured throughput. A request
that finds the model full waits in a waiting room — its body unread, no CPU spent on it — for up to
``max_wait_s``; if no slot frees in that time it is refused with 503 and a ``Retry-After`` equal to the time the
admitted and waiting work needs to drain. A refusal costs microseconds of server CPU, so an overloaded model
spends its cores on the work it has accepted rather than on work it will refuse anyway.

The anchors: Triton's dynamic-batcher queue policy (``max_queue_size``, ``default_timeout_microseconds``,
``timeout_action: REJECT``) bounds the queue and refuses past it or past the timeout; Ray Serve's
``max_ongoing_requests`` (the admitted limit) and ``max_queued_requests`` (the waiting room) bound a replica
and answer 503 past them. Here the bounds are not constants to tune but follow from the model's own batch
profile (:class:`BatchProfile`, measured when the model starts) and the budget.

Shapes of the numbers:
    batch profile:  seconds per batch of ``b`` clouds at the model's trained point count, b = 1, 2, 4, ...
    preferred batch: the smallest batch within 5 % of the best clouds/s (Triton's ``preferred_batch_size``)
    drain rate:     instances x preferred / seconds(preferred), refreshed from the batches served under load
    budget:         latency_budget_ms, else the time of 4 preferred batches, at least 100 ms
    limit:          ceil(drain rate x budget), at least one preferred batch per instance
    wait:           max_admission_wait_ms, else 5 budgets, at least 500 ms
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Batches smaller than this share of the preferred size say little about the drain rate under load.
_LOADED_SHARE = 0.5
_EWMA_WEIGHT = 0.1
# Within this share of the best clouds/s, a smaller batch is as good and answers sooner.
PREFERRED_TOLERANCE = 0.05
# The default budget: the time of this many preferred batches (one computing, the rest waiting, per instance),
# and at least MIN_BUDGET_S: below it, ordinary pauses of the event loop (a large answer written, a garbage
# collection) would leave the runners idle with nothing admitted to compute next.
BUDGET_BATCHES = 4
MIN_BUDGET_S = 0.1
# The longest a request waits in the room for a slot: a few budgets. Shorter, and clients that retry a 503 at
# once spin (their retries cost CPU on both sides); longer, and a refusal comes late.
WAIT_BUDGETS = 5
MIN_WAIT_S = 0.5


@dataclass(frozen=True)
class BatchProfile:
    """Measured seconds per batch, by batch size (clouds of ``num_points`` points)."""

    seconds_by_batch: dict[int, float]
    num_points: int

    def clouds_per_s(self, batch: int) -> float:
        return batch / max(self.seconds_for(batch), 1e-9)

    def seconds_for(self, batch: int) -> float:
        """Measured seconds for ``batch`` clouds, interpolated between measured sizes (linear), and past the
        largest one at its per-cloud time."""
        sizes = sorted(self.seconds_by_batch)
        if batch in self.seconds_by_batch:
            return self.seconds_by_batch[batch]
        if batch > sizes[-1]:
            return self.seconds_by_batch[sizes[-1]] * batch / sizes[-1]
        above = next(b for b in sizes if b > batch)
        below = max((b for b in sizes if b < batch), default=None)
        if below is None:
            return self.seconds_by_batch[above] * batch / above
        share = (batch - below) / (above - below)
        return self.seconds_by_batch[below] + share * (self.seconds_by_batch[above] - self.seconds_by_batch[below])

    @property
    def preferred_batch_size(self) -> int:
        """The smallest measured batch within :data:`PREFERRED_TOLERANCE` of the best clouds per second."""
        best = max(self.clouds_per_s(b) for b in self.seconds_by_batch)
        return min(b for b in self.seconds_by_batch if self.clouds_per_s(b) >= (1 - PREFERRED_TOLERANCE) * best)

    @property
    def largest_efficient_batch_size(self) -> int:
        """The largest measured batch within :data:`PREFERRED_TOLERANCE` of the best clouds per second."""
        best = max(self.clouds_per_s(b) for b in self.seconds_by_batch)
        return max(b for b in self.seconds_by_batch if self.clouds_per_s(b) >= (1 - PREFERRED_TOLERANCE) * best)

    def as_dict(self) -> dict:
        return {
            "num_points": self.num_points,
            "batch_ms": {str(b): round(s * 1e3, 3) for b, s in sorted(self.seconds_by_batch.items())},
            "clouds_per_s": {str(b): round(self.clouds_per_s(b), 1) for b in sorted(self.seconds_by_batch)},
            "preferred_batch_size": self.preferred_batch_size,
            "largest_efficient_batch_size": self.largest_efficient_batch_size,
        }


@dataclass
class AdmissionControl:
    """One model's admission gate: ``limit`` requests admitted, a waiting room in front of them.

    A request that finds the model full waits — its body unread, costing a future and a timer — for a slot,
    at most ``max_wait_s``; then it is refused. The room is first come, first served, until it has not been
    empty for a whole budget: the model is overloaded, and the newest waiter gets the next slot (adaptive LIFO,
    as in Facebook's "Fail at scale": under overload the requests that are still fresh are the ones worth
    serving, and the stale ones are refused after their wait instead of being served late).

    >>> gate = AdmissionControl(instances=1, preferred_batch_size=4, batch_s=0.02)
    >>> await gate.admit()   # True: 1 of 20 admitted (budget: 100 ms, at least 4 batches, at 200 clouds/s)
    >>> gate.release()       # when the request has its answer (or failed): the slot goes to a waiter
    """

    instances: int
    preferred_batch_size: int
    batch_s: float  # seconds per preferred batch, from the start-up profile
    latency_budget_s: float | None = None  # None: BUDGET_BATCHES preferred batches, at least MIN_BUDGET_S
    max_admitted: int | None = None  # a fixed limit instead of the derived one
    max_wait_s: float | None = None  # None: WAIT_BUDGETS budgets, at least MIN_WAIT_S
    admitted: int = 0
    refused: int = 0
    _cloud_s: float = field(init=False)  # EWMA of seconds per cloud in loaded batches (one instance)
    _waiting: deque = field(init=False, default_factory=deque)
    _room_busy_since: float = field(init=False, default=0.0)

    def __post_init__(self) -> None:
        self._cloud_s = max(self.batch_s, 1e-9) / max(self.preferred_batch_size, 1)

    # -- what it decides ----------------------------------------------------------------------------------
    @property
    def budget_s(self) -> float:
        if self.latency_budget_s is not None:
            return self.latency_budget_s
        return max(MIN_BUDGET_S, BUDGET_BATCHES * self.preferred_batch_size * self._cloud_s)

    @property
    def wait_s(self) -> float:
        return self.max_wait_s if self.max_wait_s is not None else max(MIN_WAIT_S, WAIT_BUDGETS * self.budget_s)

    @property
    def drain_rate(self) -> float:
        """Clouds per second the model finishes under load (all instances)."""
        return self.instances / self._cloud_s

    @property
    def limit(self) -> int:
        if self.max_admitted is not None:
            return self.max_admitted
        return max(self.instances * self.preferred_batch_size, math.ceil(self.drain_rate * self.budget_s))

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def overloaded(self, now: float | None = None) -> bool:
        """The waiting room has not been empty for a whole budget."""
        now = time.monotonic() if now is None else now
        return bool(self._waiting) and now - self._room_busy_since > self.budget_s

    def try_admit(self) -> bool:
        """Admit at once if there is a free slot and nobody waits for one (no await: the fast path)."""
        if self.admitted < self.limit and not self._waiting:
            self.admitted += 1
            return True
        return False

    async def admit(self) -> bool:
        """Admit the request, after a wait in the room if need be; False (counted as refused) if no slot came
        within ``wait_s``."""
        return self.try_admit() or await self.wait_for_slot()

    async def wait_for_slot(self) -> bool:
        """The slow path of :meth:`admit` (the middleware tries :meth:`try_admit` first): wait in the room. A
        cancelled waiter leaves it; a slot handed to it just before is given back."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self._waiting:
            self._room_busy_since = time.monotonic()
        self._waiting.append(future)
        timer = loop.call_later(self.wait_s, self._expire, future)
        try:
            admitted = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.release()
            raise
        finally:
            timer.cancel()
        if not admitted:
            self.refused += 1
        return admitted

    def _expire(self, future: asyncio.Future) -> None:
        if not future.done():
            self._waiting.remove(future)
            future.set_result(False)

    def release(self) -> None:
        """A request is done: its slot goes to a waiter (the oldest, or the newest when overloaded)."""
        overloaded = self.overloaded()
        while self._waiting:
            future = self._waiting.pop() if overloaded else self._waiting.popleft()
            if not future.done():
                if not self._waiting:
                    self._room_busy_since = 0.0
                future.set_result(True)  # the slot changes hands: admitted stays the same
                return
        self.admitted -= 1

    def drain_s(self) -> float:
        """Seconds the admitted and waiting work needs at the drain rate."""
        return (self.admitted + len(self._waiting)) / self.drain_rate

    def retry_after_s(self) -> int:
        """``Retry-After`` for a refusal: the drain time, rounded up to whole seconds (HTTP's unit), at least 1."""
        return max(1, math.ceil(self.drain_s()))

    def refusal_message(self, model: str) -> str:
        return (
            f"model {model!r} is at capacity: {self.admitted} requests admitted (limit {self.limit}) and "
            f"{len(self._waiting)} waiting, about {self.drain_s() * 1e3:.0f} ms of work at "
            f"{self.drain_rate:.0f} clouds/s; no slot within {self.wait_s * 1e3:.0f} ms; retry after "
            f"{self.retry_after_s()} s"
        )

    # -- what it learns -----------------------------------------------------------------------------------
    def observe_batch(self, size: int, compute_s: float) -> None:
        """A served batch: a loaded one (near the preferred size) refreshes the per-cloud time."""
        if size >= max(1, _LOADED_SHARE * self.preferred_batch_size) and compute_s > 0:
            self._cloud_s += _EWMA_WEIGHT * (compute_s / size - self._cloud_s)

    # BatchObserver: the batcher reports every batch it ran.
    def on_batch(self, size: int, queue_wait_s, compute_s: float, ok: bool) -> None:
        if ok:
            self.observe_batch(size, compute_s)

    def on_dropped(self, reason: str, count: int) -> None:
        pass

    def as_dict(self) -> dict:
        return {
            "admitted": self.admitted,
            "limit": self.limit,
            "refused": self.refused,
            "waiting": len(self._waiting),
            "max_wait_ms": round(self.wait_s * 1e3, 3),
            "latency_budget_ms": round(self.budget_s * 1e3, 3),
            "drain_rate_clouds_per_s": round(self.drain_rate, 1),
            "preferred_batch_size": self.preferred_batch_size,
        }


def measure_batch_profile(
    run: Callable[[int], object], *, max_batch: int, num_points: int, max_seconds: float = 3.0, repeats: int = 3
) -> BatchProfile:
    """Time ``run(b)`` (one batch of ``b`` clouds) for b = 1, 2, 4, ... up to ``max_batch``: the fastest of
    ``repeats`` runs after one warm-up run. Stops doubling once the measuring has taken ``max_seconds`` or
    the clouds per second fell well below the best (larger batches then only cost latency)."""
    seconds: dict[int, float] = {}
    started = time.perf_counter()
    run(1)  # warm-up: first-run allocations and lazy initialisation
    batch = 1
    while True:
        times = []
        for _ in range(repeats):
            tick = time.perf_counter()
            run(batch)
            times.append(time.perf_counter() - tick)
        seconds[batch] = min(times)  # the cost without the machine's interruptions (the median is noisier)
        best = max(b / s for b, s in seconds.items())
        if batch >= max_batch or time.perf_counter() - started > max_seconds or batch / seconds[batch] < 0.8 * best:
            break
        batch = min(batch * 2, max_batch)
    return BatchProfile(seconds, num_points)


__all__ = ["BUDGET_BATCHES", "AdmissionControl", "BatchProfile", "measure_batch_profile"]
