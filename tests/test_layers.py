"""The import-layer checker ``scripts/import_graph.py``: on the real package, and on small synthetic packages.

The script is loaded from its file (it is not part of the package); the synthetic packages are written to
``tmp_path`` with their own small layer table.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "import_graph.py"
PACKAGE_DIR = ROOT / "pointserve"

# The synthetic packages' table: rank 0 holds the package's own __init__.
LAYERS = [{"pkg", "base"}, {"low", "low2"}, {"mid"}, {"top"}]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("import_graph_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


ig = _load_script()


def make_package(root: Path, files: dict[str, str], name: str = "pkg") -> Path:
    """Write ``files`` (path inside the package -> source) as package ``name`` under ``root``; return its folder."""
    package_dir = root / name
    for relative, source in {"__init__.py": "", **files}.items():
        path = package_dir / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source), encoding="utf-8")
    return package_dir


# A package that follows LAYERS: each name imports its own modules and lower ranks, in every form the checker reads.
CLEAN = {
    "base.py": "VALUE = 1\n",
    "low/__init__.py": "from . import core\nfrom .core import thing\n",
    "low/core.py": "import pkg.base\n\nthing = pkg.base.VALUE\n",
    "low2.py": "from pkg import base\n",
    "mid/__init__.py": "",
    "mid/service.py": """\
        from typing import TYPE_CHECKING

        from pkg.low import core
        from .. import low2

        if TYPE_CHECKING:
            from pkg.base import VALUE


        def later():
            from pkg.mid import helpers

            return helpers
        """,
    "mid/helpers.py": "import pkg.low.core as core\n",
    "top.py": """\
        import importlib


        def run():
            return importlib.import_module("pkg.mid.service")
        """,
}


def check(package_dir: Path, layers=LAYERS) -> tuple[list, list[str], list[list[str]]]:
    """(violations, unranked names, cycles) of the package in ``package_dir``."""
    edges = ig.collect_imports(package_dir)
    package = package_dir.name
    return ig.violations(edges, layers, package), ig.unranked_names(edges, layers, package), ig.module_cycles(edges)


def pairs(found) -> set[tuple[str, str]]:
    return {(violation.importer, violation.imported) for violation in found}


# --------------------------------------------------------------------------------------------------------------------
# The real package


@pytest.fixture(scope="module")
def live_edges() -> dict[str, set[str]]:
    return ig.collect_imports(PACKAGE_DIR)


def test_live_package_has_no_imports_against_the_layers(live_edges):
    found = ig.violations(live_edges, ig.LAYERS, ig.PACKAGE)
    listing = "\n".join(f"  {v.importer} -> {v.imported}: {v.why}" for v in found)
    assert not found, f"{len(found)} imports against the layer order:\n{listing}"


def test_live_package_has_no_unranked_names(live_edges):
    unranked = ig.unranked_names(live_edges, ig.LAYERS, ig.PACKAGE)
    assert not unranked, f"top-level names missing from LAYERS in scripts/import_graph.py: {unranked}"


def test_live_package_has_no_import_cycles(live_edges):
    cycles = ig.module_cycles(live_edges)
    listing = "\n".join(
        f"  {' -> '.join(ig.cycle_path(live_edges, cycle))}  (all {len(cycle)}: {', '.join(cycle)})" for cycle in cycles
    )
    assert not cycles, f"{len(cycles)} import cycles:\n{listing}"


# --------------------------------------------------------------------------------------------------------------------
# Reading imports


def test_collect_imports_resolves_every_form(tmp_path):
    edges = ig.collect_imports(make_package(tmp_path, CLEAN))
    assert edges == {
        "pkg": set(),
        "pkg.base": set(),
        "pkg.low": {"pkg.low.core"},  # `from . import core` and `from .core import thing` in an __init__
        "pkg.low.core": {"pkg.base"},
        "pkg.low2": {"pkg.base"},  # `from pkg import base`: base is a module
        "pkg.mid": set(),
        "pkg.mid.service": {"pkg.low.core", "pkg.low2", "pkg.base", "pkg.mid.helpers"},
        "pkg.mid.helpers": {"pkg.low.core"},
        "pkg.top": {"pkg.mid.service"},  # importlib.import_module with a literal
    }


def test_collect_imports_reads_class_level_try_and_relative_forms(tmp_path):
    package_dir = make_package(
        tmp_path,
        {
            "a/__init__.py": "from .b import name\n",
            "a/b.py": "name = 1\n",
            "a/c/__init__.py": "",
            "a/c/d.py": """\
                import os
                from importlib import import_module

                try:
                    import pkg.a.b as b
                except ImportError:
                    from .. import b
                from ...a import name


                class Holder:
                    from pkg.a.c import d as me

                    def method(self):
                        import_module(".b", package="pkg.a")
                        return import_module(os.environ["SOMEWHERE"])
                """,
        },
    )
    edges = ig.collect_imports(package_dir)
    assert edges["pkg.a"] == {"pkg.a.b"}
    # `from ...a import name`: name is not a module, so the edge goes to the package pkg.a; `from pkg.a.c import d`
    # inside module pkg.a.c.d is a self-import
    assert edges["pkg.a.c.d"] == {"pkg.a.b", "pkg.a", "pkg.a.c.d"}
    scans = ig.scan_package(package_dir)
    assert scans["pkg.a.c.d"].dynamic == [16]  # the computed name is counted, not guessed


# --------------------------------------------------------------------------------------------------------------------
# Violations


def test_clean_package_passes(tmp_path):
    assert check(make_package(tmp_path, CLEAN)) == ([], [], [])


def test_upward_module_level_import(tmp_path):
    package_dir = make_package(tmp_path, {**CLEAN, "low2.py": "from pkg import base\nfrom pkg.mid import helpers\n"})
    found, unranked, cycles = check(package_dir)
    assert pairs(found) == {("pkg.low2", "pkg.mid.helpers")}
    assert "higher rank" in found[0].why
    assert (unranked, cycles) == ([], [])


def test_upward_import_inside_a_function(tmp_path):
    source = """\
        import pkg.base


        def later():
            import pkg.top

            return pkg.top
        """
    found, _, _ = check(make_package(tmp_path, {**CLEAN, "low/core.py": source}))
    assert pairs(found) == {("pkg.low.core", "pkg.top")}


def test_same_rank_import(tmp_path):
    found, _, _ = check(make_package(tmp_path, {**CLEAN, "low2.py": "from pkg.low.core import thing\n"}))
    assert pairs(found) == {("pkg.low2", "pkg.low.core")}
    assert "both rank 1" in found[0].why


def test_relative_import_violation(tmp_path):
    files = {**CLEAN, "upper.py": "x = 1\n", "low/core.py": "from ..upper import x\n"}
    found, _, _ = check(make_package(tmp_path, files), [*LAYERS, {"upper"}])
    assert pairs(found) == {("pkg.low.core", "pkg.upper")}


def test_unranked_top_level_module(tmp_path):
    files = {**CLEAN, "stray.py": "from pkg import base\n"}
    found, unranked, _ = check(make_package(tmp_path, files))
    assert unranked == ["stray"]
    assert found == []  # its edges are reported as unranked, not as order violations
    # an unranked name is an error even when only imported
    files = {**CLEAN, "stray/__init__.py": "", "top.py": "import pkg.stray\n"}
    assert check(make_package(tmp_path / "second", files))[1] == ["stray"]


def test_two_module_cycle_through_a_function_level_import(tmp_path):
    source = """\
        import pkg.low.core as core


        def later():
            from pkg.mid.service import later as again

            return again
        """
    edges = ig.collect_imports(make_package(tmp_path, {**CLEAN, "mid/helpers.py": source}))
    cycles = ig.module_cycles(edges)
    assert cycles == [["pkg.mid.helpers", "pkg.mid.service"]]
    assert ig.cycle_path(edges, cycles[0]) == ["pkg.mid.helpers", "pkg.mid.service", "pkg.mid.helpers"]
    assert ig.violations(edges, LAYERS, "pkg") == []  # a cycle inside one name breaks no layer


def test_cycle_through_a_package_init_and_self_import(tmp_path):
    # pkg.mid.service imports the package pkg.mid: an edge to its __init__, which imports pkg.mid.service back
    files = {**CLEAN, "mid/__init__.py": "from .service import later\n", "mid/helpers.py": "import pkg.mid\n"}
    edges = ig.collect_imports(make_package(tmp_path, files))
    assert "pkg.mid" in edges["pkg.mid.helpers"]
    assert ig.module_cycles(edges) == [["pkg.mid", "pkg.mid.helpers", "pkg.mid.service"]]
    assert ig.module_cycles({"pkg.a": {"pkg.a"}, "pkg.b": {"pkg.a"}}) == [["pkg.a"]]


def test_layer_table_must_not_repeat_a_name():
    with pytest.raises(ValueError, match="twice"):
        ig.layer_ranks([{"pkg"}, {"a"}, {"a"}])


# --------------------------------------------------------------------------------------------------------------------
# The command line (default table, so the synthetic packages are named pointserve)


def run_script(package_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), str(package_dir), "--check"], capture_output=True, text=True, timeout=60
    )


def test_script_check_fails_on_a_violation(tmp_path):
    package_dir = make_package(
        tmp_path,
        {
            "errors.py": "class PointServeError(Exception):\n    pass\n",
            "data/__init__.py": "import pointserve.service\n",
        },
        name="pointserve",
    )
    (package_dir / "service").mkdir()
    (package_dir / "service" / "__init__.py").write_text("from pointserve.errors import PointServeError\n")
    result = run_script(package_dir)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "imports against the order: 1" in result.stdout
    assert "pointserve.data -> pointserve.service" in result.stdout


def test_script_check_passes_on_a_clean_package(tmp_path):
    package_dir = make_package(
        tmp_path,
        {
            "errors.py": "class PointServeError(Exception):\n    pass\n",
            "service/__init__.py": "from .. import errors\n",
        },
        name="pointserve",
    )
    result = run_script(package_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "modules: 3" in result.stdout
    assert "imports against the order: 0" in result.stdout
    assert "cycles: 0" in result.stdout
