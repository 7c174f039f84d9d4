"""Architectures by name: one :class:`ArchitectureSpec` each, registered by its family's file.

Importing ``pointserve.models`` registers the built-in families (their spec files import no torch).
Families outside the package register themselves the same way when imported; name them in the
``POINTSERVE_FAMILIES`` environment variable (comma-separated modules) or in the ``pointserve.families``
entry-point group, and every pointserve process (the service's workers included) imports them on first use.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from pointserve.errors import ConfigError
from pointserve.models.spec import ArchitectureSpec

FAMILIES_ENV = "POINTSERVE_FAMILIES"
ENTRY_POINT_GROUP = "pointserve.families"

_REGISTRY: dict[str, ArchitectureSpec] = {}
_plugins_loaded = False


def register_architecture(spec: ArchitectureSpec) -> ArchitectureSpec:
    """Register ``spec`` under ``spec.name`` (registering the same spec twice is harmless)."""
    existing = _REGISTRY.get(spec.name)
    if existing is not None and existing is not spec and existing.builder is not spec.builder:
        raise ConfigError(f"architecture {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def _load_plugins() -> None:
    """Import the families named by the environment and by installed distributions, once."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    modules = [m.strip() for m in os.environ.get(FAMILIES_ENV, "").split(",") if m.strip()]
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"{FAMILIES_ENV} names module {name!r}, which cannot be imported: {exc}") from None
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        entry.load()


def list_models() -> list[str]:
    """Every registered architecture name, sorted."""
    _load_plugins()
    return sorted(_REGISTRY)


def get_spec(name: str) -> ArchitectureSpec:
    """The spec of a registered architecture; ConfigError naming the known ones otherwise."""
    _load_plugins()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def get_model(name: str, **config: Any):
    """Build a registered architecture from its config (the ``config`` of a model card); imports torch."""
    spec = get_spec(name)
    try:
        return spec.builder(**config)
    except TypeError as exc:
        raise ConfigError(f"bad configuration for model {name!r}: {exc}") from None


__all__ = ["ENTRY_POINT_GROUP", "FAMILIES_ENV", "get_model", "get_spec", "list_models", "register_architecture"]
