"""Write the built-in ``shapes`` set as a ModelNet40 HDF5 folder, to try the on-disk dataset path without a download.

    .venv/bin/python scripts/shapes_as_modelnet_h5.py /tmp/m40         # -> /tmp/m40/modelnet40_ply_hdf5_2048/
    .venv/bin/pointserve train --dataset modelnet40_h5 --data-root /tmp/m40 --num-points 1024 -o runs/m40h5

The layout is the one PointNet's ``modelnet40_ply_hdf5_2048.zip`` ships: ``ply_data_{train,test}{0,1,..}.h5``
(``data`` float32 (B, 2048, 3), ``label`` uint8 (B, 1)), ``{train,test}_files.txt`` naming them as
``data/modelnet40_ply_hdf5_2048/<file>``, and ``shape_names.txt``. Files hold at most 2,048 clouds, as the
original's do; clouds are shuffled across classes. Deterministic for a seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import h5py
import numpy as np

from pointserve.data.shapes import load_shapes

FOLDER = "modelnet40_ply_hdf5_2048"
POINTS = 2048
PER_FILE = 2048


def write(root: Path, *, train_per_class: int, test_per_class: int, seed: int) -> Path:
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for split, per_class in (("train", train_per_class), ("test", test_per_class)):
        data = load_shapes(split, num_points=POINTS, seed=seed, samples_per_class=per_class)
        order = np.random.default_rng([seed, len(split)]).permutation(len(data))
        points = np.stack([data.samples[i].points for i in order]).astype(np.float32)
        labels = np.array([[data.samples[i].label] for i in order], dtype=np.uint8)
        names = []
        for index, start in enumerate(range(0, len(points), PER_FILE)):
            name = f"ply_data_{split}{index}.h5"
            with h5py.File(folder / name, "w") as h5:
                h5.create_dataset("data", data=points[start : start + PER_FILE])
                h5.create_dataset("label", data=labels[start : start + PER_FILE])
            names.append(f"data/{FOLDER}/{name}")
        (folder / f"{split}_files.txt").write_text("\n".join(names) + "\n")
        print(f"{split}: {len(points)} clouds x {POINTS} points in {len(names)} file(s)")
    (folder / "shape_names.txt").write_text("\n".join(data.class_names) + "\n")
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="the dataset root (the folder that will hold modelnet40_ply_hdf5_2048)")
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--test-per-class", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7: not the built-in set's 0)")
    args = parser.parse_args(argv)
    folder = write(args.root, train_per_class=args.train_per_class, test_per_class=args.test_per_class, seed=args.seed)
    print(f"wrote {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
