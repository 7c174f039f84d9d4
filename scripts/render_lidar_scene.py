"""Draw one ``lidar_scenes`` scan from above: points coloured by class, and its BEV pillar occupancy mask.

    .venv/bin/python scripts/render_lidar_scene.py      # test scan 8 of seed 0 -> docs/images/lidar-scene.png
    .venv/bin/python scripts/render_lidar_scene.py --index 3 --out /tmp/scan.png --pillar 0.16 --extent 40

Left: every point of the scan within ``--extent`` metres, seen from above (x forward to the right), coloured by
its class. Right: the occupancy mask of :func:`pointserve.geometry.pillar_grid` over the same square at
``--pillar`` metres per pillar (black = occupied), with the fraction of occupied pillars in the title.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pointserve.data.lidar_scenes import CLASS_NAMES, generate_scan
from pointserve.geometry import pillar_grid

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "images" / "lidar-scene.png"
COLOURS = {
    "car": "#1f77b4",
    "truck": "#17becf",
    "pedestrian": "#d62728",
    "cyclist": "#e377c2",
    "road": "#7f7f7f",
    "sidewalk": "#c49c94",
    "building": "#ff7f0e",
    "vegetation": "#2ca02c",
    "terrain": "#bcbd22",
    "pole": "#9467bd",
}


def render(seed: int, index: int, split: str, extent: float, pillar: float, out: Path, dpi: int) -> float:
    """Write the picture; returns the occupied fraction of the pillar grid."""
    points, labels = generate_scan(seed, index, split=split)
    grid = pillar_grid(points, (-extent, extent), (-extent, extent), pillar)
    occupied = float(grid.occupancy.mean())
    near = grid.inside
    fig = Figure(figsize=(13, 6.4), dpi=dpi)
    left, right = fig.subplots(1, 2)
    order = np.argsort(points[near, 2], kind="stable")  # higher points drawn last (roofs over the ground)
    xy, lab = points[near][order], labels[near][order]
    cmap = ListedColormap([COLOURS[name] for name in CLASS_NAMES])
    left.scatter(xy[:, 0], xy[:, 1], c=lab, cmap=cmap, vmin=-0.5, vmax=len(CLASS_NAMES) - 0.5, s=0.5, linewidths=0)
    left.set_title(f"lidar_scenes {split} scan {index} (seed {seed}): {len(points)} points, by class")
    handles = [Patch(color=COLOURS[name], label=name) for name in CLASS_NAMES]
    left.legend(handles=handles, loc="upper left", fontsize=7, ncol=2, framealpha=0.85)
    right.imshow(grid.occupancy, origin="lower", cmap="Greys", extent=(-extent, extent, -extent, extent))
    height, width = grid.grid_shape
    right.set_title(f"BEV occupancy, {pillar} m pillars ({height} x {width}): {100 * occupied:.1f} % occupied")
    for ax in (left, right):
        ax.set_xlim(-extent, extent)
        ax.set_ylim(-extent, extent)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m, forward)")
        ax.set_ylabel("y (m, left)")
        ax.plot([0], [0], marker="^", color="black", markersize=5)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    return occupied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--index", type=int, default=8)  # the picture in docs/lidar.md: a crossing
    parser.add_argument("--split", default="test")
    parser.add_argument("--extent", type=float, default=40.0, help="half side of the square drawn, metres")
    parser.add_argument("--pillar", type=float, default=0.2, help="pillar size, metres")
    parser.add_argument("--dpi", type=int, default=90)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    occupied = render(args.seed, args.index, args.split, args.extent, args.pillar, args.out, args.dpi)
    print(f"{args.out}: {100 * occupied:.2f} % of pillars occupied")


if __name__ == "__main__":
    main()
