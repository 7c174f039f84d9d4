"""Street scenes for :mod:`pointserve.data.lidar_scenes`: roads, sidewalks, buildings, vehicles, people and
vegetation as analytic primitives (:mod:`pointserve.data.lidar_sensor`), laid out from a random generator.

The scene frame: the main road runs along x, the sensor stands on it at the origin (in a right-hand lane,
driving towards +x), the ground is ``z = 0``. A scene is a straight road, a crossing or a T-junction (a second
road along y), urban (tall buildings close to the sidewalk) or suburban (low houses behind front yards, more
open land), at a density of traffic and people and a share of vegetation drawn per scene.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from pointserve.data.lidar_sensor import Box, Cylinder, Ellipsoid, Primitive

CLASS_NAMES = ["car", "truck", "pedestrian", "cyclist", "road", "sidewalk", "building", "vegetation", "terrain", "pole"]
CAR, TRUCK, PEDESTRIAN, CYCLIST, ROAD, SIDEWALK, BUILDING, VEGETATION, TERRAIN, POLE = range(len(CLASS_NAMES))
_EXTENT = 90.0  # roads run this far either way from the sensor (beyond its range)


@dataclass(frozen=True)
class _Road:
    """A straight road: along x (``axis`` 0) or y (1) through ``center`` across, ``half`` its half width."""

    axis: int
    center: float
    half: float
    lanes: int  # per direction
    lane_width: float
    parking: float  # width of the parking strip on each side (0 = none)
    walk: float  # sidewalk width
    curb: float  # sidewalk height
    lo: float = -_EXTENT
    hi: float = _EXTENT

    def xy(self, s: float, u: float) -> tuple[float, float]:
        """Scene (x, y) of the point ``s`` along the road and ``u`` to its left of the centre line."""
        return (s, self.center + u) if self.axis == 0 else (self.center - u, s)

    @property
    def yaw(self) -> float:
        return 0.0 if self.axis == 0 else math.pi / 2

    def across(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Scene (x, y) -> (s along the road, u to the left of its centre line)."""
        return (x, y - self.center) if self.axis == 0 else (y, self.center - x)

    def contains(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        s, u = self.across(x, y)
        return (np.abs(u) <= self.half) & (s >= self.lo) & (s <= self.hi)


def _intervals(
    lo: float, hi: float, gaps: Sequence[tuple[float, float]], piece: float
) -> Iterator[tuple[float, float]]:
    """``[lo, hi]`` minus ``gaps``, cut into pieces at most ``piece`` long."""
    cuts = [(lo, hi)]
    for a, b in gaps:
        cuts = [part for c, d in cuts for part in ((c, min(d, a)), (max(c, b), d)) if part[1] - part[0] > 0.3]
    for a, b in cuts:
        count = max(1, math.ceil((b - a) / piece))
        edges = np.linspace(a, b, count + 1)
        yield from zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True)


def _blocked(s: float, length: float, gaps: Sequence[tuple[float, float]]) -> bool:
    return any(s + length / 2 > a and s - length / 2 < b for a, b in gaps)


