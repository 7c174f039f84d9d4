"""The serving core (batcher, cloud preparation, collate, answers) imports no web framework, settings or metrics
library: it is what any host (the FastAPI app, a Ray Serve replica, a script) batches and answers with."""

from __future__ import annotations

import ast
from pathlib import Path

import pointserve.service.core as core

FRAMEWORKS = {"fastapi", "starlette", "pydantic_settings", "prometheus_client", "uvicorn"}


def _imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots.add(node.module.split(".")[0])
            if node.module.startswith("pointserve.service") and not node.module.startswith("pointserve.service.core"):
                roots.add("pointserve.service (outside core)")
    return roots


def test_the_core_imports_no_framework():
    files = sorted(Path(core.__file__).parent.glob("*.py"))
    assert len(files) >= 3
    for path in files:
        found = _imported_roots(path) & (FRAMEWORKS | {"pointserve.service (outside core)"})
        assert not found, f"{path.name} imports {sorted(found)}"


def test_the_checker_sees_a_framework_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("def f():\n    from fastapi import FastAPI\n    return FastAPI\n")
    assert "fastapi" in _imported_roots(module)
