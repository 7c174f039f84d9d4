"""The yardstick for `pointserve loadgen`: the served variant run directly (no HTTP) in the generator's process.

Feeds: the graph's named inputs for normalised random clouds, made by the model family's preprocessing and
collate policy (PointNet: points (B, N, C) float32, + (B,) int64 categories for part segmentation).
"""

from __future__ import annotations

from pointserve.bench.synthetic import make_clouds


class RawBaseline:
    """One loaded runner of ``variant``; measures clouds per second of ``runner.infer`` at a batch size."""

    def __init__(
        self,
        repository: str,
        model: str,
        variant: str | None,
        *,
        num_points: int,
        max_batch: int,
        threads: int | None = None,
        spin_wait: bool = True,
    ):
        from pointserve.data.transforms import normalize
        from pointserve.engines import create_runner
        from pointserve.models.registry import get_spec
        from pointserve.repository import Repository

        model_version = Repository(repository).open(model)
        card = model_version.card
        self.spec = get_spec(card.architecture)
        self.card = card
        self.runner = create_runner(
            model_version, variant, max_batch=max_batch, threads=threads, spin_wait=spin_wait
        ).load()
        self.clouds = [
            normalize(c, card.normalization) for c in make_clouds(max_batch, num_points, card.in_channels, seed=1)
        ]
        self.categories = [0] * max_batch if card.needs_category else None

    def feeds(self, batch: int) -> dict:
        """The graph's inputs for the first ``batch`` clouds (category 0 for part segmentation)."""
        from pointserve.models.collate import batch_inputs

        categories = self.categories[:batch] if self.categories is not None else None
        feeds, _ = batch_inputs(self.spec, self.card, self.clouds[:batch], categories)
        return feeds

    def clouds_per_s(self, batch: int, seconds: float) -> float:
        from pointserve.bench.timing import time_callable

        feeds = self.feeds(batch)
        timing = time_callable(
            lambda: self.runner.infer(feeds),
            batch=batch,
            warmup=2,
            repeats=3,
            min_total_s=seconds,
            max_total_s=seconds * 3,
        )
        return timing.clouds_per_s

    def sweep(self, batch_sizes: list[int], seconds: float) -> dict[int, float]:
        return {size: self.clouds_per_s(size, seconds) for size in batch_sizes}

    def close(self) -> None:
        self.runner.close()


__all__ = ["RawBaseline"]
