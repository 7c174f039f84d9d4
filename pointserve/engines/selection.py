"""Which variant and backend to run a model version with, and the runner for it.

Best available first: a TensorRT plan built for this GPU and TensorRT version, else an ONNX variant on
ONNX Runtime's CUDA provider, else on its CPU provider. The choice is a plain function of the manifest and
a :class:`RuntimeEnvironment`, so it is testable anywhere; :func:`detect_environment` fills the latter.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pointserve.card import ModelCard
from pointserve.engines.base import InputLimits, Runner
from pointserve.engines.gpu import GpuInfo
from pointserve.engines.trt_plan import (
    TENSORRT_PRECISIONS,
    check_plan_compatible,
    default_max_points,
    onnx_variant_for,
    profile_from_build_info,
    tensorrt_variant_name,
)
from pointserve.errors import ConfigError, EngineCompatibilityError, ModelNotFoundError
from pointserve.repository.manifest import REFERENCE_VARIANT
from pointserve.repository.publish import add_reference_weights
from pointserve.repository.store import ModelVersion

BACKENDS = ("tensorrt", "onnxruntime", "torch")


@dataclass(frozen=True)
class RuntimeEnvironment:
    """What can run here: the GPU (if any), TensorRT's version (if installed), ONNX Runtime's providers."""

    gpu: GpuInfo | None = None
    tensorrt_version: str | None = None
    onnxruntime_providers: tuple[str, ...] = ()

    @property
    def has_ort_cuda(self) -> bool:
        return self.gpu is not None and "CUDAExecutionProvider" in self.onnxruntime_providers


def detect_environment(device_id: int = 0) -> RuntimeEnvironment:
    gpu = None
    trt_version = None
    providers: tuple[str, ...] = ()
    if importlib.util.find_spec("onnxruntime") is not None:
        from pointserve.engines.onnxruntime import available_providers

        providers = tuple(available_providers())
    gpu_possible = "CUDAExecutionProvider" in providers or importlib.util.find_spec("tensorrt") is not None
    if gpu_possible:
        from pointserve.engines.gpu import current_gpu

        gpu = current_gpu(device_id)
    if gpu is not None and importlib.util.find_spec("tensorrt") is not None:
        from pointserve.engines.trt_builder import tensorrt_version

        trt_version = tensorrt_version()
    return RuntimeEnvironment(gpu=gpu, tensorrt_version=trt_version, onnxruntime_providers=providers)


@dataclass(frozen=True)
class Selection:
    """The variant to load, the backend to load it with, and why."""

    variant: str
    backend: str
    providers: tuple[str, ...] = ()
    reason: str = ""


def limits_for_card(card: ModelCard, max_batch: int = 64, max_points: int | None = None) -> InputLimits:
    """Default input limits of a model: batch up to ``max_batch``, 1 to ``max_points`` points per cloud."""
    return InputLimits(
        max_batch=max_batch,
        min_points=1,
        max_points=max_points or default_max_points(card.num_points),
        channels=card.in_channels,
        needs_category=card.needs_category,
        num_categories=len(card.class_names) if card.needs_category else 0,
    )


def _plan_usable(model_version: ModelVersion, name: str, env: RuntimeEnvironment) -> str | None:
    """None when the plan variant runs here, else why not."""
    if not model_version.has_variant(name):
        return f"no {name} variant"
    try:
        check_plan_compatible(model_version.variant(name).built_for, env.gpu, env.tensorrt_version, name)
    except EngineCompatibilityError as exc:
        return str(exc)
    return None


def select_variant(
    model_version: ModelVersion,
    prefer: str | Sequence[str] | None = None,
    *,
    backend: str | None = None,
    environment: RuntimeEnvironment | None = None,
) -> Selection:
    """Pick the best runnable (variant, backend).

    ``prefer``: precisions in order of preference ("fp16", "int8", ...; default fp32) or exact variant
    names ("int8-tensorrt"). ``backend`` restricts the choice to "tensorrt" or "onnxruntime".
    For each preferred precision in turn, backends are tried best first.
    """
    env = environment if environment is not None else detect_environment()
    prefs = [prefer] if isinstance(prefer, str) else list(prefer or ["fp32"])
    if backend is not None and backend not in ("tensorrt", "onnxruntime"):
        raise ConfigError(f"cannot select variants for backend {backend!r}; choose tensorrt or onnxruntime")
    names = set(model_version.variant_names())
    tried: list[str] = []
    for pref in prefs:
        if pref not in TENSORRT_PRECISIONS and pref in names:  # an exact variant name ("int8-tensorrt")
            variant = model_version.variant(pref)
            if variant.backend == "tensorrt":
                why = _plan_usable(model_version, pref, env)
                if why is None:
                    return Selection(pref, "tensorrt", reason="requested plan")
                tried.append(why)
                continue
            if variant.backend == "torch":
                return Selection(pref, "torch", reason="requested PyTorch reference")
            providers = (
                ("CUDAExecutionProvider", "CPUExecutionProvider") if env.has_ort_cuda else ("CPUExecutionProvider",)
            )
            return Selection(pref, "onnxruntime", providers, reason="requested variant")
        if pref not in TENSORRT_PRECISIONS:
            tried.append(f"no variant {pref!r}")
            continue
        onnx_name = onnx_variant_for(pref)
        plan_name = tensorrt_variant_name(pref)
        if backend in (None, "tensorrt"):
            why = _plan_usable(model_version, plan_name, env)
            if why is None:
                return Selection(plan_name, "tensorrt", reason="TensorRT plan built for this GPU")
            tried.append(why)
        if backend in (None, "onnxruntime") and onnx_name in names:
            if env.has_ort_cuda:
                return Selection(
                    onnx_name, "onnxruntime", ("CUDAExecutionProvider", "CPUExecutionProvider"), "ONNX Runtime CUDA"
                )
            return Selection(onnx_name, "onnxruntime", ("CPUExecutionProvider",), reason="ONNX Runtime CPU")
        tried.append(f"no {onnx_name} ONNX variant")
    raise ModelNotFoundError(
        f"{model_version.name} v{model_version.version}: nothing runnable here for {prefs} "
        f"(variants: {', '.join(sorted(names)) or 'none'}; {'; '.join(tried)})"
    )


def create_runner(
    model_version: ModelVersion,
    variant: str | None = None,
    *,
    backend: str | None = None,
    max_batch: int = 64,
    max_points: int | None = None,
    threads: int | None = None,
    prefer: str | Sequence[str] | None = None,
    providers: Sequence[str] | None = None,
    cuda_graph: bool = False,
    engine_cache_dir: str | Path | None = None,
    verify: bool = True,
    environment: RuntimeEnvironment | None = None,
) -> Runner:
    """A runner (not yet loaded: call ``load()`` or use ``with``) for ``variant`` of ``model_version``.

    Without ``variant`` :func:`select_variant` picks one. The variant file's size and sha256 are checked
    against the manifest first (``verify``). ``threads`` sets ONNX Runtime's intra-op threads (or torch's).
    """
    if variant is None:
        choice = select_variant(model_version, prefer, backend=backend, environment=environment)
        variant, backend = choice.variant, choice.backend
        providers = providers or choice.providers
    record = model_version.variant(variant)
    backend = backend or record.backend
    card = model_version.card
    limits = limits_for_card(card, max_batch=max_batch, max_points=max_points)
    path = model_version.variant_path(variant, verify=verify)
    name = f"{model_version.name}/{model_version.version}/{variant}"
    if backend == "onnxruntime":
        if record.backend != "onnxruntime":
            raise ConfigError(f"variant {variant!r} is a {record.backend} file, not an ONNX graph")
        from pointserve.engines.onnxruntime import OnnxRuntimeRunner

        return OnnxRuntimeRunner(
            path,
            limits,
            providers=tuple(providers or ("CPUExecutionProvider",)),
            intra_op_threads=threads,
            precision=record.precision,
            engine_cache_dir=engine_cache_dir or (model_version.path / ".ort-trt-cache"),
            name=name,
        )
    if backend == "tensorrt":
        if record.backend != "tensorrt" or record.built_for is None:
            raise ConfigError(f"variant {variant!r} is not a TensorRT plan")
        from pointserve.engines.tensorrt import TensorRTRunner

        profile = profile_from_build_info(record.built_for)
        plan_limits = InputLimits(
            max_batch=min(max_batch, profile.max_batch),
            min_points=max(limits.min_points, profile.min_points),
            max_points=min(limits.max_points, profile.max_points),
            channels=limits.channels,
            needs_category=limits.needs_category,
            num_categories=limits.num_categories,
        )
        return TensorRTRunner(path, plan_limits, build_info=record.built_for, cuda_graph=cuda_graph, name=name)
    if backend == "torch":
        if record.backend != "torch":
            raise ConfigError(f"variant {variant!r} is a {record.backend} file, not PyTorch weights")
        from pointserve.engines.torch_runner import TorchRunner

        return TorchRunner(path, limits, card=card, threads=threads, name=name)
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def torch_runner_for(checkpoint_dir: str | Path, **kwargs: Any) -> Runner:
    """The PyTorch reference runner for a checkpoint folder (torch is imported when it loads)."""
    from pointserve.engines.torch_runner import TorchRunner

    return TorchRunner(checkpoint_dir, **kwargs)


__all__ = [
    "REFERENCE_VARIANT",
    "RuntimeEnvironment",
    "add_reference_weights",
    "Selection",
    "create_runner",
    "detect_environment",
    "limits_for_card",
    "select_variant",
    "torch_runner_for",
]
