"""What ``pointserve bench`` can measure: a repository variant (``MODEL_DIR[:variant]``) or a bare
``.onnx`` / ``.plan`` file, on a chosen backend, turned into a :class:`BenchTarget` that makes runners and
the graph's feeds.

``MODEL_DIR`` is a version folder (``repository/shapes-cls/1``, it holds ``manifest.json``) or a model
folder (``repository/shapes-cls``, the latest version). The runner itself is created by
:func:`pointserve.engines.create_runner`, so the benchmark loads exactly what the service loads, and the
feeds come from the model's family (:func:`pointserve.models.collate.random_feeds`), as the service makes them.

A bare file has no model card, so nothing says how its family preprocesses a cloud: it is benched only when
its graph takes raw clouds, ``points`` (B, N, C) float (+ ``category`` (B,) integer); other graphs are
refused with a pointer to their repository version.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pointserve.card import ModelCard
from pointserve.engines.base import InputLimits, Runner
from pointserve.errors import ConfigError, EngineCompatibilityError, ModelNotFoundError
from pointserve.models.spec import BATCH_DIM, POINTS_DIM, TensorSpec, point_cloud_inputs
from pointserve.repository.manifest import BACKENDS, MANIFEST_FILE, AccuracyInfo
from pointserve.repository.store import ModelVersion, Repository

PLAN_SUFFIXES = (".plan", ".engine", ".trt")
# Bare files carry no limits of their own: accept what any sensible benchmark asks for.
_BARE_MAX_BATCH = 4096
_BARE_MAX_POINTS = 1 << 22
_BARE_HINT = (
    "bench its repository version instead (MODEL_DIR[:variant]): the model's family says how a cloud becomes "
    "the graph's inputs"
)
_BARE_LAYOUT = (
    "a bare file is benched only when its graph takes raw clouds: points (B, N, C) float and optionally "
    "category (B,) integer"
)


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
    input_specs: list[TensorSpec] = field(default_factory=list)

    @property
    def task(self) -> str:
        return self.card.task if self.card is not None else "unknown"

    def make_feeds(self, batch: int, num_points: int, seed: int = 0) -> dict[str, np.ndarray]:
        """A fixed random batch of ``batch`` clouds of ``num_points`` points, as the graph's named inputs.

        With a card: the family's preprocessing and collate policy (:func:`random_feeds`). Without one (a bare
        file): unit-sphere clouds for the ``points`` input and random ids below ``num_categories`` (zeros when
        unknown) for the ``category`` input.
        """
        rng = np.random.default_rng(seed)
        if self.card is not None:
            from pointserve.models.collate import random_feeds
            from pointserve.models.registry import get_spec

            feeds, _ = random_feeds(get_spec(self.card.architecture), self.card, batch, num_points, rng)
            return feeds
        specs = self.input_specs or point_cloud_inputs(self.channels, self.needs_category)
        return raw_cloud_feeds(specs, batch, num_points, rng, num_categories=self.num_categories)


def raw_cloud_layout(specs: Sequence[TensorSpec], where: str | Path) -> tuple[TensorSpec, TensorSpec | None]:
    """(points, category or None) of a graph that takes raw clouds: one rank-3 float input and at most one
    rank-1 integer input. :class:`ConfigError` for any other graph (its inputs need its family's preprocessing)."""
    points = [s for s in specs if len(s.shape) == 3 and s.dtype.startswith("float")]
    category = [s for s in specs if len(s.shape) == 1 and s.dtype.startswith("int")]
    if len(points) != 1 or len(category) > 1 or len(points) + len(category) != len(specs):
        described = ", ".join(f"{s.name} {s.dtype} {s.shape}" for s in specs) or "none"
        raise ConfigError(f"{where}: {_BARE_LAYOUT}; this one takes {described}; {_BARE_HINT}")
    return points[0], (category[0] if category else None)


def raw_cloud_feeds(
    specs: Sequence[TensorSpec], batch: int, num_points: int, rng: np.random.Generator, *, num_categories: int = 0
) -> dict[str, np.ndarray]:
    """Feeds for a raw-cloud graph: unit-sphere clouds (B, N, C) float32 (+ categories (B,) int64)."""
    points_spec, category_spec = raw_cloud_layout(specs, "graph")
    channels = points_spec.shape[2] if isinstance(points_spec.shape[2], int) else 3
    points = rng.standard_normal((batch, num_points, channels)).astype(np.float32)
    xyz = points[..., :3]
    xyz /= np.linalg.norm(xyz, axis=-1, keepdims=True).max(axis=1, keepdims=True)
    feeds = {points_spec.name: points}
    if category_spec is not None:
        feeds[category_spec.name] = rng.integers(0, max(num_categories, 1), size=batch).astype(np.int64)
    return feeds


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
    from pointserve.engines import get_backend

    path, variant = split_spec(spec)
    backend_list = _parse_list(backends)
    for backend in backend_list:
        get_backend(backend)  # ConfigError naming the registered backends
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
    """Every variant that can run here, in manifest order, as its backend decides (``BackendSpec.select``):
    ONNX graphs with onnxruntime installed; TensorRT plans built for this GPU and TensorRT; the PyTorch
    reference when torch is installed."""
    from pointserve.engines import Selection, detect_environment, get_backend

    environment = detect_environment()
    names = []
    for record in model_version.manifest.variants:
        if backends and record.backend not in backends:
            continue
        if isinstance(get_backend(record.backend).select(model_version, record.name, environment), Selection):
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
        input_specs=list(model_version.manifest.inputs),
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
    inputs, outputs = bare_graph_specs(path)
    points, category = raw_cloud_layout(inputs, path)
    limits = InputLimits(dims={BATCH_DIM: (1, _BARE_MAX_BATCH), POINTS_DIM: (1, _BARE_MAX_POINTS)})
    ort_providers = tuple(providers) or ("CPUExecutionProvider",)

    def make_runner() -> Runner:
        from pointserve.engines.onnxruntime.runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(
            path, inputs, outputs, limits, providers=ort_providers, intra_op_threads=threads, name=path.name
        )

    return BenchTarget(
        label=path.name,
        path=path,
        backend="onnxruntime",
        make_runner=make_runner,
        providers=ort_providers,
        channels=int(points.shape[2]),
        needs_category=category is not None,
        input_specs=inputs,
    )


def _bare_plan_target(path: Path, cuda_graph: bool) -> BenchTarget:
    from pointserve.engines.tensorrt.plan import (
        point_cloud_specs_from_build_info,
        profile_from_build_info,
        read_sidecar,
    )

    build_info = read_sidecar(path)
    if build_info is None:
        raise ConfigError(f"{path}: no {path.name}.json build record next to the plan (written by pointserve build)")
    try:
        specs = point_cloud_specs_from_build_info(build_info, path)
    except EngineCompatibilityError as exc:
        raise ConfigError(f"{exc}; {_BARE_HINT}") from None
    points, category = raw_cloud_layout(specs, path)
    profile = profile_from_build_info(build_info, specs, path)

    def make_runner() -> Runner:
        from pointserve.engines.tensorrt.runner import TensorRTRunner

        # No output specs: the runner reads them from the engine when it loads.
        return TensorRTRunner(path, specs, None, build_info=build_info, cuda_graph=cuda_graph, name=path.name)

    return BenchTarget(
        label=path.name,
        path=path,
        backend="tensorrt",
        make_runner=make_runner,
        channels=int(points.shape[2]),
        needs_category=category is not None,
        default_points=profile.opt_points,
        input_specs=specs,
    )


def bare_graph_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The (inputs, outputs) of a bare ONNX graph, weights not loaded. The raw-cloud inputs' dimensions are
    named ``batch`` and ``num_points`` (whatever the graph calls them, and the outputs' alike); a points
    input with no fixed channel count takes 3."""
    import onnx

    from pointserve.export.onnx_export import graph_specs

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends for a file that is not a model
        raise ConfigError(f"{path}: not a readable ONNX model ({exc})") from None
    inputs, outputs = graph_specs(model)
    points, category = raw_cloud_layout(inputs, path)
    renamed: dict[str, str] = {}

    def with_roles(spec_: TensorSpec, roles: Sequence[str]) -> TensorSpec:
        shape = list(spec_.shape)
        for i, role in enumerate(roles):
            if isinstance(shape[i], str):
                renamed.setdefault(shape[i], role)
                shape[i] = role
            elif shape[i] == 0:  # dynamic, unnamed
                shape[i] = role
        if len(shape) == 3 and not (isinstance(shape[2], int) and shape[2] > 0):
            shape[2] = 3
        return TensorSpec(name=spec_.name, dtype=spec_.dtype, shape=shape)

    def with_names(spec_: TensorSpec) -> TensorSpec:
        shape = [
            renamed.get(d, d) if isinstance(d, str) else (f"{spec_.name}_{i}" if d == 0 else d)
            for i, d in enumerate(spec_.shape)
        ]
        return TensorSpec(name=spec_.name, dtype=spec_.dtype, shape=shape)

    roles = {points.name: (BATCH_DIM, POINTS_DIM)}
    if category is not None:
        roles[category.name] = (BATCH_DIM,)
    new_inputs = [with_roles(s, roles[s.name]) for s in inputs]
    return new_inputs, [with_names(s) for s in outputs]


__all__ = [
    "BACKENDS",
    "BenchTarget",
    "bare_graph_specs",
    "open_model_dir",
    "raw_cloud_feeds",
    "raw_cloud_layout",
    "resolve_targets",
    "runnable_variants",
    "split_spec",
]
