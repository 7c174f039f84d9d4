"""Datasets (numpy only): the built-in synthetic ``shapes`` set, readers for the standard formats,
transforms, and point-cloud file formats.

    >>> from pointserve.data import load_dataset
    >>> train = load_dataset("shapes", "train", task="classification")
"""

from pointserve.data.base import PointCloudDataset, Sample
from pointserve.data.catalog import dataset_names, load_dataset
from pointserve.data.registry import DATASETS

__all__ = ["DATASETS", "PointCloudDataset", "Sample", "dataset_names", "load_dataset"]
