"""Python client of a pointserve server: sync and async, JSON / binary / .npy / file uploads, OIP v2, typed results.

Needs only ``httpx`` and ``numpy``; it does not import pointserve. Install it with ``pip install ./clients`` from a
pointserve checkout (the package ``pointserve-client``).

    from pointserve_client import PointServeClient

    with PointServeClient("http://127.0.0.1:8000") as client:
        answer = client.predict_file("shapes-cls", "examples/clouds/mug.ply")
        print(answer.label, f"{answer.score:.3f}")
"""

from .client import DEFAULT_URL, AsyncPointServeClient, PointServeClient
from .results import (
    ClassificationResult,
    ClassScore,
    InferResult,
    PointServeHTTPError,
    Result,
    SegmentationResult,
)
from .wire import ENCODINGS

__all__ = [
    "DEFAULT_URL",
    "ENCODINGS",
    "AsyncPointServeClient",
    "ClassScore",
    "ClassificationResult",
    "InferResult",
    "PointServeClient",
    "PointServeHTTPError",
    "Result",
    "SegmentationResult",
]
