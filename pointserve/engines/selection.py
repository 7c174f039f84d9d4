"""Which variant and backend to run a model version with, and the runner for it.

Best available first, by iterating the backend registry (:mod:`pointserve.engines.backends`): a TensorRT plan
built for this GPU and TensorRT version, else an ONNX variant on ONNX Runtime's CUDA provider, else on its
CPU provider. The PyTorch reference (``fp32-torch``) runs only when asked for by name.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pointserve.engines.backends import RunnerRequest, get_backend, list_backends
from pointserve.engines.base import Runner
from pointserve.engines.environment import RuntimeEnvironment, Selection, detect_environment
from pointserve.engines.limits import default_max_points, limits_for_card
from pointserve.errors import ConfigError, ModelNotFoundError
from pointserve.repository.manifest import PRECISIONS, REFERENCE_VARIANT
from pointserve.repository.store import ModelVersion


def select_variant(
    model_version: ModelVersion,
    prefer: str | Sequence[str] | None = None,
    *,
    backend: str | None = None,
    environment: RuntimeEnvironment | None = None,
) -> Selection:
    """Pick the best runnable (variant, backend).

    ``prefer``: precisions in order of preference ("fp16", "int8", ...; default fp32) or exact variant
    names ("int8-tensorrt"). ``backend`` restricts the choice to one backend. For each preferred precision in
    turn, the registered backends that select automatically are tried best first.
    """
    env = environment if environment is not None else detect_environment()
    prefs = [prefer] if isinstance(prefer, str) else list(prefer or ["fp32"])
    if backend is not None:
        get_backend(backend)  # ConfigError for unknown names
    names = set(model_version.variant_names())
    tried: list[str] = []
    for pref in prefs:
        if pref not in PRECISIONS:
            if pref not in names:
                tried.append(f"no variant {pref!r}")
                continue
            owner = get_backend(model_version.variant(pref).backend)
            result = owner.select(model_version, pref, env)
            if isinstance(result, Selection):
                return result
            tried.append(result)
            continue
        for name in list_backends():
            spec = get_backend(name)
            if not spec.auto_select or (backend is not None and name != backend):
                continue
            variant = spec.variant_for(pref)
            if variant is None or variant not in names:
                tried.append(f"no {variant or pref} variant for {name}")
                continue
            result = spec.select(model_version, variant, env)
            if isinstance(result, Selection):
                return result
            tried.append(result)
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
    spin_wait: bool = True,
    prefer: str | Sequence[str] | None = None,
    providers: Sequence[str] | None = None,
    cuda_graph: bool = False,
    engine_cache_dir: str | Path | None = None,
    verify: bool = True,
    environment: RuntimeEnvironment | None = None,
) -> Runner:
    """A runner (not yet loaded: call ``load()`` or use ``with``) for ``variant`` of ``model_version``.

    Without ``variant`` :func:`select_variant` picks one. The variant file's size and sha256 are checked
    against the manifest first (``verify``). ``threads`` sets the runtime's intra-op threads; ``spin_wait=False``
    lets them sleep between runs instead of busy-waiting (for a server that shares the cores with them).
    """
    if variant is None:
        choice = select_variant(model_version, prefer, backend=backend, environment=environment)
        variant, backend = choice.variant, choice.backend
        providers = providers or choice.providers
    record = model_version.variant(variant)
    backend = backend or record.backend
    if record.backend != backend:
        raise ConfigError(f"variant {variant!r} is a {record.backend} artefact; it does not run on {backend}")
    request = RunnerRequest(
        model_version=model_version,
        variant=variant,
        max_batch=max_batch,
        max_points=max_points,
        threads=threads,
        spin_wait=spin_wait,
        providers=tuple(providers or ()),
        cuda_graph=cuda_graph,
        engine_cache_dir=engine_cache_dir,
        verify=verify,
    )
    return get_backend(backend).make_runner(request)


def torch_runner_for(checkpoint_dir: str | Path, **kwargs: Any) -> Runner:
    """The PyTorch reference runner for a checkpoint folder (torch is imported when it loads)."""
    from pointserve.engines.torch.runner import TorchRunner

    return TorchRunner(checkpoint_dir, **kwargs)


__all__ = [
    "REFERENCE_VARIANT",
    "RuntimeEnvironment",
    "Selection",
    "create_runner",
    "default_max_points",
    "detect_environment",
    "limits_for_card",
    "select_variant",
    "torch_runner_for",
]
