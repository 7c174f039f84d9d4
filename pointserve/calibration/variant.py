"""The one way a model version gets its ``int8`` variant: calibration set -> Q/DQ graph -> checked -> recorded.

``pointserve calibrate`` and ``pointserve build --precision int8`` both call :func:`make_int8_variant`, so the
two commands cannot drift apart in what they draw, how they quantize or what the manifest says about it.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from pointserve.calibration.dataset import DEFAULT_NUM_SAMPLES, build_calibration_set
from pointserve.calibration.quantize import QuantizationResult
from pointserve.calibration.search import DEFAULT_HELDOUT_FRACTION, GUARDED_NUM_SAMPLES
from pointserve.errors import CalibrationError, ConfigError, ModelNotFoundError
from pointserve.repository.store import ModelVersion

NO_DATASET_HINT = (
    "pass `--calibration-data DATASET:ROOT` (the train split of a registered dataset, e.g. modelnet40_h5:/data/m40) "
    "or `--calibration-data DIR_OF_CLOUDS` (a folder of .ply/.pcd/.npy/.xyz/.txt clouds); "
    "calibration_data= from Python"
)


def make_int8_variant(
    model_version: ModelVersion,
    *,
    method: str = "minmax",
    num_samples: int | None = None,
    seed: int = 0,
    dataset_root: str | None = None,
    calibration_data: str | None = None,
    workdir: Path | None = None,
    progress: bool = False,
    target_agreement: float | None = None,
    methods: Sequence[str] | None = None,
    heldout_fraction: float = DEFAULT_HELDOUT_FRACTION,
    log: Callable[[str], object] | None = None,
) -> QuantizationResult:
    """Calibrate and quantize ``model_version``'s fp32 graph and store it as its ``int8`` variant.

    The calibration set is drawn from the card's dataset (``dataset_root`` for one read from disk), or from
    ``calibration_data`` (``NAME:ROOT`` or a folder of clouds, see
    :func:`pointserve.calibration.sources.load_calibration_source`) when given; it lands in
    ``<version>/calibration/`` and is reused when its recipe matches. The Q/DQ graph is written under
    ``workdir`` (default: a temporary folder inside the version, so placing it is a rename), checked with
    :func:`~pointserve.calibration.qdq.check_qdq_graph`, and recorded with its calibration — including the
    source's description and content hash — in the manifest.

    With ``target_agreement`` the graph comes from the accuracy-guarded search
    (:func:`pointserve.calibration.search.search_int8`) over ``methods`` (default: all three; ``method`` is then
    ignored): the set (default ``GUARDED_NUM_SAMPLES`` clouds) is split into a calibration part and a held-out
    part (``heldout_fraction``), and the record of the search lands in ``calibration.search``.

    Returns the :class:`QuantizationResult` with ``path`` the placed variant file and ``calibration`` the
    record the manifest holds.
    """
    from pointserve.calibration.qdq import check_qdq_graph
    from pointserve.calibration.quantize import METHODS, quantize_int8
    from pointserve.calibration.search import search_int8

    card = model_version.card
    if not model_version.has_variant("fp32"):
        raise ModelNotFoundError(
            f"{model_version.name} v{model_version.version} has no fp32 variant; run `pointserve export` first"
        )
    fp32 = model_version.variant_path("fp32")
    if calibration_data is not None:
        if dataset_root is not None:
            raise ConfigError(
                "both a data root and calibration data were given; put the root in the calibration data "
                "(--calibration-data DATASET:ROOT) and drop --data-root"
            )
        from pointserve.calibration.sources import load_calibration_source

        source = load_calibration_source(calibration_data, card)
        draw = {"dataset": source.dataset, "source_tag": source.tag}
        source_description = source.description
    else:
        if not card.dataset:
            raise CalibrationError(
                f"the model card of {model_version.name} v{model_version.version} names no dataset to draw "
                f"calibration clouds from; {NO_DATASET_HINT}"
            )
        draw = {"dataset_root": dataset_root}
        root = f":{Path(dataset_root).expanduser().resolve()}" if dataset_root else ""
        source_description = f"{card.dataset}{root} (train split, named by the model card)"
    if num_samples is None:
        num_samples = DEFAULT_NUM_SAMPLES if target_agreement is None else GUARDED_NUM_SAMPLES
    calibration = build_calibration_set(
        card, model_version.calibration_dir, num_samples=num_samples, seed=seed, progress=progress, **draw
    )
    source_sha256 = calibration.source_data_hash  # the set records the content hash of what it was drawn from
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=model_version.path, prefix=".int8-")))
        search = None
        if target_agreement is None:
            result = quantize_int8(
                fp32,
                calibration.path,
                Path(workdir) / "int8.onnx",
                method=method,
                keep_input_layers_float=True,  # what the family's spec keeps in float (int8_float_nodes)
                version_dir=model_version.path,
                progress=progress,
                card=card,
            )
        else:
            result, search = search_int8(
                fp32,
                calibration.path,
                Path(workdir) / "int8.onnx",
                card,
                target_agreement=target_agreement,
                methods=tuple(methods or METHODS),
                heldout_fraction=heldout_fraction,
                version_dir=model_version.path,
                log=log,
            )
        check_qdq_graph(result.path)
        update = {"source": source_description, "source_sha256": source_sha256, "search": search}
        info = result.calibration.model_copy(update=update)
        model_version.add_variant(
            "int8", result.path, precision="int8", backend="onnxruntime", source="fp32", calibration=info
        )
    from pointserve.calibration.cpu_int8 import CPU_INT8_VARIANT

    if model_version.has_variant(CPU_INT8_VARIANT):  # derived from int8: keep the two the same calibration
        make_int8_cpu_variant(model_version)
    return replace(result, path=model_version.variant_path("int8", verify=False), calibration=info)


def make_int8_cpu_variant(model_version: ModelVersion, *, workdir: Path | None = None) -> Path:
    """Store the ``int8-cpu`` variant: the ``int8`` variant's calibration in ONNX Runtime's fast CPU form.

    Same calibration set, method, ranges and float nodes as ``int8`` (built first if missing, with the defaults);
    only the form differs (:mod:`pointserve.calibration.cpu_int8`). The ranges come from the scale cache, so no
    calibration inference runs while the ranges ``int8`` used are cached. Returns the placed file.
    """
    import onnx

    from pointserve.calibration.cpu_int8 import CPU_INT8_VARIANT, quantize_int8_cpu
    from pointserve.calibration.dataset import CalibrationSet
    from pointserve.calibration.quantize import _readable_cache, quantize_int8, ranges_cache_path
    from pointserve.models.registry import get_spec

    if not model_version.has_variant("int8"):
        make_int8_variant(model_version)
    record = model_version.variant("int8").calibration
    if record is None:
        raise CalibrationError(f"{model_version.name} v{model_version.version}: the int8 variant has no calibration")
    fp32 = model_version.variant_path("fp32")
    card = model_version.card
    if record.search is not None:
        float_nodes = [n.name for n in record.search.float_nodes]
    else:  # what quantize_int8(keep_input_layers_float=True) kept in float
        float_nodes = get_spec(card.architecture).int8_float_nodes(onnx.load(str(fp32)), card)
    with contextlib.ExitStack() as stack:
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=model_version.path, prefix=".int8-")))
        calibration = CalibrationSet.load(model_version.path / record.file)
        ranges = ranges_cache_path(fp32, calibration, record.method, record.num_samples)
        if not (ranges.is_file() and _readable_cache(ranges)):  # the cache was cleared: int8's recipe computes it
            ranges = quantize_int8(
                fp32, calibration.path, Path(workdir) / "int8-again.onnx", method=record.method,
                max_samples=record.num_samples, card=card,
            ).cache_path  # fmt: skip
        out = quantize_int8_cpu(
            fp32, ranges, Path(workdir) / "int8-cpu.onnx", method=record.method, exclude_nodes=float_nodes
        )
        model_version.add_variant(
            CPU_INT8_VARIANT, out, precision="int8", backend="onnxruntime", source="fp32", calibration=record
        )
    return model_version.variant_path(CPU_INT8_VARIANT, verify=False)


__all__ = ["NO_DATASET_HINT", "make_int8_cpu_variant", "make_int8_variant"]
