"""Request and response shapes for the OpenAPI document (``/docs``, ``/openapi.json``).

The hot paths decode bodies with orjson + numpy (see :mod:`pointserve.service.codecs`) and encode answers
with orjson; these models describe the same JSON for people, client generators and schemathesis.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    error: str = Field(description="what was wrong, in words")


class ClassScore(BaseModel):
    class_id: int
    label: str
    score: float = Field(description="softmax probability")


class ClassificationAnswer(ClassScore):
    model: str
    version: int
    top_k: list[ClassScore]
    probabilities: dict[str, float] | None = Field(None, description="with return_probabilities")
    logits: list[float] | None = Field(None, description="with return_logits")


class SegmentationAnswer(BaseModel):
    model: str
    version: int
    labels: list[int] = Field(description="one label id per input point, in input order")
    label_names: list[str] = Field(description="names of the label ids")
    counts: dict[str, int] = Field(description="points per label present")
    num_points: int
    num_processed_points: int = Field(description="points the engine computed; the rest took their nearest one's")
    resampled: bool
    category: str | None = None
    category_id: int | None = None
    probabilities: list[list[float]] | None = Field(None, description="per point, with return_probabilities")
    logits: list[list[float]] | None = Field(None, description="per point, with return_logits")


class PredictionsAnswer(BaseModel):
    model: str
    version: int
    predictions: list[dict[str, Any]] = Field(description="one answer per instance, in order")


_POINTS = {
    "type": "array",
    "minItems": 1,
    "items": {"type": "array", "items": {"type": "number"}, "minItems": 3, "maxItems": 3},
    "description": "raw coordinates, one [x, y, z] per point (the server normalises)",
}
_CATEGORY = {"anyOf": [{"type": "string"}, {"type": "integer"}], "description": "part segmentation: name or id"}
_RENDER = {
    "type": "string",
    "enum": ["png"],
    "description": "segmentation, one cloud: answer an image/png of the cloud coloured by predicted part",
}
_OPTIONS = {
    "category": _CATEGORY,
    "top_k": {"type": "integer", "minimum": 1},
    "return_probabilities": {"type": "boolean"},
    "return_logits": {"type": "boolean"},
    "render": _RENDER,
}
PREDICT_PARAMETERS: list[dict[str, Any]] = [
    {"name": name, "in": "query", "required": False, "description": description, "schema": schema}
    for name, schema, description in (
        ("top_k", {"type": "integer", "minimum": 1}, "classes to rank (default 5)"),
        ("return_probabilities", {"type": "boolean"}, "add every class's (or point's) probabilities"),
        ("return_logits", {"type": "boolean"}, "add the raw logits (per point for segmentation)"),
        ("category", {"type": "string", "maxLength": 128}, "part segmentation: category name or id"),
        ("render", _RENDER, _RENDER["description"]),
    )
]
PNG_RESPONSE: dict[str, Any] = {
    "description": "JSON, or with render=png the picture",
    "content": {"image/png": {"schema": {"type": "string", "format": "binary"}}},
}
PREDICT_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {
                        "type": "object",
                        "properties": {"points": _POINTS, **_OPTIONS},
                        "required": ["points"],
                        "additionalProperties": False,
                    },
                    {
                        "type": "object",
                        "properties": {
                            "instances": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "properties": {"points": _POINTS, "category": _CATEGORY},
                                    "required": ["points"],
                                },
                            },
                            **_OPTIONS,
                        },
                        "required": ["instances"],
                        "additionalProperties": False,
                    },
                ]
            },
            "example": {"points": [[0.0, 0.1, 0.2], [0.3, 0.1, -0.2], [0.5, -0.4, 0.0]], "top_k": 3},
        },
        "application/octet-stream": {
            "schema": {"type": "string", "format": "binary", "description": "little-endian float32, N x C"}
        },
        "application/x-npy": {"schema": {"type": "string", "format": "binary", "description": "an (N, C) .npy"}},
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "description": ".ply .pcd .xyz .txt .npy .las or .laz",
                    },
                    "category": {"type": "string"},
                    "top_k": {"type": "integer", "minimum": 1},
                    "return_probabilities": {"type": "boolean"},
                    "return_logits": {"type": "boolean"},
                    "render": _RENDER,
                },
                "required": ["file"],
            }
        },
    },
}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ModelReady(BaseModel):
    name: str
    ready: bool


_TENSOR = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": ["FP32", "FP16", "FP64", "INT64", "INT32"]},
        "data": {"type": "array", "items": {"type": "number"}},
        "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer"}}},
    },
    "required": ["name", "shape", "datatype"],
}
INFER_REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "id": {"type": "string"},
                    "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
                    "inputs": {"type": "array", "minItems": 1, "items": _TENSOR},
                    "outputs": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string"},
                                "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
                            },
                            "required": ["name"],
                        },
                    },
                },
                "required": ["inputs"],
            }
        },
        "application/octet-stream": {
            "schema": {
                "type": "string",
                "format": "binary",
                "description": "binary tensor data extension: JSON header of Inference-Header-Content-Length bytes, "
                "then the tensors",
            }
        },
    },
}


class InferOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    data: list[float] | None = None
    parameters: dict[str, Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[InferOutput]


class TritonTensorConfig(BaseModel):
    name: str
    data_type: str = Field(description='"TYPE_FP32", "TYPE_INT64"')
    dims: list[int] = Field(description="without the batch dimension when max_batch_size > 0; -1 = any size")
    reshape: dict[str, list[int]] | None = Field(None, description="a (batch,) tensor: dims [1], reshape []")


class TritonModelConfig(BaseModel):
    """Triton's ``ModelConfig`` in protobuf-JSON (the fields pointserve fills; see model_config.proto)."""

    name: str
    platform: str
    backend: str
    version_policy: dict[str, Any]
    max_batch_size: int = Field(description="0: no batching (the tensors do not all start with the batch)")
    input: list[TritonTensorConfig]
    output: list[TritonTensorConfig]
    dynamic_batching: dict[str, Any] | None = Field(
        None, description="max_queue_delay_microseconds, preferred_batch_size"
    )
    instance_group: list[dict[str, Any]]


