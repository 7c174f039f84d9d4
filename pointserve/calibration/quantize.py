"""The int8 variant: an explicit Q/DQ graph that TensorRT 11's ONNX parser accepts, from a calibration set.

TensorRT 11 has no implicit int8 calibration: int8 comes from QuantizeLinear/DequantizeLinear pairs in the
ONNX graph. We produce them with onnxruntime's ``quantize_static`` in the form TensorRT wants:

* symmetric int8 activations and weights, so every zero point is 0 (``ActivationSymmetric``/``WeightSymmetric``);
* per-channel weight scales (``per_channel=True``: an ``axis`` on each weight DequantizeLinear), per-tensor
  activation scales;
* biases left in float (``QuantizeBias=False``): by default onnxruntime stores biases as int32 tensors behind a
  DequantizeLinear, which TensorRT's parser rejects.

Calibration methods: ``minmax`` (default), ``entropy``, ``percentile``. Max pooling passes the extremes of
every channel straight to the classifier, so methods that clip extremes hurt PointNet; see docs/precision.md
for measured numbers. Clouds are fed in chunks (``CalibStridedMinMax``: the name says MinMax, but the loop
drives every calibrator), so memory stays bounded for the histogram methods too.

Scale cache: the calibrated tensor ranges are onnxruntime's own calibration cache (a JSON ``TensorsData``
file, ``quantize_static(calibration_cache_path=...)``), stored under a key made of the calibration data's
sha256, the method, the source graph's sha256 and the onnxruntime version. Same inputs -> no calibration
inference at all, only the (sub-second) graph rewrite.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.calibration.dataset import CalibrationSet
from pointserve.card import ModelCard
from pointserve.errors import CalibrationError
from pointserve.repository.manifest import CalibrationInfo

METHODS = ("minmax", "entropy", "percentile")
DEFAULT_BATCH_SIZE = 8
DEFAULT_CHUNK_BATCHES = 4  # 32 clouds per calibrator pass: bounded memory, few passes
CACHE_FORMAT = 1


@dataclass(frozen=True)
class QuantizationResult:
    """What :func:`quantize_int8` wrote and how."""

    path: Path
    sha256: str
    method: str
    calibration: CalibrationInfo
    cache_path: Path
    cache_hit: bool
    calibrated_clouds: int  # clouds run through calibration inference: 0 on a cache hit
    elapsed_s: float


class _CloudReader:
    """onnxruntime's CalibrationDataReader protocol over the calibration clouds, in batches.

    With a model card, each batch of clouds goes through the architecture's preprocessor and collate policy
    (:func:`pointserve.models.collate.batch_inputs`), so every graph input (neighbour indices, grids, ...)
    is computed exactly as training and serving compute it; without one, the arrays are fed by input name.
    ``len()`` counts batches; ``set_range`` selects the batches of one chunk (quantize_static's strided loop).
    """

    def __init__(
        self, arrays: dict[str, np.ndarray], input_names: list[str], batch_size: int, progress=None, card=None
    ):
        self.card = card
        self.arrays = arrays if card is not None else {name: arrays[name] for name in input_names}
        self.batch_size = batch_size
        self.num_samples = len(arrays["points"])
        self.progress = progress
        self.served = 0  # clouds handed to the calibrator so far
        self.set_range(0, len(self))

    def __len__(self) -> int:
        return -(-self.num_samples // self.batch_size)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._batches: Iterator[int] = iter(range(start_index, min(end_index, len(self))))

    def get_next(self) -> dict[str, np.ndarray] | None:
        index = next(self._batches, None)
        if index is None:
            return None
        lo, hi = index * self.batch_size, min((index + 1) * self.batch_size, self.num_samples)
        self.served += hi - lo
        if self.progress is not None:
            self.progress(hi - lo)
        if self.card is None:
            return {name: array[lo:hi] for name, array in self.arrays.items()}
        from pointserve.models.collate import batch_inputs
        from pointserve.models.registry import get_spec

        categories = self.arrays["category"][lo:hi].tolist() if self.card.needs_category else None
        feeds, _ = batch_inputs(
            get_spec(self.card.architecture), self.card, list(self.arrays["points"][lo:hi]), categories
        )
        return feeds


def _calibration_method(method: str):
    from onnxruntime.quantization import CalibrationMethod

    if method not in METHODS:
        raise CalibrationError(f"unknown calibration method {method!r}; choose one of {', '.join(METHODS)}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}.get(
        method, CalibrationMethod.Percentile
    )


def cache_key(data_sha256: str, method: str, source_sha256: str, options: dict[str, Any]) -> str:
    """sha256 over everything the calibrated ranges depend on."""
    import onnxruntime

    record = {
        "format": CACHE_FORMAT,
        "data": data_sha256,
        "method": method,
        "source": source_sha256,
        "options": options,
        "onnxruntime": onnxruntime.__version__,
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


def _largest_divisor_at_most(n: int, limit: int) -> int:
    # quantize_static requires the chunk (stride) to divide the number of batches.
    return max(d for d in range(1, min(n, max(limit, 1)) + 1) if n % d == 0)


def ranges_cache_path(
    src_onnx: str | Path,
    calibration: CalibrationSet,
    method: str,
    num_used: int,
    cache_dir: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_batches: int = DEFAULT_CHUNK_BATCHES,
    percentile: float = 99.999,
) -> Path:
    """Where :func:`quantize_int8` keeps (or finds) the ranges of this recipe: the first ``num_used`` clouds of
    ``calibration``, ``method``, the source graph. The file may not exist yet."""
    from pointserve.repository.store import sha256_file

    # Ranges depend on the data, the method and the chunking (histogram methods merge per chunk); not on
    # exclude_nodes, which only changes which of the calibrated tensors get Q/DQ nodes.
    options: dict[str, Any] = {"max_samples": num_used, "batch_size": batch_size, "chunk_batches": chunk_batches}
    if method == "percentile":
        options["percentile"] = percentile
    key = cache_key(calibration.sha256, method, sha256_file(src_onnx), options)
    cache_root = Path(cache_dir) if cache_dir is not None else calibration.path.parent
    return cache_root / f"ranges-{method}-{key[:16]}.json"


def _readable_cache(path: Path) -> bool:
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        path.unlink(missing_ok=True)  # a torn or foreign file: recompute rather than fail
        return False
    return True


def quantize_int8(
    src_onnx: str | Path,
    calibration_npz: str | Path,
    dst_onnx: str | Path,
    *,
    method: str = "minmax",
    cache_dir: str | Path | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    chunk_batches: int = DEFAULT_CHUNK_BATCHES,
    max_samples: int | None = None,
    percentile: float = 99.999,
    exclude_nodes: Sequence[str] = (),
    keep_input_layers_float: bool = False,
    version_dir: str | Path | None = None,
    progress: bool = False,
    card: ModelCard | None = None,
) -> QuantizationResult:
    """Write ``dst_onnx``: ``src_onnx`` (fp32) with symmetric int8 Q/DQ nodes calibrated on ``calibration_npz``.

    ``cache_dir`` holds the calibrated ranges (default: the calibration set's folder); ``max_samples`` uses
    only the first clouds of the set (the histogram methods are slower); ``exclude_nodes`` leaves the named
    nodes in float; ``keep_input_layers_float`` also leaves the layers that act on the raw coordinates in float
    (see :func:`input_layer_nodes`); ``version_dir`` makes the recorded calibration file path relative to a repository
    version folder. The graph's inputs and outputs keep their names, dtypes and symbolic (B, N) axes, and it
    is checked with :func:`pointserve.calibration.qdq.check_qdq_graph` before it is written.

    No ``quant_pre_process``: on the exported (dynamo + onnxsim) PointNet graphs it changed no node and no
    scale, and its symbolic shape inference renamed the output's batch axis.
    """
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from pointserve.calibration.qdq import check_qdq_graph
    from pointserve.repository.store import atomic_copy, atomic_write_bytes, sha256_file

    started = time.perf_counter()
    src_onnx, dst_onnx = Path(src_onnx), Path(dst_onnx)
    if not src_onnx.is_file():
        raise CalibrationError(f"{src_onnx}: source ONNX model not found")
    calibration = CalibrationSet.load(calibration_npz)
    calib_method = _calibration_method(method)
    arrays = calibration.arrays()
    if max_samples is not None:
        arrays = {k: v[:max_samples] if v.ndim else v for k, v in arrays.items()}
    num_used = int(arrays["points"].shape[0])
    cache_path = ranges_cache_path(
        src_onnx, calibration, method, num_used, cache_dir, batch_size, chunk_batches, percentile
    )
    cache_hit = cache_path.is_file() and _readable_cache(cache_path)

    with tempfile.TemporaryDirectory(prefix="pointserve-int8-") as tmp:
        source = onnx.load(str(src_onnx))
        initializers = {t.name for t in source.graph.initializer}
        input_names = [i.name for i in source.graph.input if i.name not in initializers]
        missing = [name for name in input_names if name not in arrays] if card is None else []
        if missing:
            raise CalibrationError(f"{calibration.path} has no array for graph input(s) {missing}")
        unknown = set(exclude_nodes) - {n.name for n in source.graph.node}
        if unknown:
            raise CalibrationError(f"exclude_nodes names nodes not in {src_onnx}: {sorted(unknown)}")
        if keep_input_layers_float:
            if card is None:
                raise CalibrationError("keep_input_layers_float needs the model card (its spec names the nodes)")
            from pointserve.models.registry import get_spec

            exclude_nodes = [*exclude_nodes, *get_spec(card.architecture).int8_float_nodes(source, card)]
        counter = _Progress(num_used, progress and not cache_hit, f"calibrating int8 ({method})")
        reader = _CloudReader(arrays, input_names, batch_size, counter.advance, card)
        tmp_cache = Path(tmp) / "ranges.json"
        quantized = Path(tmp) / "int8.onnx"
        extra_options: dict[str, Any] = {
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
            "CalibStridedMinMax": _largest_divisor_at_most(len(reader), chunk_batches),
        }
        if method == "percentile":
            extra_options["CalibPercentile"] = percentile
        try:
            with counter, _quiet_onnxruntime():
                quantize_static(
                    str(src_onnx),
                    str(quantized),
                    calibration_data_reader=reader,
                    quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8,
                    weight_type=QuantType.QInt8,
                    per_channel=True,
                    nodes_to_exclude=list(exclude_nodes),
                    calibrate_method=calib_method,
                    extra_options=extra_options,
                    calibration_cache_path=str(cache_path if cache_hit else tmp_cache),
                )
        except Exception as exc:  # onnxruntime raises ValueError/RuntimeError/Fail
            raise CalibrationError(f"int8 quantization of {src_onnx} failed: {exc}") from None
        if not cache_hit and tmp_cache.is_file():
            atomic_copy(tmp_cache, cache_path, move=True)
        model = onnx.load(str(quantized))
        _restore_io(model, source)
        check_qdq_graph(model)
        atomic_write_bytes(dst_onnx, model.SerializeToString())
    return QuantizationResult(
        path=dst_onnx,
        sha256=sha256_file(dst_onnx),
        method=method,
        calibration=calibration.info(method, version_dir).model_copy(update={"num_samples": num_used}),
        cache_path=cache_path,
        cache_hit=cache_hit,
        calibrated_clouds=reader.served,
        elapsed_s=round(time.perf_counter() - started, 3),
    )


def _restore_io(model, source) -> None:
    """Give the quantized graph the source's input/output types, so symbolic dims keep their names."""
    pairs = ((model.graph.input, source.graph.input), (model.graph.output, source.graph.output))
    for quantized_values, source_values in pairs:
        by_name = {v.name: v for v in source_values}
        for value in quantized_values:
            if value.name in by_name:
                value.type.CopyFrom(by_name[value.name].type)


@contextlib.contextmanager
def _quiet_onnxruntime() -> Iterator[None]:
    """onnxruntime.quantization prints histogram progress and logs advice on the root logger; keep it quiet."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


class _Progress:
    """A rich progress bar over calibration clouds (a no-op when disabled)."""

    def __init__(self, total: int, enabled: bool, description: str):
        self.total, self.enabled, self.description = total, enabled, description
        self._bar = None

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            # stderr: stdout is redirected while onnxruntime calibrates (it prints).
            self._bar = Progress(console=Console(stderr=True), transient=True)
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def advance(self, clouds: int) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, clouds)


__all__ = ["METHODS", "QuantizationResult", "cache_key", "quantize_int8", "ranges_cache_path"]
