"""Surface samplers for parametric primitives, the building blocks of the synthetic ``shapes`` dataset.

Each primitive knows its surface area (so parts get points in proportion to it) and samples ``n`` points
uniformly on its surface. The up axis is y, as in ModelNet and ShapeNet.

Shapes:
    sample(n, rng) -> (n, 3) float32
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Vec = tuple[float, float, float]


def _orient(points: np.ndarray, axis: str) -> np.ndarray:
    """Primitives are built along y; rotate them to lie along x or z when asked."""
    if axis == "y":
        return points
    if axis == "x":
        return points[:, [1, 0, 2]]
    return points[:, [0, 2, 1]]


@dataclass(frozen=True)
class Box:
    center: Vec
    size: Vec

    @property
    def area(self) -> float:
        x, y, z = self.size
        return 2 * (x * y + y * z + x * z)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        sx, sy, sz = self.size
        face_areas = np.array([sy * sz, sy * sz, sx * sz, sx * sz, sx * sy, sx * sy])
        faces = rng.choice(6, size=n, p=face_areas / face_areas.sum())
        pts = rng.uniform(-0.5, 0.5, size=(n, 3))
        axis = faces // 2
        pts[np.arange(n), axis] = np.where(faces % 2 == 0, -0.5, 0.5)
        return (pts * np.array(self.size) + np.array(self.center)).astype(np.float32)


@dataclass(frozen=True)
class Frustum:
    """A truncated cone (a cylinder when the radii are equal, a cone when ``r_top`` is 0), base at ``base``."""

    base: Vec
    r_bottom: float
    r_top: float
    height: float
    cap_bottom: bool = True
    cap_top: bool = True
    axis: str = "y"

    @property
    def _side_area(self) -> float:
        slant = np.hypot(self.height, self.r_bottom - self.r_top)
        return float(np.pi * (self.r_bottom + self.r_top) * slant)

    @property
    def area(self) -> float:
        caps = self.cap_bottom * np.pi * self.r_bottom**2 + self.cap_top * np.pi * self.r_top**2
        return self._side_area + float(caps)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        parts = np.array(
            [self._side_area, self.cap_bottom * np.pi * self.r_bottom**2, self.cap_top * np.pi * self.r_top**2]
        )
        which = rng.choice(3, size=n, p=parts / parts.sum())
        theta = rng.uniform(0, 2 * np.pi, n)
        # Side: height fraction t chosen so that points are uniform on the slanted surface.
        u = rng.uniform(0, 1, n)
        r0, r1 = self.r_bottom, self.r_top
        if abs(r1 - r0) < 1e-9:
            t = u
        else:
            t = (np.sqrt(r0**2 + u * (r1**2 - r0**2)) - r0) / (r1 - r0)
        radius = r0 + (r1 - r0) * t
        y = t * self.height
        cap_r = np.sqrt(rng.uniform(0, 1, n))
        radius = np.where(which == 1, cap_r * r0, np.where(which == 2, cap_r * r1, radius))
        y = np.where(which == 1, 0.0, np.where(which == 2, self.height, y))
        pts = np.stack([radius * np.cos(theta), y, radius * np.sin(theta)], axis=1)
        return (_orient(pts, self.axis) + np.array(self.base)).astype(np.float32)


@dataclass(frozen=True)
class Ellipsoid:
    center: Vec
    radii: Vec

    @property
    def area(self) -> float:
        a, b, c = self.radii
        p = 1.6075  # Knud Thomsen's approximation, within about 1%
        return float(4 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3) ** (1 / p))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        d = rng.standard_normal((n, 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
        return (d * np.array(self.radii) + np.array(self.center)).astype(np.float32)


@dataclass(frozen=True)
class TorusArc:
    """Part of a torus in the x-y plane (a mug's handle), centred at ``center``, arc from ``start`` to ``end``."""

    center: Vec
    major: float
    minor: float
    start: float = -np.pi / 2
    end: float = np.pi / 2

    @property
    def area(self) -> float:
        return float(4 * np.pi**2 * self.major * self.minor * (self.end - self.start) / (2 * np.pi))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        u = rng.uniform(self.start, self.end, n)
        v = rng.uniform(0, 2 * np.pi, n)
        ring = self.major + self.minor * np.cos(v)
        pts = np.stack([ring * np.cos(u), ring * np.sin(u), self.minor * np.sin(v)], axis=1)
        return (pts + np.array(self.center)).astype(np.float32)


Primitive = Box | Frustum | Ellipsoid | TorusArc