class TritonStatistics(BaseModel):
    model_stats: list[dict[str, Any]] = Field(
        description="per model: name, version, last_inference (ms), inference_count (clouds), execution_count "
        "(batches), inference_stats {success, fail, queue, compute_input, compute_infer, compute_output, cache_hit, "
        "cache_miss: {count, ns}}, batch_stats [{batch_size, compute_input, compute_infer, compute_output}]"
    )


class RepositoryIndexEntry(BaseModel):
    name: str
    version: str | None = Field(None, description="the served version; absent for a model not served")
    state: str = Field(description="READY, LOADING, UNLOADING or UNAVAILABLE")
    reason: str


REPOSITORY_INDEX_BODY: dict[str, Any] = {
    "required": False,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {"ready": {"type": "boolean", "description": "only the models ready for inference"}},
            }
        }
    },
}


def _parameters_body(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"parameters": {"type": "object", "properties": properties}},
                }
            }
        },
    }


LOAD_BODY = _parameters_body(
    {"version": {"type": "integer", "minimum": 1, "description": "the version to load (default: pinned, else latest)"}}
)
UNLOAD_BODY = _parameters_body(
    {"unload_dependents": {"type": "boolean", "description": "accepted for tritonclient; there are no ensembles"}}
)


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": description}
    for status, description in (
        (400, "bad input (the error names the problem)"),
        (401, "missing or wrong API key"),
        (404, "unknown model or version"),
        (413, "body or cloud over the configured limit"),
        (415, "unsupported content type or file format"),
        (422, "invalid parameters"),
        (503, "queue full or shutting down (see Retry-After)"),
        (504, "not answered within request_timeout_s"),
    )
}
