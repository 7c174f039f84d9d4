"""The one ``Runner`` protocol that the service and the benchmark talk to.

Like Polygraphy's runners: the public methods (:meth:`Runner.load`, :meth:`Runner.infer`,
:meth:`Runner.close`) do the checks, state and timing; each backend fills the private ``_load_impl``,
``_infer_impl`` and ``_close_impl``. Backends import their runtime inside ``_load_impl`` (lazily), so
``import pointserve.engines`` needs neither torch nor TensorRT.

Shapes:
    points:   (B, N, C) float32
    category: (B,) int64, part segmentation only
    logits:   (B, K) classification, (B, N, P) segmentation, float32
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from pointserve.errors import EngineError, InputError


@dataclass(frozen=True)
class InputLimits:
    """What an engine accepts: batch up to ``max_batch``, points per cloud in [min_points, max_points]."""

    max_batch: int
    min_points: int
    max_points: int
    channels: int = 3
    needs_category: bool = False
    num_categories: int = 0


class Runner(ABC):
    """Runs one variant of one model. Not thread-safe unless a backend says so; one per worker."""

    backend: str = "abstract"

    def __init__(self, limits: InputLimits, name: str = ""):
        self.limits = limits
        self.name = name or self.backend
        self.is_active = False
        self.last_inference_time_s: float | None = None

    # -- public API --------------------------------------------------------------------------------
    def load(self) -> Runner:
        if not self.is_active:
            self._load_impl()
            self.is_active = True
        return self

    def infer(self, points: np.ndarray, category: np.ndarray | None = None) -> np.ndarray:
        if not self.is_active:
            raise EngineError(f"runner {self.name!r} is not loaded; call load() first")
        points, category = self.check_inputs(points, category)
        start = time.perf_counter()
        logits = self._infer_impl(points, category)
        self.last_inference_time_s = time.perf_counter() - start
        return logits

    def close(self) -> None:
        if self.is_active:
            self._close_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    def check_inputs(self, points: np.ndarray, category: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Validate against :attr:`limits`; returns contiguous float32 points and int64 categories."""
        lim = self.limits
        points = np.ascontiguousarray(points, dtype=np.float32)
        if points.ndim != 3:
            raise InputError(f"points must be (B, N, C), got shape {points.shape}")
        batch, num_points, channels = points.shape
        if channels != lim.channels:
            raise InputError(f"points have {channels} channels per point, the model takes {lim.channels}")
        if not 1 <= batch <= lim.max_batch:
            raise InputError(f"batch of {batch} is outside [1, {lim.max_batch}]")
        if not lim.min_points <= num_points <= lim.max_points:
            raise InputError(f"{num_points} points per cloud is outside [{lim.min_points}, {lim.max_points}]")
        if lim.needs_category:
            if category is None:
                raise InputError("this model needs the object category")
            category = np.ascontiguousarray(category, dtype=np.int64).reshape(-1)
            if category.shape != (batch,):
                raise InputError(f"category must have one entry per cloud ({batch}), got {category.shape}")
            if lim.num_categories and ((category < 0) | (category >= lim.num_categories)).any():
                raise InputError(f"category out of range [0, {lim.num_categories})")
        else:
            category = None
        return points, category

    # -- backend hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _infer_impl(self, points: np.ndarray, category: np.ndarray | None) -> np.ndarray: ...

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass
