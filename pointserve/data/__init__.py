"""Datasets (numpy only): the built-in synthetic ``shapes`` and ``lidar_scenes`` sets, readers for the standard
formats, transforms, and point-cloud file formats (LiDAR ones in :mod:`pointserve.data.lidar_formats`).

    >>> from pointserve.data import load_dataset
    >>> train = load_dataset("shapes", "train", task="classification")
"""

from pointserve.data.base import PointCloudDataset, Sample
from pointserve.data.catalog import dataset_info, dataset_names, load_dataset
from pointserve.data.registry import DATASETS

__all__ = ["DATASETS", "PointCloudDataset", "Sample", "dataset_info", "dataset_names", "load_dataset"]
