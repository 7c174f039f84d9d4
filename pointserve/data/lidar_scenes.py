"""The built-in ``lidar_scenes`` dataset: LiDAR scans of generated street scenes with per-point semantic labels.

Each scan is one revolution of a simulated 32-beam spinning LiDAR (:mod:`pointserve.data.lidar_sensor`,
HDL-32E-like) mounted 1.7-1.9 m above a road, ray-cast into a street scene generated from ``(seed, split,
index)``: a straight road, a crossing or a T-junction, with lanes, lane markings (bright in intensity), parking
strips, raised sidewalks, front yards (terrain), rows of buildings with gaps, parked and moving cars, trucks,
cyclists, pedestrians, street lights, trees and hedges, at a density and in an urban or suburban style drawn
per scene. No download; the same seed gives a bit-identical scan.

Points are in the sensor frame like KITTI's velodyne files (x forward, y left, z up, the ground near
``z = -height``) with 4 channels: x, y, z, intensity in [0, 1]. Scans have a varying number of points (about
36k-44k with the default sensor); :func:`generate_scan` gives a whole scan, and the dataset keeps scans whole
unless ``num_points`` asks for a fixed size (a random subset, or repeats when a scan has fewer).

Task: ``semantic_segmentation``; the per-point labels are :data:`CLASS_NAMES` (``part_names`` of the dataset, as
for every segmentation set; the one category is ``street_scene``). Every return hits a labelled surface, so
no point is unlabelled.

Shapes:
    points: (N, 4) float32 x, y, z, intensity; labels: (N,) int64 in ``0..len(CLASS_NAMES) - 1``
"""

from __future__ import annotations

from functools import partial

import numpy as np

from pointserve.data.base import LazySamples, PointCloudDataset, Sample
from pointserve.data.lidar_sensor import LidarSensor, cast_scan
from pointserve.data.lidar_street import CLASS_NAMES, StreetScene
from pointserve.data.readers import check_split, check_task, resample_cloud
from pointserve.data.registry import DatasetInfo, register_dataset

# The SemanticKITTI train id (see :data:`pointserve.data.lidar_formats.SEMANTIC_KITTI_CLASSES`) of each class.
SEMANTIC_KITTI_IDS = {"car": 1, "truck": 4, "pedestrian": 6, "cyclist": 7, "road": 9, "sidewalk": 11}
SEMANTIC_KITTI_IDS.update({"building": 13, "vegetation": 15, "terrain": 17, "pole": 18})
CATEGORY = "street_scene"
CHANNELS = ("x", "y", "z", "intensity")
SENSOR = LidarSensor()
_SPLITS = {"train": 0, "test": 1, "val": 2}
_DEFAULT_SCANS = {"train": 200, "test": 50, "val": 50}


def scan_rng(seed: int, index: int, split: str = "train") -> np.random.Generator:
    """The generator of scan ``index`` of ``split``: the splits' streams are disjoint for every seed."""
    return np.random.default_rng([seed, _SPLITS[check_split(split, tuple(_SPLITS), "lidar_scenes")], index])


def generate_scan(
    seed: int = 0, index: int = 0, *, split: str = "train", sensor: LidarSensor = SENSOR
) -> tuple[np.ndarray, np.ndarray]:
    """Scan ``index`` of ``split`` for ``seed``: ``points (N, 4)`` float32 (x, y, z, intensity) in the sensor frame
    and ``labels (N,)`` int64 into :data:`CLASS_NAMES`. Deterministic: the same arguments give the same bits."""
    rng = scan_rng(seed, index, split)
    scene = StreetScene(rng)
    height = float(rng.uniform(1.7, 1.9))
    yaw = float(rng.uniform(-0.06, 0.06))  # the ego vehicle's heading along the road
    return cast_scan(sensor, scene.prims, scene.ground, height=height, yaw=yaw, rng=rng)


def _scan_sample(seed: int, split: str, num_points: int | None, sensor: LidarSensor, index: int) -> Sample:
    points, labels = generate_scan(seed, index, split=split, sensor=sensor)
    rng = np.random.default_rng([seed, _SPLITS[split], index, 1])  # the resampling's own stream
    points, labels = resample_cloud(points, labels, num_points, rng)
    return Sample(points=points, label=0, seg=labels)


INFO = DatasetInfo(
    description="LiDAR scans (32-beam spinning sensor, ray-cast) of generated street scenes, per-point labels",
    tasks=("semantic_segmentation",),
    channels=CHANNELS,
    class_names=tuple(CLASS_NAMES),
    splits=tuple(_SPLITS),
    needs_root=False,
)


@register_dataset("lidar_scenes", info=INFO)
def load_lidar_scenes(
    split: str,
    *,
    task: str | None = None,
    num_points: int | None = None,
    seed: int = 0,
    scans: int | None = None,
    samples_per_class: int | None = None,
    sensor: LidarSensor = SENSOR,
    **_: object,
) -> PointCloudDataset:
    """Split ``split`` of ``lidar_scenes``: 200 scans for ``train``, 50 for ``test`` and ``val`` unless ``scans``
    (or ``samples_per_class``: there is one category) says otherwise. Scans stay whole (``num_points=None``) or
    are resampled to ``num_points`` each. Scans are generated on first access."""
    check_split(split, tuple(_SPLITS), "lidar_scenes")
    task = check_task(task, INFO.tasks, "lidar_scenes")
    count = scans or samples_per_class or _DEFAULT_SCANS[split]
    return PointCloudDataset(
        name="lidar_scenes",
        split=split,
        task=task,  # type: ignore[arg-type]
        samples=LazySamples(count, partial(_scan_sample, seed, split, num_points, sensor)),
        class_names=[CATEGORY],
        part_names=list(CLASS_NAMES),
    )


__all__ = ["CLASS_NAMES", "INFO", "SENSOR", "generate_scan", "load_lidar_scenes", "scan_rng"]
