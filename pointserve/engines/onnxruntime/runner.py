"""ONNX Runtime backend: CPU by default; CUDA and TensorRT execution providers with onnxruntime-gpu.

``onnxruntime`` is imported inside functions only, so ``import pointserve.engines`` stays light.

The runner feeds the graph's named inputs as they are and returns every output by name; the graph's input
names must be those of the manifest (checked when it loads).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pointserve.engines.base import InputLimits, Runner
from pointserve.errors import BackendUnavailableError, EngineError
from pointserve.models.spec import TensorSpec

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
TENSORRT = "TensorrtExecutionProvider"
# Best first: what "auto" picks among the installed providers.
PROVIDER_PREFERENCE = (TENSORRT, CUDA, CPU)
PROVIDER_ALIASES = {"cpu": CPU, "cuda": CUDA, "tensorrt": TENSORRT, "trt": TENSORRT}


def import_onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise BackendUnavailableError("onnxruntime is not installed: pip install onnxruntime") from None
    return onnxruntime


def available_providers() -> list[str]:
    return list(import_onnxruntime().get_available_providers())


def resolve_providers(providers: str | Sequence[str], available: Sequence[str] | None = None) -> list[str]:
    """Full provider names, best first. ``"auto"`` takes every installed one of TensorRT, CUDA, CPU.

    Short names ("cpu", "cuda", "tensorrt") are accepted. CPU is always appended last as the fallback
    for ops a GPU provider does not take.
    """
    available = list(available) if available is not None else available_providers()
    if isinstance(providers, str):
        providers = [providers]
    if list(providers) == ["auto"]:
        chosen = [p for p in PROVIDER_PREFERENCE if p in available]
    else:
        chosen = [PROVIDER_ALIASES.get(p.lower(), p) for p in providers]
        missing = [p for p in chosen if p not in available]
        if missing:
            raise BackendUnavailableError(
                f"ONNX Runtime provider(s) {', '.join(missing)} not available here (available: "
                f"{', '.join(available)}); GPU providers need onnxruntime-gpu and an NVIDIA GPU"
            )
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def provider_options(
    provider: str,
    *,
    precision: str = "fp32",
    device_id: int = 0,
    engine_cache_dir: str | Path | None = None,
    workspace_mib: int = 2048,
    strongly_typed: bool = True,
) -> dict[str, Any]:
    """Options for one provider.

    TensorRT EP: with ``strongly_typed`` (the default, and the only mode TensorRT 11 has) the precision
    flags stay off and TensorRT builds each layer in the type the ONNX graph gives it, so an fp16 graph
    keeps the ops the converter left in fp32 there. ``strongly_typed=False`` sets ``trt_fp16_enable`` /
    ``trt_int8_enable`` from the variant precision (TensorRT 10 weakly-typed builds). Engines and timing
    caches are kept in ``engine_cache_dir`` so a restart does not rebuild.
    """
    if provider == CUDA:
        return {"device_id": device_id, "cudnn_conv_algo_search": "HEURISTIC"}
    if provider == TENSORRT:
        options: dict[str, Any] = {
            "device_id": device_id,
            "trt_max_workspace_size": workspace_mib << 20,
            "trt_fp16_enable": (not strongly_typed) and precision == "fp16",
            "trt_int8_enable": (not strongly_typed) and precision == "int8",
        }
        if engine_cache_dir is not None:
            cache = str(Path(engine_cache_dir))
            Path(cache).mkdir(parents=True, exist_ok=True)
            options.update(
                trt_engine_cache_enable=True,
                trt_engine_cache_path=cache,
                trt_timing_cache_enable=True,
                trt_timing_cache_path=cache,
            )
        return options
    return {}


def session_from_onnx(
    path: str | Path,
    *,
    providers: str | Sequence[str] = (CPU,),
    intra_op_threads: int | None = None,
    inter_op_threads: int | None = None,
    spin_wait: bool = True,
    precision: str = "fp32",
    device_id: int = 0,
    engine_cache_dir: str | Path | None = None,
    disabled_optimizers: Sequence[str] = (),
    strongly_typed: bool = True,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for the ONNX file at ``path``.

    ``intra_op_threads`` = threads inside one op (ONNX Runtime's default: one per physical core);
    ``inter_op_threads`` = threads across independent ops (only used by the parallel executor).
    ``spin_wait=False``: the intra-op threads sleep between runs (``session.intra_op.allow_spinning=0``)
    instead of busy-waiting for the next one, leaving the cores to the rest of the process.
    ``disabled_optimizers`` e.g. ``["WeightBiasQuantization"]`` for graphs from nvidia-modelopt.
    """
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"{path}: ONNX file not found")
    chosen = resolve_providers(providers)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if intra_op_threads is not None:
        options.intra_op_num_threads = int(intra_op_threads)
    if inter_op_threads is not None:
        options.inter_op_num_threads = int(inter_op_threads)
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if not spin_wait:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    provider_list = [
        (
            name,
            provider_options(
                name,
                precision=precision,
                device_id=device_id,
                engine_cache_dir=engine_cache_dir,
                strongly_typed=strongly_typed,
            ),
        )
        for name in chosen
    ]
    try:
        kwargs = {"disabled_optimizers": list(disabled_optimizers)} if disabled_optimizers else {}
        return ort.InferenceSession(str(path), sess_options=options, providers=provider_list, **kwargs)
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        raise EngineError(f"{path}: ONNX Runtime could not load it: {exc}") from None


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX variant through ONNX Runtime. ``session.run`` is thread-safe, so one runner may be
    shared by several worker threads."""

    backend = "onnxruntime"
    thread_safe = True

    def __init__(
        self,
        model_path: str | Path,
        input_specs: Sequence[TensorSpec],
        output_specs: Sequence[TensorSpec],
        limits: InputLimits,
        providers: str | Sequence[str] = (CPU,),
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
        *,
        spin_wait: bool = True,
        precision: str = "fp32",
        device_id: int = 0,
        engine_cache_dir: str | Path | None = None,
        disabled_optimizers: Sequence[str] = (),
        strongly_typed: bool = True,
        name: str = "",
    ):
        super().__init__(input_specs, output_specs, limits, name or f"onnxruntime:{Path(model_path).name}")
        self.model_path = Path(model_path)
        self.providers = providers
        self.intra_op_threads = intra_op_threads
        self.inter_op_threads = inter_op_threads
        self.spin_wait = spin_wait
        self.precision = precision
        self.device_id = device_id
        self.engine_cache_dir = engine_cache_dir
        self.disabled_optimizers = tuple(disabled_optimizers)
        self.strongly_typed = strongly_typed
        self.session: Any = None

    @property
    def active_providers(self) -> list[str]:
        return list(self.session.get_providers()) if self.session is not None else []

    def _load_impl(self) -> None:
        self.session = session_from_onnx(
            self.model_path,
            providers=self.providers,
            intra_op_threads=self.intra_op_threads,
            inter_op_threads=self.inter_op_threads,
            spin_wait=self.spin_wait,
            precision=self.precision,
            device_id=self.device_id,
            engine_cache_dir=self.engine_cache_dir,
            disabled_optimizers=self.disabled_optimizers,
            strongly_typed=self.strongly_typed,
        )
        graph_inputs = {tensor.name for tensor in self.session.get_inputs()}
        graph_outputs = {tensor.name for tensor in self.session.get_outputs()}
        if graph_inputs != set(self.input_names) or not set(self.output_names) <= graph_outputs:
            raise EngineError(
                f"{self.model_path}: the graph takes {sorted(graph_inputs)} and gives {sorted(graph_outputs)}, "
                f"the manifest says {self.input_names} -> {self.output_names}"
            )

    def _infer_impl(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        values = self.session.run(self.output_names, feeds)
        return {name: np.asarray(value) for name, value in zip(self.output_names, values, strict=True)}

    def _close_impl(self) -> None:
        self.session = None


__all__ = [
    "CPU",
    "CUDA",
    "TENSORRT",
    "OnnxRuntimeRunner",
    "available_providers",
    "provider_options",
    "resolve_providers",
    "session_from_onnx",
]
