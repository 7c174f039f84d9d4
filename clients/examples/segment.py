"""Part-segment a cloud: a label for every input point, counted per part.

.venv/bin/python clients/examples/segment.py --model shapes-partseg --category mug examples/clouds/mug.npy
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pointserve_client import PointServeClient  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "clouds" / "mug.npy"


def main() -> int:
    parser = argparse.ArgumentParser(description="part-segment a point cloud")
    parser.add_argument("file", nargs="?", default=str(SAMPLE), help=".npy (N, 3) or any uploadable cloud file")
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--model", default="shapes-partseg")
    parser.add_argument("--category", default="mug", help="the object's category (name or id)")
    parser.add_argument("--api-key")
    args = parser.parse_args()
    with PointServeClient(args.url, api_key=args.api_key) as client:
        if args.file.endswith(".npy"):
            points = np.load(args.file, allow_pickle=False)
            answer = client.predict(args.model, points, category=args.category)  # float32 bytes on the wire
        else:
            answer = client.predict_file(args.model, args.file, category=args.category)
    print(f"{args.file}: {answer.num_points} points, category {answer.category}")
    for name, count in sorted(answer.counts.items(), key=lambda item: -item[1]):
        print(f"  {name:<24} {count:>6} points")
    print("first points:", ", ".join(answer.point_labels[:5]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
