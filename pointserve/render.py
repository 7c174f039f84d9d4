"""Pictures of clouds: points coloured by predicted part (or one colour for a classified cloud), as PNG bytes.

Used by ``pointserve render`` (a client of a running server) and by the service's ``render=png`` option. It
imports numpy only; matplotlib is imported when a picture is drawn (it is in the ``train`` extra, not in the
service image). Drawing uses a :class:`matplotlib.figure.Figure` with the Agg canvas directly, never pyplot:
no global state, no display, safe in the service's worker threads.

Shapes:
    points: (N, >=3) float, raw coordinates (xyz in the first three columns)
    labels: (N,) int, ids into ``label_names`` (or None: one colour)
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from pointserve.errors import ConfigError, InputError

MATPLOTLIB_HINT = "pip install matplotlib (or pointserve[train])"
MAX_DRAWN_POINTS = 50_000  # more points add nothing a 800 x 600 picture can show, and cost seconds
ELEVATION, AZIMUTH = 20.0, -60.0  # matplotlib's 3-D default view, looking at the cloud from above one corner
UP_AXES = ("y", "z")
# tab10's colours, then tab20's light ones: part id i is always colour i % 20, on every picture of a model
_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
_TAB20_LIGHT = [
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]  # fmt: skip
PALETTE = tuple(_TAB10 + _TAB20_LIGHT)


@lru_cache(maxsize=1)
def matplotlib_available() -> bool:
    """Whether matplotlib is installed (looked up once, without importing it)."""
    return importlib.util.find_spec("matplotlib") is not None


def pyplot(needed_for: str = "charts") -> Any:
    """matplotlib.pyplot on the Agg backend (file output only, no display), or a ConfigError naming what needs it."""
    try:
        import matplotlib
    except ImportError:
        raise ConfigError(f"{needed_for} need matplotlib: {MATPLOTLIB_HINT}") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colour_index(label: int, names: Sequence[str] = ()) -> int:
    """Which palette entry part ``label`` gets: its place within its category when the names say
    ``category/part`` (a mug's body and handle are the palette's first two, most distinct colours), else its id."""
    label = int(label)
    if 0 <= label < len(names) and "/" in names[label]:
        category = names[label].split("/", 1)[0] + "/"
        return sum(1 for name in names[:label] if name.startswith(category))
    return label


def part_colour(label: int, names: Sequence[str] = ()) -> str:
    """The colour of part (or class) id ``label``: the same part is the same colour on every picture."""
    return PALETTE[colour_index(label, names) % len(PALETTE)]


def point_size(count: int) -> float:
    """Marker area (points^2) for a cloud of ``count`` points: big dots for sparse clouds, fine ones for dense."""
    return float(np.clip(200.0 / np.sqrt(max(count, 1)), 0.5, 25.0))


def answer_title(model: str, version: Any, *, source: str | None = None, category: str | None = None) -> str:
    """A picture's title: model and version, then the file it shows and the category, when known."""
    return " · ".join([f"{model} v{version}", *(part for part in (source, category) if part is not None)])


def render_png(
    points: np.ndarray,
    labels: np.ndarray | Sequence[int] | None,
    label_names: Sequence[str] = (),
    *,
    title: str = "",
    up: str = "y",
    size: tuple[int, int] = (800, 600),
) -> bytes:
    """The cloud as a PNG: an orthographic 3-D scatter (equal aspect, elevation 20, azimuth -60) with ``up`` as
    the vertical axis (``y`` for ShapeNet / ModelNet clouds), points coloured by label with a legend of the
    labels present (names from ``label_names``), and ``title`` above. The same input gives the same bytes.

    ``labels=None`` draws every point in one colour (a classified cloud: put the class in the title). Clouds of
    more than MAX_DRAWN_POINTS points are drawn from a fixed subsample of that many (the title says so).
    """
    xyz = np.asarray(points, dtype=np.float64)
    if xyz.ndim != 2 or xyz.shape[1] < 3 or not len(xyz):
        raise InputError(f"render: points must be an (N, 3) array with N >= 1, got shape {xyz.shape}")
    xyz = xyz[:, :3]
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(xyz):
            raise InputError(f"render: {len(labels)} labels for {len(xyz)} points")
    if up not in UP_AXES:
        raise InputError(f"render: up must be one of {', '.join(UP_AXES)}, got {up!r}")
    total = len(xyz)
    if total > MAX_DRAWN_POINTS:
        keep = np.sort(np.random.default_rng(0).choice(total, MAX_DRAWN_POINTS, replace=False))
        xyz = xyz[keep]
        labels = labels[keep] if labels is not None else None
        title = f"{title}\n({MAX_DRAWN_POINTS:,} of {total:,} points drawn)".lstrip("\n")
    # matplotlib's vertical axis is its z: show the cloud's up axis there (x, -z, y keeps it right-handed).
    shown = xyz if up == "z" else np.stack([xyz[:, 0], -xyz[:, 2], xyz[:, 1]], axis=1)

    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.lines import Line2D
    except ImportError:
        raise ConfigError(f"pictures need matplotlib: {MATPLOTLIB_HINT}") from None

    dpi = 100
    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.0, 0.0, 0.72 if labels is not None else 1.0, 0.9), projection="3d")
    ax.set_proj_type("ortho")
    ax.view_init(elev=ELEVATION, azim=AZIMUTH)
    low, high = shown.min(axis=0), shown.max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 1e-6)
    ax.set_xlim(centre[0] - half, centre[0] + half)
    ax.set_ylim(centre[1] - half, centre[1] + half)
    ax.set_zlim(centre[2] - half, centre[2] + half)
    ax.set_box_aspect((1, 1, 1), zoom=1.35)
    ax.set_axis_off()
    if labels is None:
        colours: Any = PALETTE[0]
    else:
        palette = np.array([part_colour(i, label_names) for i in range(int(labels.max(initial=0)) + 1)])
        colours = palette[labels]
    ax.scatter(
        shown[:, 0], shown[:, 1], shown[:, 2], c=colours, s=point_size(len(shown)), depthshade=False, linewidths=0
    )
    if labels is not None:
        present, counts = np.unique(labels, return_counts=True)
        handles = [
            Line2D(
                [],
                [],
                linestyle="",
                marker="o",
                markersize=8,
                color=part_colour(i, label_names),
                label=_legend_name(i, n, label_names),
            )
            for i, n in zip(present.tolist(), counts.tolist(), strict=True)
        ]
        fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.72, 0.45), frameon=False, fontsize=10)
    if title:
        fig.suptitle(title, fontsize=12, y=0.97)
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=dpi, metadata={"Software": None})  # no version stamp: same bytes
    return out.getvalue()


def _legend_name(label: int, count: int, names: Sequence[str]) -> str:
    name = names[label] if 0 <= label < len(names) else f"part {label}"
    return f"{name} ({count:,})"
