"""The backend registry: one :class:`BackendSpec` per runtime, registered by its folder in ``engines/``.

A backend says what it is (its name in the manifest's vocabulary, the platform the Open Inference Protocol
reports, the suffix of its artefacts), whether it can run a variant here and why not, how to make a runner,
and how the bench times a query on it. :func:`pointserve.engines.select_variant` and
:func:`pointserve.engines.create_runner` iterate this registry; no other code names a runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pointserve.errors import ConfigError
from pointserve.repository.manifest import BACKENDS, Backend

if TYPE_CHECKING:
    from pointserve.engines.base import Runner
    from pointserve.engines.environment import RuntimeEnvironment, Selection
    from pointserve.repository.store import ModelVersion


@dataclass(frozen=True)
class RunnerRequest:
    """What :func:`create_runner` asks a backend for (the options every backend may read)."""

    model_version: ModelVersion
    variant: str
    max_batch: int = 64
    max_points: int | None = None
    threads: int | None = None
    # False: the runtime's threads sleep between runs instead of busy-waiting for the next one (ONNX Runtime's
    # allow_spinning); a server whose event loop shares the cores with them wants the cores back.
    spin_wait: bool = True
    providers: tuple[str, ...] = ()
    cuda_graph: bool = False
    engine_cache_dir: Any = None
    verify: bool = True


@dataclass(frozen=True)
class BackendSpec:
    """One runtime.

    * ``variant_for(precision)`` -> the manifest variant this backend runs for a precision (None: none).
    * ``select(model_version, variant, env)`` -> a :class:`Selection` when the variant runs here, else why not.
    * ``make_runner(request)`` -> a :class:`Runner` (not loaded).
    * ``timed_call(runner)`` -> ``(call(feeds) -> Phases, measures_gpu_phases)`` or None for host timing.
    * ``auto_select``: considered when a precision (not a variant) is asked for; ``priority``: lower first.
    """

    name: Backend
    oip_platform: str
    artifact_suffix: str
    variant_for: Callable[[str], str | None]
    select: Callable[[ModelVersion, str, RuntimeEnvironment], Selection | str]
    make_runner: Callable[[RunnerRequest], Runner]
    timed_call: Callable[[Runner], Any] | None = None
    auto_select: bool = True
    priority: int = 100
    description: str = ""


_BACKENDS: dict[str, BackendSpec] = {}


def register_backend(spec: BackendSpec) -> BackendSpec:
    if spec.name not in BACKENDS:
        raise ConfigError(f"backend {spec.name!r} is not in the manifest's vocabulary {BACKENDS}")
    _BACKENDS[spec.name] = spec
    return spec


def get_backend(name: str) -> BackendSpec:
    if name not in _BACKENDS:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(list_backends())}")
    return _BACKENDS[name]


def list_backends() -> list[str]:
    """Registered backends, best first (by priority)."""
    return [spec.name for spec in sorted(_BACKENDS.values(), key=lambda s: s.priority)]


def oip_platform(name: str) -> str:
    """What the Open Inference Protocol's model metadata calls a backend (Triton's platform names)."""
    return _BACKENDS[name].oip_platform if name in _BACKENDS else name


__all__ = ["BackendSpec", "RunnerRequest", "get_backend", "list_backends", "oip_platform", "register_backend"]
