"""The dynamic batcher: exact padding with a real onnxruntime runner, order, limits, and failure semantics."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
from repo_builder import CLASSIFIER, PART_SEGMENTER

from pointserve.card import ModelCard
from pointserve.engines import create_runner
from pointserve.engines.base import InputLimits, Runner
from pointserve.errors import EngineError, RequestTimeoutError, ServiceUnavailableError
from pointserve.models import get_spec
from pointserve.models.collate import cloud_inputs
from pointserve.repository import Repository
from pointserve.service.core.batcher import DynamicBatcher
from pointserve.service.core.clouds import Cloud, prepare_cloud, run_batch

# The gated runner's model: a classifier with one "class", whose logit is the cloud's first x.
TAG_CARD = ModelCard(
    architecture="pointnet_cls", config={"num_classes": 1}, task="classification", class_names=["x"], num_points=4
)
TAG_SPEC = get_spec(TAG_CARD.architecture)


class Recorder:
    """A BatchObserver that keeps what it is told."""

    def __init__(self):
        self.sizes: list[int] = []
        self.outcomes: list[bool] = []
        self.dropped: dict[str, int] = {}

    def on_batch(self, size, queue_wait_s, compute_s, ok):
        assert len(queue_wait_s) == size and compute_s >= 0
        self.sizes.append(size)
        self.outcomes.append(ok)

    def on_dropped(self, reason, count):
        self.dropped[reason] = self.dropped.get(reason, 0) + count


class GatedRunner(Runner):
    """A real Runner whose compute waits for a gate and records every cloud it saw (by its first x value);
    a cloud whose first x is negative makes the whole batch fail."""

    backend = "test"

    def __init__(self):
        limits = InputLimits(dims={"batch": (1, 64), "num_points": (1, 10_000)})
        super().__init__(TAG_SPEC.inputs(TAG_CARD), TAG_SPEC.outputs(TAG_CARD), limits)
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.seen: list[float] = []

    def _load_impl(self):
        pass

    def _infer_impl(self, feeds):
        points = feeds["points"]
        self.entered.set()
        assert self.gate.wait(10), "test forgot to open the gate"
        self.seen.extend(float(x) for x in points[:, 0, 0])
        if (points[:, 0, 0] < 0).any():
            raise RuntimeError("poisoned cloud")
        return {"logits": points[:, 0, :1].copy()}  # each cloud's answer is its own first x


def tagged(tag: float, n: int = 4) -> Cloud:
    points = np.full((n, 3), tag, dtype=np.float32)
    return Cloud(points, inputs=cloud_inputs(TAG_SPEC, TAG_CARD, points))


def gated_batcher(runner: GatedRunner, recorder: Recorder, **kwargs) -> DynamicBatcher:
    options = {"max_batch_size": 8, "max_queue_delay_ms": 1, "max_queue_size": 16, "request_timeout_s": 10}
    options.update(kwargs)
    return DynamicBatcher([lambda clouds: run_batch(TAG_SPEC, TAG_CARD, runner, clouds)], observer=recorder, **options)


@pytest.mark.parametrize("model", [CLASSIFIER, PART_SEGMENTER])
def test_padding_by_repetition_gives_exactly_the_unbatched_outputs(repository, model):
    model_version = Repository(repository).open(model)
    card = model_version.card
    spec = get_spec(card.architecture)
    assert spec.collate == "repeat"
    rng = np.random.default_rng(0)
    clouds = [
        prepare_cloud(
            rng.standard_normal((n, 3)).astype(np.float32),
            max_processed_points=4096,
            category=i % 2 if card.needs_category else None,
            spec=spec,
            card=card,
        )
        for i, n in enumerate((17, 64, 33, 50))
    ]
    with create_runner(model_version, "fp32", max_batch=8, threads=1) as runner:
        recorder = Recorder()

        def handler(batch: list[Cloud]) -> list[np.ndarray]:
            return run_batch(spec, card, runner, batch)

        async def main():
            batcher = DynamicBatcher([handler], max_batch_size=8, max_queue_delay_ms=200, observer=recorder)
            await batcher.start()
            results = await asyncio.gather(*(batcher.submit(c, c.cost) for c in clouds))
            await batcher.stop()
            return results

        batched = asyncio.run(main())
        assert recorder.sizes == [len(clouds)]  # one batch, clouds of four sizes padded to 64
        for cloud, got in zip(clouds, batched, strict=True):
            # The cloud on its own: its arrays with a batch axis of one, nothing padded.
            alone = runner.infer({name: np.asarray(array)[None] for name, array in cloud.inputs.items()})["logits"][0]
            per_cloud = (card.num_outputs,) if card.task == "classification" else (cloud.cost, card.num_outputs)
            assert got.shape == alone.shape == per_cloud
            # Identical up to float32 rounding inside the GEMMs of a different batch shape (measured <= 5e-8).
            np.testing.assert_allclose(got, alone, rtol=0, atol=1e-6)
            assert (got.argmax(-1) == alone.argmax(-1)).all()


def test_answers_go_back_to_their_own_requests_in_order():
    def handler(items: list[int]) -> list[int]:
        return [item * 10 for item in items]

    recorder = Recorder()

    async def main():
        batcher = DynamicBatcher([handler], max_batch_size=8, max_queue_delay_ms=5, observer=recorder)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(100)))
        await batcher.stop()
        return results

    assert asyncio.run(main()) == [i * 10 for i in range(100)]
    assert max(recorder.sizes) <= 8 and sum(recorder.sizes) == 100 and len(recorder.sizes) < 100


def test_max_points_per_batch_limits_the_padded_batch():
    batches: list[list[int]] = []

    def handler(items: list[int]) -> list[int]:
        batches.append(items)
        return items

    async def main():
        batcher = DynamicBatcher([handler], max_batch_size=64, max_queue_delay_ms=50, max_points_per_batch=1000)
        await batcher.start()
        costs = [100] * 6 + [400, 100, 100]
        await asyncio.gather(*(batcher.submit(cost, cost) for cost in costs))
        await batcher.stop()

    asyncio.run(main())
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(batch) <= 1000, batch
    assert sorted(x for b in batches for x in b) == sorted([100] * 6 + [400, 100, 100])


def test_a_full_queue_is_refused_at_once_and_the_queue_drains_after():
    runner, recorder = GatedRunner().load(), Recorder()

    async def main():
        batcher = gated_batcher(runner, recorder, max_batch_size=1, max_queue_size=2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(tagged(1.0)))
        await asyncio.to_thread(runner.entered.wait, 5)  # the worker is computing the first cloud
        waiting = [asyncio.ensure_future(batcher.submit(tagged(x))) for x in (2.0, 3.0)]
        await asyncio.sleep(0.01)
        started = time.perf_counter()
        with pytest.raises(ServiceUnavailableError, match="overloaded"):
            await batcher.submit(tagged(4.0))
        refused_after_s = time.perf_counter() - started
        runner.gate.set()
        answers = await asyncio.gather(first, *waiting)
        await batcher.stop()
        return refused_after_s, answers

    refused_after_s, answers = asyncio.run(main())
    assert refused_after_s < 0.05
    assert [float(a[0]) for a in answers] == [1.0, 2.0, 3.0]
    assert runner.seen == [1.0, 2.0, 3.0]


def test_past_its_timeout_a_request_gets_504_and_is_never_computed():
    runner, recorder = GatedRunner().load(), Recorder()

    async def main():
        batcher = gated_batcher(runner, recorder, max_batch_size=1, request_timeout_s=0.2)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(tagged(1.0)))
        await asyncio.to_thread(runner.entered.wait, 5)
        with pytest.raises(RequestTimeoutError, match="request_timeout_s=0.2"):
            await batcher.submit(tagged(2.0))
        runner.gate.set()
        with pytest.raises(RequestTimeoutError):  # the first one was computing past its deadline too
            await first
        assert float((await batcher.submit(tagged(3.0)))[0]) == 3.0
        await batcher.stop()

    asyncio.run(main())
    assert 2.0 not in runner.seen and runner.seen[-1] == 3.0
    assert recorder.dropped == {"timeout": 2, "cancelled": 1}


def test_a_cancelled_request_is_dropped_before_compute():
    runner, recorder = GatedRunner().load(), Recorder()

    async def main():
        batcher = gated_batcher(runner, recorder, max_batch_size=4)
        await batcher.start()
        first = asyncio.ensure_future(batcher.submit(tagged(1.0)))
        await asyncio.to_thread(runner.entered.wait, 5)
        leaving = asyncio.ensure_future(batcher.submit(tagged(2.0)))  # its client will disconnect
        staying = asyncio.ensure_future(batcher.submit(tagged(3.0)))
        await asyncio.sleep(0.01)
        leaving.cancel()
        runner.gate.set()
        results = await asyncio.gather(first, staying)
        await batcher.stop()
        return results, leaving.cancelled()

    results, cancelled = asyncio.run(main())
    assert cancelled and [float(r[0]) for r in results] == [1.0, 3.0]
    assert runner.seen == [1.0, 3.0] and recorder.dropped == {"cancelled": 1}


def test_a_failing_batch_fails_only_its_own_requests_and_the_worker_goes_on():
    runner, recorder = GatedRunner().load(), Recorder()
    runner.gate.set()

    async def main():
        batcher = gated_batcher(runner, recorder, max_batch_size=4, max_queue_delay_ms=100)
        await batcher.start()
        poisoned = await asyncio.gather(*(batcher.submit(tagged(x)) for x in (1.0, -1.0, 2.0)), return_exceptions=True)
        healthy = await asyncio.gather(*(batcher.submit(tagged(x)) for x in (4.0, 5.0)))
        await batcher.stop()
        return poisoned, healthy

    poisoned, healthy = asyncio.run(main())
    assert all(isinstance(e, EngineError) and "poisoned cloud" in str(e) for e in poisoned)
    assert [float(h[0]) for h in healthy] == [4.0, 5.0]
    assert recorder.outcomes == [False, True]


def test_a_handler_must_answer_every_request():
    async def main():
        batcher = DynamicBatcher([lambda items: items[:-1]], max_batch_size=4, max_queue_delay_ms=50)
        await batcher.start()
        results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
        await batcher.stop()
        return results

    results = asyncio.run(main())
    assert all(isinstance(r, EngineError) and "2 results for 3 requests" in str(r) for r in results)


def test_two_instances_compute_concurrently():
    active, peak, lock = [0], [0], threading.Lock()

    def slow(items):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return items

    async def main():
        batcher = DynamicBatcher([slow, slow], max_batch_size=2, max_queue_delay_ms=0)
        await batcher.start()
        await asyncio.gather(*(batcher.submit(i) for i in range(8)))
        await batcher.stop()

    asyncio.run(main())
    assert peak[0] == 2


def test_stop_finishes_queued_requests_then_refuses_new_ones():
    async def main():
        batcher = DynamicBatcher([lambda items: items], max_batch_size=2, max_queue_delay_ms=20)
        await batcher.start()
        pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(5)]
        await asyncio.sleep(0)
        await batcher.stop(timeout_s=5)
        with pytest.raises(ServiceUnavailableError):
            await batcher.submit(9)
        return await asyncio.gather(*pending)

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_grouped_items_share_a_batch_only_with_their_own_group_and_keep_their_order():
    """The ``bucket`` policy's rule: same-size clouds only, the others wait their turn in arrival order."""
    batches: list[list[tuple[int, int]]] = []

    def handler(items):
        batches.append(list(items))
        return [item[1] for item in items]

    async def run():
        batcher = DynamicBatcher([handler], max_batch_size=8, max_queue_delay_ms=30)
        await batcher.start()
        try:
            items = [(size, index) for index, size in enumerate([64, 32, 64, 32, 16, 64])]
            results = await asyncio.gather(*(batcher.submit(item, cost=item[0], group=item[0]) for item in items))
        finally:
            await batcher.stop()
        return results

    assert asyncio.run(run()) == [0, 1, 2, 3, 4, 5]
    assert all(len({size for size, _ in batch}) == 1 for batch in batches), batches
    assert [[index for _, index in batch] for batch in batches] == [[0, 2, 5], [1, 3], [4]]


def test_unpadded_cost_sums_the_clouds():
    """With ``padded=False`` (concatenated clouds) the points budget counts the sum, not B x the largest."""
    batches: list[list[int]] = []

    def handler(items):
        batches.append(list(items))
        return items

    async def run(padded: bool):
        batches.clear()
        batcher = DynamicBatcher(
            [handler], max_batch_size=8, max_queue_delay_ms=30, max_points_per_batch=100, padded=padded
        )
        await batcher.start()
        try:
            await asyncio.gather(*(batcher.submit(cost, cost=cost) for cost in (60, 10, 10, 10)))
        finally:
            await batcher.stop()
        return [len(b) for b in batches]

    assert asyncio.run(run(padded=False)) == [4]  # 60 + 10 + 10 + 10 = 90 <= 100
    assert asyncio.run(run(padded=True)) == [1, 3]  # 2 x 60 > 100: the 60-point cloud goes alone
