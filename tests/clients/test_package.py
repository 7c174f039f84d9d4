"""``pip install ./clients`` gives an importable ``pointserve-client`` that needs no pointserve checkout."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_installs_as_a_package_and_imports_outside_the_checkout(tmp_path):
    target = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target", str(target),
         str(ROOT / "clients")],
        capture_output=True, text=True, timeout=180, cwd=tmp_path,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert (target / "pointserve_client" / "client.py").is_file()
    assert any(p.name.startswith("pointserve_client-0.1.0") for p in target.glob("*.dist-info"))
    # -I: no user site, no cwd, no PYTHONPATH; the venv's httpx/numpy stay reachable through site-packages.
    probe = (
        f"import sys; sys.path.insert(0, {str(target)!r}); import pointserve_client as c; "
        "print(c.__file__); print(c.PointServeClient.__name__, c.SegmentationResult.__name__); "
        "print('pointserve' in sys.modules)"
    )
    run = subprocess.run([sys.executable, "-I", "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    file, names, imported_pointserve = run.stdout.split("\n")[:3]
    assert file.startswith(str(target))
    assert names == "PointServeClient SegmentationResult"
    assert imported_pointserve == "False"
