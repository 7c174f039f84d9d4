"""Write the sample clouds the README's curl examples send: a mug and a chair from the ``shapes`` test split.

    .venv/bin/python scripts/make_sample_clouds.py            # -> examples/clouds/{mug,chair}.{ply,npy,json}

Each object is written three ways: binary little-endian ``.ply`` (multipart upload), ``.npy`` (float32 N x 3,
for ``application/x-npy`` or as raw float32 bytes) and ``.json`` (the body ``{"points": [[x, y, z], ...]}``).
The coordinates are the raw ones of the dataset: the server applies the model's own normalisation. The
clouds are deterministic (the test split's seeded generator), so re-running rewrites the same bytes.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pointserve.data.formats import write_point_cloud
from pointserve.data.shapes import load_shapes

DEFAULT_OBJECTS = ("mug", "chair")
DEFAULT_OUT = Path(__file__).resolve().parent.parent / "examples" / "clouds"


def sample_cloud(class_name: str, num_points: int, index: int = 0) -> np.ndarray:
    """Object ``index`` of ``class_name`` in the ``shapes`` test split, (num_points, 3) float32."""
    split = load_shapes("test", num_points=num_points, samples_per_class=index + 1)
    label = split.class_names.index(class_name)
    samples = [s for s in split.samples if s.label == label]
    return np.ascontiguousarray(samples[index].points[:, :3], dtype=np.float32)


def write_sample(points: np.ndarray, out_dir: Path, name: str) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    ply = write_point_cloud(out_dir / f"{name}.ply", points, binary=True)
    npy = out_dir / f"{name}.npy"
    np.save(npy, points, allow_pickle=False)
    body = {"points": [[round(float(v), 5) for v in row] for row in points]}
    js = out_dir / f"{name}.json"
    js.write_text(json.dumps(body, separators=(",", ":")) + "\n")
    return [ply, npy, js]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--points", type=int, default=1024, help="points per cloud (default 1024)")
    parser.add_argument("--objects", default=",".join(DEFAULT_OBJECTS), help="shapes class names (default mug,chair)")
    parser.add_argument("--index", type=int, default=0, help="which test object of each class (default 0)")
    args = parser.parse_args(argv)
    for name in [n.strip() for n in args.objects.split(",") if n.strip()]:
        points = sample_cloud(name, args.points, args.index)
        for path in write_sample(points, args.out, name):
            print(f"{path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
