"""The on-disk model repository (``<root>/<model>/<version>/manifest.json`` + variant files) and its schema.

>>> from pointserve.repository import Repository
>>> model_version = Repository("repository").open("shapes-cls")   # latest version
>>> onnx_path = model_version.variant_path("fp32")                 # size + sha256 checked
"""

from pointserve.repository.manifest import (
    MANIFEST_FILE,
    AccuracyInfo,
    BuildInfo,
    CalibrationInfo,
    Manifest,
    TensorSpec,
    Variant,
)
from pointserve.repository.store import (
    ModelVersion,
    Repository,
    atomic_copy,
    atomic_write_bytes,
    atomic_write_text,
    sha256_file,
)

__all__ = [
    "MANIFEST_FILE",
    "AccuracyInfo",
    "BuildInfo",
    "CalibrationInfo",
    "Manifest",
    "ModelVersion",
    "Repository",
    "TensorSpec",
    "Variant",
    "atomic_copy",
    "atomic_write_bytes",
    "atomic_write_text",
    "sha256_file",
]
