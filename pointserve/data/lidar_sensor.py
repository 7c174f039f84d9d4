"""A spinning multi-beam LiDAR ray-cast in numpy against analytic primitives (for :mod:`lidar_scenes`).

The sensor fires ``beams`` lasers at fixed elevations (HDL-32E-like: +10° to -30°) once per azimuth column over
360°; each ray returns the nearest hit on the ground plane ``z = 0`` or on a primitive (axis-aligned or yawed
:class:`Box`, vertical :class:`Cylinder`, yawed :class:`Ellipsoid`), within ``max_range``. Every intersection is
analytic and vectorised over rays; the one Python loop is over primitives, each tested only against the rays
of its azimuth sector and elevation band (a bounding-circle cull), so a scene of a few hundred primitives casts
in tens of milliseconds. Returns get Gaussian range noise, random dropouts, and an intensity from the surface's
albedo, the angle of incidence and noise.

Frames: primitives live in the *scene frame* (ground at ``z = 0``, sensor at ``(0, 0, height)``); the sensor's
own frame is the scene frame turned by ``yaw`` about z and lowered by ``height``, so returned points are
KITTI-like: x forward, y left, z up, the sensor at the origin and the ground near ``z = -height``.

Shapes:
    points: (N, 4) float32 x, y, z, intensity in [0, 1]; labels: (N,) int64; ``N`` varies per scan.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

# (x, y) in the scene frame -> (labels, albedos) of the ground there
GroundMaterial = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class LidarSensor:
    """The sensor model. Angles in degrees, lengths in metres."""

    beams: int = 32
    fov_up: float = 10.0
    fov_down: float = -30.0
    azimuth_step: float = 0.25
    max_range: float = 70.0
    min_range: float = 1.0
    range_noise: float = 0.02  # standard deviation
    dropout: float = 0.03  # fraction of returns lost at random
    intensity_noise: float = 0.03  # standard deviation

    @property
    def columns(self) -> int:
        return int(round(360.0 / self.azimuth_step))

    @property
    def rays(self) -> int:
        return self.beams * self.columns

    def elevations(self) -> np.ndarray:
        """``(beams,)`` radians, top beam first."""
        return np.radians(np.linspace(self.fov_up, self.fov_down, self.beams))


def _rotate_z(x: np.ndarray, y: np.ndarray, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame turned by ``yaw`` (i.e. rotate the vectors by ``-yaw``)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return c * x + s * y, -s * x + c * y


@dataclass(frozen=True)
class Box:
    """A box of full ``size`` (x, y, z) centred at ``center``, turned by ``yaw`` about z."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]
    label: int
    albedo: float
    yaw: float = 0.0

    def bounds(self) -> tuple[float, float, float, float, float]:
        cx, cy, cz = self.center
        return cx, cy, 0.5 * math.hypot(self.size[0], self.size[1]), cz - self.size[2] / 2, cz + self.size[2] / 2

    def intersect(self, origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = origin - np.asarray(self.center)
        ox, oy = _rotate_z(rel[0], rel[1], self.yaw)
        dx, dy = _rotate_z(d[:, 0], d[:, 1], self.yaw)
        local = (dx, dy, d[:, 2])
        t_near = np.full(len(d), -np.inf)
        t_far = np.full(len(d), np.inf)
        axis = np.zeros(len(d), dtype=np.int64)
        with np.errstate(divide="ignore", invalid="ignore"):
            for k, (o, dk, half) in enumerate(zip((ox, oy, rel[2]), local, np.asarray(self.size) / 2, strict=True)):
                inv = 1.0 / dk
                t1, t2 = (-half - o) * inv, (half - o) * inv
                low = np.fmin(t1, t2)
                later = low > t_near
                axis[later], t_near[later] = k, low[later]
                t_far = np.fmin(t_far, np.fmax(t1, t2))
        hit = (t_near <= t_far) & (t_near > 0)
        cosine = np.abs(np.choose(axis, local))
        return np.where(hit, t_near, np.inf), cosine


@dataclass(frozen=True)
class Cylinder:
    """A vertical cylinder (with caps) of ``radius`` around ``(x, y)``, from ``z0`` to ``z1``."""

    x: float
    y: float
    radius: float
    z0: float
    z1: float
    label: int
    albedo: float

    def bounds(self) -> tuple[float, float, float, float, float]:
        return self.x, self.y, self.radius, self.z0, self.z1

    def intersect(self, origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ox, oy, oz = origin[0] - self.x, origin[1] - self.y, origin[2]
        dx, dy, dz = d[:, 0], d[:, 1], d[:, 2]
        a = dx * dx + dy * dy
        b = 2 * (ox * dx + oy * dy)
        c = ox * ox + oy * oy - self.radius**2
        disc = b * b - 4 * a * c
        with np.errstate(divide="ignore", invalid="ignore"):
            t_side = (-b - np.sqrt(disc)) / (2 * a)
            z = oz + t_side * dz
            side = (disc >= 0) & (t_side > 0) & (z >= self.z0) & (z <= self.z1)
            best = np.where(side, t_side, np.inf)
            cosine = np.abs((ox + t_side * dx) * dx + (oy + t_side * dy) * dy) / self.radius
            for cap in (self.z0, self.z1):
                t_cap = (cap - oz) / dz
                inside = (ox + t_cap * dx) ** 2 + (oy + t_cap * dy) ** 2 <= self.radius**2
                take = inside & (t_cap > 0) & (t_cap < best)
                best = np.where(take, t_cap, best)
                cosine = np.where(take, np.abs(dz), cosine)
        return best, np.nan_to_num(cosine)


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid of semi-axes ``radii`` (x, y, z) centred at ``center``, turned by ``yaw`` about z."""

    center: tuple[float, float, float]
    radii: tuple[float, float, float]
    label: int
    albedo: float
    yaw: float = 0.0

    def bounds(self) -> tuple[float, float, float, float, float]:
        cx, cy, cz = self.center
        return cx, cy, max(self.radii[0], self.radii[1]), cz - self.radii[2], cz + self.radii[2]

    def intersect(self, origin: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        radii = np.asarray(self.radii)
        rel = origin - np.asarray(self.center)
        ox, oy = _rotate_z(rel[0], rel[1], self.yaw)
        dx, dy = _rotate_z(d[:, 0], d[:, 1], self.yaw)
        local = np.stack([dx, dy, d[:, 2]], axis=1)
        o = np.array([ox, oy, rel[2]]) / radii
        ds = local / radii
        a = (ds * ds).sum(1)
        b = 2 * (ds @ o)
        c = float(o @ o) - 1.0
        disc = b * b - 4 * a * c
        with np.errstate(invalid="ignore"):
            t = (-b - np.sqrt(disc)) / (2 * a)
        hit = (disc >= 0) & (t > 0)
        normal = (o + np.nan_to_num(t)[:, None] * ds) / radii
        cosine = np.abs((normal * local).sum(1)) / np.maximum(np.linalg.norm(normal, axis=1), 1e-12)
        return np.where(hit, t, np.inf), cosine


Primitive = Box | Cylinder | Ellipsoid


def _sector_rays(
    sensor: LidarSensor,
    elevations: np.ndarray,
    azimuth0: float,
    height: float,
    bounds: tuple[float, float, float, float, float],
) -> np.ndarray | None:
    """Flat ray indices (beam * columns + column) that may hit a primitive with these bounds, or None."""
    cx, cy, radius, z0, z1 = bounds
    dist = math.hypot(cx, cy)
    if dist - radius > sensor.max_range:
        return None
    columns, step = sensor.columns, math.radians(sensor.azimuth_step)
    if dist <= radius + 0.05:
        cols = np.arange(columns)
        beams = np.arange(sensor.beams)
    else:
        half = math.asin(radius / dist)
        phi = math.atan2(cy, cx)
        lo = math.floor((phi - half - azimuth0) / step) - 1
        hi = math.ceil((phi + half - azimuth0) / step) + 1
        cols = np.arange(lo, min(hi, lo + columns - 1) + 1) % columns
        near, far = max(dist - radius, 1e-3), dist + radius
        low, high = z0 - height, z1 - height
        el_lo = math.atan2(low, near if low < 0 else far) - 0.01
        el_hi = math.atan2(high, near if high > 0 else far) + 0.01
        beams = np.flatnonzero((elevations >= el_lo) & (elevations <= el_hi))
        if len(beams) == 0:
            return None
    return (beams[:, None] * columns + cols[None, :]).reshape(-1)


def cast_scan(
    sensor: LidarSensor,
    primitives: Sequence[Primitive],
    ground: GroundMaterial,
    *,
    height: float,
    yaw: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Cast one revolution into a scene; returns ``points (N, 4)`` float32 in the sensor frame and ``labels (N,)``.

    ``height`` is the sensor's height above the ground, ``yaw`` the sensor's heading in the scene frame. Points
    come in firing order: column by column (azimuth increasing), top beam first within a column.
    """
    elevations = sensor.elevations()
    step = math.radians(sensor.azimuth_step)
    start = float(rng.uniform(0.0, step))  # the first firing's azimuth (sensor frame)
    azimuths = start + step * np.arange(sensor.columns)
    cos_el = np.cos(elevations)[:, None]
    d_sensor = np.stack(
        [
            (cos_el * np.cos(azimuths)[None, :]).reshape(-1),
            (cos_el * np.sin(azimuths)[None, :]).reshape(-1),
            np.repeat(np.sin(elevations), sensor.columns),
        ],
        axis=1,
    )  # (beams * columns, 3), beam-major
    c, s = math.cos(yaw), math.sin(yaw)
    d_scene = np.column_stack([c * d_sensor[:, 0] - s * d_sensor[:, 1], s * d_sensor[:, 0] + c * d_sensor[:, 1]])
    d_scene = np.column_stack([d_scene, d_sensor[:, 2]])
    origin = np.array([0.0, 0.0, height])

    rays = len(d_sensor)
    best_t = np.full(rays, np.inf)
    labels = np.full(rays, -1, dtype=np.int64)
    albedo = np.zeros(rays)
    cosine = np.zeros(rays)
    down = d_scene[:, 2] < 0
    with np.errstate(divide="ignore"):
        t_ground = np.where(down, -height / d_scene[:, 2], np.inf)
    best_t[:] = t_ground
    cosine[:] = np.abs(d_scene[:, 2])
    for prim in primitives:
        index = _sector_rays(sensor, elevations, start + yaw, height, prim.bounds())
        if index is None:
            continue
        t, cos_hit = prim.intersect(origin, d_scene[index])
        closer = t < best_t[index]
        if closer.any():
            won = index[closer]
            best_t[won], cosine[won] = t[closer], cos_hit[closer]
            labels[won], albedo[won] = prim.label, prim.albedo

    hit = (best_t >= sensor.min_range) & (best_t <= sensor.max_range)
    on_ground = hit & (labels < 0)
    if on_ground.any():
        gx = d_scene[on_ground, 0] * best_t[on_ground]
        gy = d_scene[on_ground, 1] * best_t[on_ground]
        labels[on_ground], albedo[on_ground] = ground(gx, gy)
    hit &= rng.random(rays) >= sensor.dropout

    # firing order: column-major (azimuth, then beam)
    order = np.arange(rays).reshape(sensor.beams, sensor.columns).T.reshape(-1)
    keep = order[hit[order]]
    r = best_t[keep] + rng.normal(0.0, sensor.range_noise, len(keep))
    xyz = d_sensor[keep] * r[:, None]
    shade = albedo[keep] * (0.35 + 0.65 * cosine[keep])
    intensity = np.clip(shade + rng.normal(0.0, sensor.intensity_noise, len(keep)), 0.0, 1.0)
    points = np.column_stack([xyz, intensity]).astype(np.float32)
    return points, labels[keep]


__all__ = ["Box", "Cylinder", "Ellipsoid", "GroundMaterial", "LidarSensor", "Primitive", "cast_scan"]
