"""What ``pointserve bench`` can measure: a repository variant (``MODEL_DIR[:variant]``) or a bare
``.onnx`` / ``.plan`` file, on a chosen backend, turned into a :class:`BenchTarget` that makes runners.

``MODEL_DIR`` is a version folder (``repository/shapes-cls/1``, it holds ``manifest.json``) or a model
folder (``repository/shapes-cls``, the latest version). The runner itself is created by
:func:`pointserve.engines.create_runner`, so the benchmark loads exactly what the service loads.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pointserve.card import ModelCard
from pointserve.engines.base import InputLimits, Runner
from pointserve.errors import ConfigError, ModelNotFoundError
from pointserve.repository.manifest import MANIFEST_FILE, AccuracyInfo
from pointserve.repository.store import ModelVersion, Repository

BACKENDS = ("onnxruntime", "tensorrt", "torch")
PLAN_SUFFIXES = (".plan", ".engine", ".trt")
# Bare files carry no limits of their own: accept what any sensible benchmark asks for.
_BARE_MAX_BATCH = 4096
_BARE_MAX_POINTS = 1 << 22


@dataclass
class BenchTarget:
    """One thing to time: a file on a backend, and how to make a fresh runner for it."""

    label: str
    path: Path
    backend: str
    make_runner: Callable[[], Runner] = field(repr=False)
    precision: str | None = None
    variant: str | None = None
    providers: tuple[str, ...] = ()
    card: ModelCard | None = None
    channels: int = 3
    num_categories: int = 0
    needs_category: bool = False
    default_points: int = 1024
    accuracy: AccuracyInfo | None = None
    accuracy_note: str = ""
    model: str | None = None

    @property
    def task(self) -> str:
        return self.card.task if self.card is not None else "unknown"


def split_spec(spec: str) -> tuple[Path, str | None]:
    """``"repo/shapes-cls:int8"`` -> (Path("repo/shapes-cls"), "int8"); a bare path has no variant."""
    path = Path(spec)
    if path.exists() or ":" not in spec:
        return path, None
    head, variant = spec.rsplit(":", 1)
    if not variant or "/" in variant:
        return path, None
    return Path(head), variant


def open_model_dir(path: Path) -> ModelVersion:
    """A version folder (with ``manifest.json``) or a model folder (its latest version)."""
    if (path / MANIFEST_FILE).is_file():
        return ModelVersion(path)
    if path.is_dir():
        repository = Repository(path.parent)
        if repository.versions(path.name):
            return repository.open(path.name)
    raise ConfigError(
        f"{path}: not a model version folder (with {MANIFEST_FILE}), a model folder, an .onnx or a .plan file"
    )


def _parse_list(values: str | Sequence[str] | None) -> list[str]:
    if values is None:
        return []
    if isinstance(values, str):
        values = [values]
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def resolve_targets(
    spec: str,
    *,
    variants: str | Sequence[str] | None = None,
    backends: str | Sequence[str] | None = None,
    providers: Sequence[str] = (),
    threads: int | None = None,
    max_batch: int = 64,
    max_points: int | None = None,
    cuda_graph: bool = False,
) -> list[BenchTarget]:
    """The targets named by ``spec`` (``MODEL_DIR[:variant]``, ``file.onnx`` or ``file.plan``).

    ``variants``: names to expand a model folder into (``"all"``: every variant runnable here). Without
    them a model folder gives the variant in the spec, else the one :func:`select_variant` picks.
    ``backends``: restricts (and for ONNX files chooses) the backend; ``providers`` go to ONNX Runtime.
    """
    path, variant = split_spec(spec)
    backend_list = _parse_list(backends)
    for backend in backend_list:
        if backend not in BACKENDS:
            raise ConfigError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if path.is_file():
        if variants:
            raise ConfigError(f"{path}: --compare variant names need a model folder, not a single file")
        return [_bare_file_target(path, backend_list, providers, threads, cuda_graph)]
    model_version = open_model_dir(path)
    names = _parse_list(variants)
    if variant is not None:
        names = [variant, *[n for n in names if n != variant]]
    if not names:
        names = [_default_variant(model_version, backend_list)]
    elif names == ["all"]:
        names = runnable_variants(model_version, backend_list)
    targets = []
    for name in names:
        record = model_version.variant(name)
        if backend_list and record.backend not in backend_list:
            continue
        targets.append(
            _variant_target(model_version, name, providers, threads, max_batch, max_points, cuda_graph, spec=path)
        )
    if not targets:
        raise ConfigError(f"{path}: none of the variants {names} runs on backend(s) {', '.join(backend_list)}")
    return targets


def _default_variant(model_version: ModelVersion, backends: list[str]) -> str:
    from pointserve.engines.selection import REFERENCE_VARIANT, select_variant

    if backends == ["torch"]:
        return REFERENCE_VARIANT
    backend = backends[0] if len(backends) == 1 else None
    return select_variant(model_version, backend=backend).variant


def runnable_variants(model_version: ModelVersion, backends: Sequence[str] = ()) -> list[str]:
    """Every variant that can run here, in manifest order: ONNX graphs always; TensorRT plans built for
    this GPU and TensorRT; the PyTorch reference when torch is installed."""
    from pointserve.engines.selection import _plan_usable, detect_environment

    environment = None
    names = []
    for record in model_version.manifest.variants:
        if backends and record.backend not in backends:
            continue
        if record.backend == "torch" and importlib.util.find_spec("torch") is None:
            continue
        if record.backend == "tensorrt":
            environment = environment or detect_environment()
            if _plan_usable(model_version, record.name, environment) is not None:
                continue
        names.append(record.name)
    if not names:
        raise ModelNotFoundError(f"{model_version.name} v{model_version.version}: no variant runs here")
    return names


def _variant_target(
    model_version: ModelVersion,
    name: str,
    providers: Sequence[str],
    threads: int | None,
    max_batch: int,
    max_points: int | None,
    cuda_graph: bool,
    spec: Path,
) -> BenchTarget:
    from pointserve.engines.selection import create_runner

    record = model_version.variant(name)
    card = model_version.card
    path = model_version.variant_path(name)  # size + sha256 checked once, here
    ort_providers = tuple(providers) or ("CPUExecutionProvider",)

    def make_runner() -> Runner:
        return create_runner(
            model_version,
            name,
            backend=record.backend,
            max_batch=max_batch,
            max_points=max_points,
            threads=threads,
            providers=ort_providers if record.backend == "onnxruntime" else None,
            cuda_graph=cuda_graph,
            verify=False,
        )

    accuracy, note = record.accuracy, ""
    if record.backend == "torch" and accuracy is None:
        accuracy = model_version.manifest.reference_accuracy
        note = "of the PyTorch fp32 reference (manifest reference_accuracy)" if accuracy is not None else ""
    elif accuracy is None and record.source and model_version.has_variant(record.source):
        accuracy = model_version.variant(record.source).accuracy
        note = f"measured on its source variant {record.source!r}" if accuracy is not None else ""
    return BenchTarget(
        label=f"{model_version.name}/{model_version.version}:{name}",
        path=path,
        backend=record.backend,
        make_runner=make_runner,
        precision=record.precision,
        variant=name,
        providers=ort_providers if record.backend == "onnxruntime" else (),
        card=card,
        channels=card.in_channels,
        num_categories=len(card.class_names) if card.needs_category else 0,
        needs_category=card.needs_category,
        default_points=card.num_points,
        accuracy=accuracy,
        accuracy_note=note,
        model=f"{model_version.name} v{model_version.version} ({spec})",
    )


def _bare_file_target(
    path: Path, backends: list[str], providers: Sequence[str], threads: int | None, cuda_graph: bool
) -> BenchTarget:
    if len(backends) > 1:
        raise ConfigError(f"{path}: one file runs on one backend, got {', '.join(backends)}")
    if path.suffix.lower() in PLAN_SUFFIXES:
        if backends and backends != ["tensorrt"]:
            raise ConfigError(f"{path}: a TensorRT plan runs on the tensorrt backend only")
        return _bare_plan_target(path, cuda_graph)
    if path.suffix.lower() != ".onnx":
        raise ConfigError(f"{path}: expected an .onnx or .plan file (or a model folder)")
    if backends and backends != ["onnxruntime"]:
        raise ConfigError(f"{path}: a bare ONNX file runs on onnxruntime; build a plan (pointserve build) for tensorrt")
    channels, needs_category = onnx_input_layout(path)
    limits = InputLimits(_BARE_MAX_BATCH, 1, _BARE_MAX_POINTS, channels=channels, needs_category=needs_category)
    ort_providers = tuple(providers) or ("CPUExecutionProvider",)

    def make_runner() -> Runner:
        from pointserve.engines.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, limits, providers=ort_providers, intra_op_threads=threads, name=path.name)

    return BenchTarget(
        label=path.name,
        path=path,
        backend="onnxruntime",
        make_runner=make_runner,
        providers=ort_providers,
        channels=channels,
        needs_category=needs_category,
    )


def _bare_plan_target(path: Path, cuda_graph: bool) -> BenchTarget:
    from pointserve.engines.trt_plan import profile_from_build_info, read_sidecar

    build_info = read_sidecar(path)
    if build_info is None:
        raise ConfigError(f"{path}: no {path.name}.json build record next to the plan (written by pointserve build)")
    profile = profile_from_build_info(build_info)

    def make_runner() -> Runner:
        from pointserve.engines.tensorrt import TensorRTRunner

        return TensorRTRunner(path, build_info=build_info, cuda_graph=cuda_graph, name=path.name)

    return BenchTarget(
        label=path.name,
        path=path,
        backend="tensorrt",
        make_runner=make_runner,
        channels=profile.channels,
        needs_category=profile.needs_category,
        default_points=profile.opt_points,
    )


def onnx_input_layout(path: Path) -> tuple[int, bool]:
    """(channels per point, takes a category input) read from an ONNX graph's inputs, weights not loaded."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a file that is not a model
        raise ConfigError(f"{path}: not a readable ONNX model ({exc})") from None
    initializers = {init.name for init in model.graph.initializer}
    channels, needs_category = 3, False
    for tensor in model.graph.input:
        if tensor.name in initializers:
            continue
        dims = tensor.type.tensor_type.shape.dim
        if len(dims) == 3 and dims[2].HasField("dim_value"):
            channels = int(dims[2].dim_value)
        elif len(dims) == 1:
            needs_category = True
    return channels, needs_category


__all__ = ["BACKENDS", "BenchTarget", "onnx_input_layout", "open_model_dir", "resolve_targets", "split_spec"]
