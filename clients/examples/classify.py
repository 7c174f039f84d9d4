"""Classify point-cloud files (or the shipped sample clouds) with a running pointserve.

.venv/bin/python clients/examples/classify.py --model shapes-cls examples/clouds/mug.ply examples/clouds/chair.npy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # clients/ on the path, for pointserve_client

from pointserve_client import PointServeClient  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[2] / "examples" / "clouds"


def main() -> int:
    parser = argparse.ArgumentParser(description="classify point-cloud files")
    parser.add_argument("files", nargs="*", help=".ply .pcd .xyz .txt .npy .las .laz (default: the sample clouds)")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="shapes-cls")
    parser.add_argument("--top-k", type=int, default=3)
    parser.add_argument("--api-key", help="bearer token, when the server needs one")
    args = parser.parse_args()
    files = args.files or sorted(str(p) for p in SAMPLES.glob("*.ply"))
    with PointServeClient(args.url, api_key=args.api_key) as client:
        for path in files:
            answer = client.predict_file(args.model, path, top_k=args.top_k)
            ranked = ", ".join(f"{c.label} {c.score:.3f}" for c in answer.top_k)
            print(f"{path}: {answer.label} ({answer.score:.3f})  top-{args.top_k}: {ranked}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
