"""Architectures by name. Importing this module is cheap: the torch-based builders register themselves
when the registry is first used, so ``pointserve --help`` never imports torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pointserve.errors import ConfigError

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_model(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    def wrap(builder: Callable[..., Any]) -> Callable[..., Any]:
        _REGISTRY[name] = builder
        return builder

    return wrap


def _ensure_builtin() -> None:
    from pointserve.models import builders  # noqa: F401  (registers the PointNet family)


def list_models() -> list[str]:
    _ensure_builtin()
    return sorted(_REGISTRY)


def get_model(name: str, **config: Any):
    """Build a registered architecture from its config (the ``config`` of a model card)."""
    _ensure_builtin()
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(list_models())}")
    try:
        return _REGISTRY[name](**config)
    except TypeError as exc:
        raise ConfigError(f"bad configuration for model {name!r}: {exc}") from None
