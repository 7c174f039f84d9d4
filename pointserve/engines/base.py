"""The one ``Runner`` protocol that the service, the bench and variant evaluation talk to.

Like Polygraphy's runners: the public methods (:meth:`Runner.load`, :meth:`Runner.infer`,
:meth:`Runner.close`) do the checks, state and timing; each backend fills the private ``_load_impl``,
``_infer_impl`` and ``_close_impl``. Backends import their runtime inside ``_load_impl`` (lazily), so
``import pointserve.engines`` needs neither torch nor TensorRT.

A runner takes and gives named arrays, checked against the graph's tensor specs (the manifest's
``inputs`` / ``outputs``, i.e. the architecture spec's): every input present and no other, the declared
dtype (converted when it can be), the declared rank and fixed dimensions, and every symbolic dimension
the same wherever it appears and within :class:`InputLimits`.

Shapes (PointNet, for example):
    inputs:  {"points": (B, N, C) float32, "category": (B,) int64 (part segmentation only)}
    outputs: {"logits": (B, K) or (B, N, P) float32}
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pointserve.errors import EngineError, InputError
from pointserve.models.spec import TensorSpec

Feeds = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class InputLimits:
    """What an engine accepts: each symbolic dimension within ``[min, max]`` (``dims``), and integer inputs
    whose values index something within ``[0, bound)`` (``value_bounds``, e.g. the category of part
    segmentation)."""

    dims: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    value_bounds: Mapping[str, int] = field(default_factory=dict)

    def range_of(self, dim: str) -> tuple[int, int]:
        return self.dims.get(dim, (1, 2**62))

    @property
    def max_batch(self) -> int:
        return self.range_of("batch")[1]


def check_feeds(
    inputs: Feeds, specs: Sequence[TensorSpec], limits: InputLimits, name: str = "model"
) -> dict[str, np.ndarray]:
    """Validate named arrays against the graph's input specs; returns contiguous arrays of the spec dtypes.

    Raises :class:`InputError` naming the input and the problem.
    """
    expected = {spec.name for spec in specs}
    unknown = sorted(set(inputs) - expected)
    if unknown:
        raise InputError(f"{name}: unknown input(s) {', '.join(unknown)}; it takes {', '.join(sorted(expected))}")
    sizes: dict[str, tuple[int, str]] = {}
    checked: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.name not in inputs:
            raise InputError(f"{name}: missing input {spec.name!r} {spec.dtype} {spec.shape}")
        array = np.asarray(inputs[spec.name])
        want = spec.numpy_dtype
        if array.dtype != want:
            if want.kind in "iu" and array.dtype.kind not in "iu":
                raise InputError(f"{spec.name!r} must be an integer tensor ({spec.dtype}), got {array.dtype}")
            array = array.astype(want)
        array = np.ascontiguousarray(array)
        if array.ndim != len(spec.shape):
            raise InputError(f"{spec.name!r} must have shape {spec.shape}, got {list(array.shape)}")
        for dim, size in zip(spec.shape, array.shape, strict=True):
            if isinstance(dim, int):
                if size != dim:
                    raise InputError(f"{spec.name!r} must have shape {spec.shape}, got {list(array.shape)}")
                continue
            seen = sizes.setdefault(dim, (size, spec.name))
            if seen[0] != size:
                raise InputError(f"dimension {dim!r} is {seen[0]} in {seen[1]!r} but {size} in {spec.name!r}")
            low, high = limits.range_of(dim)
            if not low <= size <= high:
                raise InputError(f"{spec.name!r}: {dim} = {size} is outside [{low}, {high}]")
        bound = limits.value_bounds.get(spec.name)
        if bound is not None and array.size and (array.min() < 0 or array.max() >= bound):
            raise InputError(f"{spec.name!r} holds values outside [0, {bound})")
        checked[spec.name] = array
    return checked


class Runner(ABC):
    """Runs one variant of one model. Not thread-safe unless a backend says so; one per worker."""

    backend: str = "abstract"
    thread_safe: bool = False

    def __init__(
        self, input_specs: Sequence[TensorSpec], output_specs: Sequence[TensorSpec], limits: InputLimits, name: str = ""
    ):
        self.input_specs = list(input_specs)
        self.output_specs = list(output_specs)
        self.limits = limits
        self.name = name or self.backend
        self.is_active = False
        self.last_inference_time_s: float | None = None

    @property
    def input_names(self) -> list[str]:
        return [spec.name for spec in self.input_specs]

    @property
    def output_names(self) -> list[str]:
        return [spec.name for spec in self.output_specs]

    # -- public API --------------------------------------------------------------------------------
    def load(self) -> Runner:
        if not self.is_active:
            self._load_impl()
            self.is_active = True
        return self

    def infer(self, inputs: Feeds) -> dict[str, np.ndarray]:
        """Named inputs (the graph's) -> named outputs, after :func:`check_feeds`; times the runtime call."""
        if not self.is_active:
            raise EngineError(f"runner {self.name!r} is not loaded; call load() first")
        feeds = self.check_inputs(inputs)
        start = time.perf_counter()
        outputs = self._infer_impl(feeds)
        self.last_inference_time_s = time.perf_counter() - start
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise EngineError(f"runner {self.name!r} gave no output {missing}")
        return outputs

    def check_inputs(self, inputs: Feeds) -> dict[str, np.ndarray]:
        return check_feeds(inputs, self.input_specs, self.limits, self.name)

    def close(self) -> None:
        if self.is_active:
            self._close_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.load()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- backend hooks -----------------------------------------------------------------------------
    @abstractmethod
    def _load_impl(self) -> None: ...

    @abstractmethod
    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close_impl(self) -> None:  # noqa: B027 - optional hook
        pass


__all__ = ["Feeds", "InputLimits", "Runner", "check_feeds"]