class StreetScene:
    """A street scene's primitives and its ground material, drawn from ``rng``.

    Objects are added whole (:meth:`_object`): one that would overlap the ego vehicle is left out entirely.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.prims: list[Primitive] = []
        self.density = float(rng.uniform(0.3, 1.0))
        self.urban = bool(rng.random() < 0.55)
        self.green = float(rng.uniform(0.2, 1.0))
        self.asphalt = float(rng.uniform(0.06, 0.14))
        self.roads = self._roads()
        main = self.roads[0]
        for side in (-1, 1):
            crossing = [r for r in self.roads[1:] if (r.hi > main.center if side > 0 else r.lo < main.center)]
            # no sidewalk across a crossing road's carriageway, no buildings or parked cars across its sidewalks
            walk = [(r.center - r.half, r.center + r.half) for r in crossing]
            lots = [(r.center - r.half - r.walk - 1.5, r.center + r.half + r.walk + 1.5) for r in crossing]
            self._side(main, side, walk, lots)
        span = (main.center - main.half - main.walk, main.center + main.half + main.walk)
        for road in self.roads[1:]:
            for side in (-1, 1):
                self._side(road, side, [span], [(span[0] - 1.5, span[1] + 1.5)])
        for road in self.roads:
            self._traffic(road, [] if road is main else [(span[0] - 1, span[1] + 1)])

    def _side(self, road: _Road, side: int, walk_gaps, lot_gaps) -> None:
        self._sidewalk(road, side, walk_gaps)
        self._street_furniture(road, side, walk_gaps, lot_gaps)
        self._lots(road, side, lot_gaps)
        if road.parking:
            self._parked(road, side, lot_gaps)

    # ------------------------------------------------------------------------------------------- layout
    def _roads(self) -> list[_Road]:
        rng = self.rng
        lanes = int(rng.choice([1, 1, 2]))
        lane_width = float(rng.uniform(3.0, 3.6))
        parking = float(rng.choice([0.0, 2.2], p=[0.4, 0.6]))
        ego_lane = int(rng.integers(lanes))
        half = lanes * lane_width + parking
        ego_u = -(ego_lane + 0.5) * lane_width  # right-hand traffic: the ego drives in +x on the right
        walk, curb = float(rng.uniform(1.5, 4.0)), float(rng.uniform(0.1, 0.2))
        roads = [_Road(0, -ego_u, half, lanes, lane_width, parking, walk, curb)]
        kind = rng.choice(["straight", "crossing", "t_junction"], p=[0.45, 0.35, 0.2])
        if kind != "straight":
            lanes2 = int(rng.choice([1, 1, 2]))
            parking2 = float(rng.choice([0.0, 2.2]))
            lo, hi = -_EXTENT, _EXTENT
            if kind == "t_junction":
                lo, hi = (roads[0].center, _EXTENT) if rng.random() < 0.5 else (-_EXTENT, roads[0].center)
            center, walk2 = float(rng.uniform(-35, 35)), float(rng.uniform(1.5, 4.0))
            half2 = lanes2 * lane_width + parking2
            roads.append(_Road(1, center, half2, lanes2, lane_width, parking2, walk2, curb, lo, hi))
        return roads

    def _object(self, *prims: Primitive, stuff: bool = False) -> None:
        for prim in () if stuff else prims:  # the ego vehicle: about 4.6 m x 1.9 m around the sensor
            cx, cy, radius, _, _ = prim.bounds()
            if abs(cx) < 2.4 + radius and abs(cy) < 1.0 + radius:
                return
        self.prims.extend(prims)

    def _box(self, road: _Road, s: float, u: float, z0: float, size, label: int, albedo: float, turn=0.0) -> Box:
        x, y = road.xy(s, u)
        return Box((x, y, z0 + size[2] / 2), tuple(size), label, albedo, road.yaw + turn)

    def _span(self, road: _Road, reach: float = 60.0) -> float:
        """A position along ``road``, within ``reach`` of the sensor's crossing (where the sensor sees it)."""
        return float(self.rng.uniform(max(road.lo, -reach), min(road.hi, reach)))

    # ------------------------------------------------------------------------------------------- stuff
    def _sidewalk(self, road: _Road, side: int, gaps) -> None:
        albedo = float(self.rng.uniform(0.25, 0.4))
        u = side * (road.half + road.walk / 2)
        for a, b in _intervals(road.lo, road.hi, gaps, 15.0):
            size = (b - a, road.walk, road.curb)
            self._object(self._box(road, (a + b) / 2, u, 0.0, size, SIDEWALK, albedo), stuff=True)

    def _lots(self, road: _Road, side: int, gaps) -> None:
        """Buildings along one side behind a front yard, with gaps (terrain, trees, bushes); or open land."""
        rng = self.rng
        edge = road.half + road.walk
        setback = float(rng.uniform(0, 4) if self.urban else rng.uniform(3, 10))
        if rng.random() < (0.9 if self.urban else 0.7):
            s = road.lo + float(rng.uniform(0, 10))
            while s < road.hi:
                length = float(rng.uniform(10, 35) if self.urban else rng.uniform(8, 16))
                depth = float(rng.uniform(8, 20) if self.urban else rng.uniform(7, 12))
                height = float(rng.uniform(8, 26) if self.urban else rng.uniform(4, 9))
                mid = s + length / 2
                if not _blocked(mid, length, gaps):
                    back = edge + setback + float(rng.uniform(0, 1.5))
                    albedo = float(rng.uniform(0.2, 0.6))
                    size = (length, depth, height)
                    self._object(
                        self._box(road, mid, side * (back + depth / 2), 0.0, size, BUILDING, albedo), stuff=True
                    )
                    if setback > 1.5 and rng.random() < 0.4 * self.green:
                        hedge = (length * float(rng.uniform(0.4, 0.9)), 0.8, float(rng.uniform(0.7, 1.5)))
                        self._object(
                            self._box(road, mid, side * (edge + 0.8), 0.0, hedge, VEGETATION, 0.45), stuff=True
                        )
                gap = float(rng.uniform(3, 15)) if rng.random() < (0.3 if self.urban else 0.6) else 0.0
                if gap > 4 and not _blocked(s + length + gap / 2, gap, gaps):
                    for _ in range(int(rng.integers(0, 3))):
                        self._tree(road, s + length + float(rng.uniform(0.5, gap - 0.5)), side * (edge + 6))
                s += length + gap
        else:  # open land: scattered trees and bushes
            for _ in range(int(rng.poisson(10 * self.green))):
                s, u = self._span(road, _EXTENT), side * (edge + setback + float(rng.uniform(0, 25)))
                if not _blocked(s, 4.0, gaps):
                    (self._tree if rng.random() < 0.6 else self._bush)(road, s, u)
        for _ in range(int(rng.poisson(6 * self.green)) if setback > 1.5 else 0):  # bushes in front yards
            s = self._span(road, _EXTENT)
            if not _blocked(s, 2.0, gaps):
                self._bush(road, s, side * (edge + float(rng.uniform(0.6, setback))))

    def _tree(self, road: _Road, s: float, u: float) -> None:
        rng = self.rng
        x, y = road.xy(s, u)
        trunk = float(rng.uniform(1.5, 3.5))
        crown = (float(rng.uniform(1.2, 3.2)), float(rng.uniform(1.5, 4.0)))
        radii = (crown[0], crown[0] * float(rng.uniform(0.8, 1.2)), crown[1])
        self._object(
            Cylinder(x, y, float(rng.uniform(0.1, 0.3)), 0.0, trunk + 0.5, VEGETATION, 0.3),
            Ellipsoid((x, y, trunk + crown[1] * 0.9), radii, VEGETATION, 0.45),
        )

    def _bush(self, road: _Road, s: float, u: float) -> None:
        rng = self.rng
        x, y = road.xy(s, u)
        r = float(rng.uniform(0.4, 1.3))
        radii = (r, r * float(rng.uniform(0.7, 1.3)), r * float(rng.uniform(0.5, 0.9)))
        self._object(Ellipsoid((x, y, radii[2] * 0.8), radii, VEGETATION, 0.45, float(rng.uniform(0, np.pi))))

    def _street_furniture(self, road: _Road, side: int, walk_gaps, lot_gaps) -> None:
        """Street lights on the kerb side of the sidewalk, street trees, pedestrians on the sidewalk."""
        rng = self.rng
        s = road.lo + float(rng.uniform(0, 20))
        kerb_u = side * (road.half + 0.4)
        while s < road.hi:
            if not _blocked(s, 1.0, lot_gaps):
                x, y = road.xy(s, kerb_u)
                height, arm = float(rng.uniform(5, 9)), float(rng.uniform(1.0, 2.5))
                self._object(
                    Cylinder(x, y, float(rng.uniform(0.07, 0.14)), 0.0, height, POLE, 0.5),
                    self._box(road, s, kerb_u - side * arm / 2, height - 0.15, (0.25, arm, 0.15), POLE, 0.5),
                )
            s += float(rng.uniform(18, 40))
        if road.walk >= 2.5 and rng.random() < self.green:
            s = road.lo + float(rng.uniform(0, 10))
            while s < road.hi:
                if not _blocked(s, 3.0, lot_gaps):
                    self._tree(road, s, side * (road.half + road.walk - 0.9))
                s += float(rng.uniform(7, 20))
        for _ in range(int(rng.poisson(8 * self.density))):
            s = self._span(road)
            z0 = 0.0 if _blocked(s, 0.5, walk_gaps) else road.curb  # a gap in the sidewalk: crossing the road
            self._pedestrian(road, s, side * (road.half + float(rng.uniform(0.4, road.walk - 0.3))), z0)

    # ------------------------------------------------------------------------------------------- things
    def _pedestrian(self, road: _Road, s: float, u: float, z0: float) -> None:
        rng = self.rng
        x, y = road.xy(s, u)
        k = float(rng.uniform(0.85, 1.08))  # 1.5-1.9 m tall
        turn = road.yaw + float(rng.choice([0, np.pi])) + float(rng.normal(0, 0.4))
        c, sn = math.cos(turn + np.pi / 2), math.sin(turn + np.pi / 2)
        apart = float(rng.uniform(0.05, 0.12))
        legs = [
            Cylinder(x + g * apart * c, y + g * apart * sn, 0.075 * k, z0, z0 + 0.85 * k, PEDESTRIAN, 0.3)
            for g in (-1, 1)
        ]
        albedo = float(rng.uniform(0.1, 0.5))
        self._object(
            *legs,
            Ellipsoid((x, y, z0 + 1.2 * k), (0.13 * k, 0.23 * k, 0.33 * k), PEDESTRIAN, albedo, turn),
            Ellipsoid((x, y, z0 + 1.64 * k), (0.1 * k, 0.1 * k, 0.12 * k), PEDESTRIAN, 0.35),
        )

    def _vehicle(self, road: _Road, s: float, u: float, turn: float, label: int, length: float) -> None:
        """A car (body, cabin) or a truck (cab, cargo box) on four wheels; ``turn`` is its yaw on the road."""
        rng = self.rng
        albedo = float(rng.uniform(0.08, 0.7))
        ahead = math.cos(turn)  # +1 facing along the road, -1 against it
        if label == CAR:
            width, body = float(rng.uniform(1.65, 1.95)), float(rng.uniform(0.65, 0.9))
            cabin = (length * float(rng.uniform(0.45, 0.6)), width * 0.88, float(rng.uniform(0.45, 0.65)))
            parts = [
                self._box(road, s, u, 0.3, (length, width, body), label, albedo, turn),
                self._box(road, s - ahead * length * 0.08, u, 0.3 + body, cabin, label, albedo * 0.6, turn),
            ]
        else:
            width, cab = float(rng.uniform(2.3, 2.55)), float(rng.uniform(1.8, 2.4))
            cab_size = (cab, width, float(rng.uniform(2.2, 2.8)))
            cargo = (length - cab - 0.3, width, float(rng.uniform(2.6, 3.6)))
            parts = [
                self._box(road, s + ahead * (length - cab) / 2, u, 0.5, cab_size, label, albedo, turn),
                self._box(road, s - ahead * (cab + 0.3) / 2, u, 0.9, cargo, label, float(rng.uniform(0.3, 0.7)), turn),
            ]
        for end in (-0.33, 0.33):  # wheels: the body sits above the road, which shows under it
            for edge in (-0.4, 0.4):
                parts.append(
                    self._box(road, s + ahead * end * length, u + edge * width, 0.0, (0.7, 0.3, 0.62), label, 0.1, turn)
                )
        self._object(*parts)

    def _parked(self, road: _Road, side: int, gaps) -> None:
        rng = self.rng
        s = road.lo + float(rng.uniform(0, 8))
        while s < road.hi:
            truck = rng.random() < 0.05
            length = float(rng.uniform(6, 9) if truck else rng.uniform(3.8, 4.9))
            if rng.random() < 0.4 + 0.5 * self.density and not _blocked(s + length / 2, length + 3, gaps):
                turn = float(rng.normal(0, 0.04)) + (0.0 if rng.random() < 0.8 else np.pi)
                u = side * (road.half - road.parking / 2)
                self._vehicle(road, s + length / 2, u, turn, TRUCK if truck else CAR, length)
            s += length + float(rng.uniform(0.6, 3.0))

    def _traffic(self, road: _Road, gaps) -> None:
        """Moving cars and trucks in the lanes, cyclists at the kerb."""
        rng = self.rng
        for side in (-1, 1):
            for lane in range(road.lanes):
                u = side * (lane + 0.5) * road.lane_width
                s = road.lo + float(rng.uniform(0, 30))
                while s < road.hi:
                    truck = rng.random() < 0.12
                    length = float(rng.uniform(7, 12) if truck else rng.uniform(3.8, 4.9))
                    if not _blocked(s, length + 4, gaps):
                        turn = (0.0 if side < 0 else np.pi) + float(rng.normal(0, 0.02))
                        self._vehicle(road, s, u + float(rng.normal(0, 0.2)), turn, TRUCK if truck else CAR, length)
                    s += length + float(rng.uniform(6, 25)) / self.density
            for _ in range(int(rng.poisson(1.5 * self.density))):
                s = self._span(road)
                u = side * (road.half - road.parking - float(rng.uniform(0.5, 0.9)))
                if not _blocked(s, 2.5, gaps):
                    self._cyclist(road, s, u, 0.0 if side < 0 else np.pi)

    def _cyclist(self, road: _Road, s: float, u: float, turn: float) -> None:
        rng = self.rng
        x, y = road.xy(s, u)
        yaw = road.yaw + turn + float(rng.normal(0, 0.05))
        c, sn = math.cos(yaw), math.sin(yaw)
        wheels = [
            Ellipsoid((x + e * c, y + e * sn, 0.34), (0.34, 0.03, 0.34), CYCLIST, 0.3, yaw) for e in (-0.52, 0.52)
        ]
        shirt = float(rng.uniform(0.1, 0.5))
        self._object(
            *wheels,
            Box((x, y, 0.7), (1.0, 0.08, 0.35), CYCLIST, 0.4, yaw),  # frame
            Box((x - 0.05 * c, y - 0.05 * sn, 0.65), (0.25, 0.3, 0.6), CYCLIST, 0.3, yaw),  # legs
            Ellipsoid((x - 0.1 * c, y - 0.1 * sn, 1.25), (0.28, 0.2, 0.3), CYCLIST, shirt, yaw),
            Ellipsoid((x + 0.1 * c, y + 0.1 * sn, 1.68), (0.1, 0.1, 0.12), CYCLIST, 0.35),
        )

    # ------------------------------------------------------------------------------------------- ground
    def ground(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Road inside a carriageway (lane markings bright), terrain elsewhere."""
        labels = np.full(len(x), TERRAIN, dtype=np.int64)
        albedo = np.full(len(x), 0.22)
        for road in self.roads:
            on = road.contains(x, y)
            labels[on], albedo[on] = ROAD, self.asphalt
            s, u = road.across(x, y)
            au = np.abs(u)
            centre = (au < 0.08) & (np.mod(s, 9.0) < 3.0)
            edge = np.abs(au - (road.half - road.parking - 0.25)) < 0.08
            lanes = (road.lanes > 1) & (np.abs(au - road.lane_width) < 0.07) & (np.mod(s + 4.5, 9.0) < 3.0)
            albedo[on & (centre | edge | lanes)] = 0.75
        return labels, albedo + self.rng.normal(0, 0.02, len(x)).clip(-0.05, 0.05)


__all__ = ["CLASS_NAMES", "StreetScene"]
