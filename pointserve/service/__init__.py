"""The HTTP service: FastAPI app, dynamic batcher, settings, metrics, errors.

    >>> from pointserve.service import create_app, load_settings
    >>> app = create_app(load_settings(repository="repository"))

Nothing heavy is imported with the package (``pointserve --help`` imports ``pointserve.service.commands``);
the names below load their modules on first use.
"""

from __future__ import annotations

from typing import Any

_EXPORTS = {
    "create_app": "pointserve.service.app",
    "Settings": "pointserve.service.settings",
    "load_settings": "pointserve.service.settings",
    "DynamicBatcher": "pointserve.service.core.batcher",
    "run_server": "pointserve.service.server",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pointserve.service' has no attribute {name!r}")


__all__ = sorted(_EXPORTS)
