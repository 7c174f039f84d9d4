"""The yardstick for `pointserve loadgen`: the served variant run directly (no HTTP) in the generator's process.

Shapes: batches (B, N, C) float32 of normalised random clouds (+ (B,) int64 categories for part segmentation).
"""

from __future__ import annotations

from pointserve.bench.loadgen import make_clouds


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
    ):
        import numpy as np

        from pointserve.data.transforms import normalize
        from pointserve.engines import create_runner
        from pointserve.repository import Repository

        model_version = Repository(repository).open(model)
        card = model_version.card
        self.runner = create_runner(model_version, variant, max_batch=max_batch, threads=threads).load()
        clouds = make_clouds(max_batch, num_points, card.in_channels, seed=1)
        self.batch = np.stack([normalize(c, card.normalization) for c in clouds])
        self.category = np.zeros(max_batch, dtype=np.int64) if card.needs_category else None

    def clouds_per_s(self, batch: int, seconds: float) -> float:
        from pointserve.bench.timing import time_callable

        category = self.category[:batch] if self.category is not None else None
        timing = time_callable(
            lambda: self.runner.infer(self.batch[:batch], category),
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
