"""A model as Triton describes it: one :func:`model_config` function, two renderings.

``GET /v2/models/{m}/config`` answers its JSON form (the protobuf-JSON of Triton's ``ModelConfig``, what
``perf_analyzer`` and ``tritonclient.get_model_config`` read) and ``pointserve export-triton`` writes its text
form, ``config.pbtxt`` (:func:`config_pbtxt`). The OIP model metadata shapes come from the same description
(:func:`metadata_shape`), so what the config says and what the metadata says cannot disagree.

Triton's rules this follows (``model_config.proto`` and Triton's docs):

* with ``max_batch_size > 0`` every tensor's first dimension is the batch, and ``dims`` leave it out;
  a tensor that is only the batch (``category``, shape ``[batch]``) is written ``dims: [1]`` with
  ``reshape { shape: [] }``, and its metadata shape is ``[-1, 1]``;
* a graph whose tensors do not all start with the batch (the ``concat`` families' per-point inputs) cannot be
  batched by Triton: ``max_batch_size: 0``, full shapes in ``dims``, no ``dynamic_batching``;
* ``max_batch_size`` is always written (left out, Triton's ONNX Runtime backend assumes 4 and may reject the graph).

Symbolic dimensions (``num_points``) become -1. No protobuf here: the text form is rendered by hand (the export
must not need tritonclient); the tests parse both forms with Triton's own schema.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pointserve.card import ModelCard
from pointserve.models.spec import BATCH_DIM, TensorSpec

DATA_TYPES = {"float32": "TYPE_FP32", "float16": "TYPE_FP16", "int64": "TYPE_INT64", "int32": "TYPE_INT32"}
# Triton's platform -> the backend that runs it (Triton fills one from the other and checks they agree).
BACKEND_OF_PLATFORM = {"onnxruntime_onnx": "onnxruntime", "tensorrt_plan": "tensorrt", "pytorch_libtorch": "pytorch"}
# The file Triton loads from a version folder for each platform it can be given by export-triton.
MODEL_FILE_OF_PLATFORM = {"onnxruntime_onnx": "model.onnx", "tensorrt_plan": "model.plan"}
InstanceKind = Literal["KIND_CPU", "KIND_GPU"]
LABELS_FILE = "labels.txt"
# Fields whose values are protobuf enums: bare words in the text form, strings in the JSON form.
_ENUM_FIELDS = frozenset({"data_type", "kind", "format"})


@dataclass(frozen=True)
class Scheduling:
    """How requests reach the model: Triton's batching and instance fields, from pointserve's batching settings."""

    max_batch_size: int
    max_queue_delay_us: int = 0
    preferred_batch_sizes: tuple[int, ...] = ()
    instance_kind: InstanceKind = "KIND_CPU"
    instance_count: int = 1


def batchable(inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]) -> bool:
    """Whether every tensor starts with the batch dimension (what Triton's batching needs)."""
    return all(spec.shape and spec.shape[0] == BATCH_DIM for spec in (*inputs, *outputs))


def _tensor(spec: TensorSpec, batched: bool) -> dict[str, Any]:
    dims = [d if isinstance(d, int) else -1 for d in (spec.shape[1:] if batched else spec.shape)]
    tensor: dict[str, Any] = {"name": spec.name, "data_type": DATA_TYPES[spec.dtype], "dims": dims or [1]}
    if batched and not dims:  # a (batch,) tensor: Triton wants one element per request, reshaped away
        tensor["reshape"] = {"shape": []}
    return tensor


def model_config(
    name: str,
    *,
    platform: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    scheduling: Scheduling,
    label_filename: str | None = None,
    default_model_filename: str | None = None,
) -> dict[str, Any]:
    """Triton's ``ModelConfig`` of one model, as protobuf-JSON (field names as in ``model_config.proto``).

    ``inputs`` / ``outputs``: the tensors a Triton client exchanges (the service passes its request tensors, the
    export the graph's). ``label_filename`` goes on the first output (the logits: one label per last-dim entry).
    """
    batched = scheduling.max_batch_size > 0 and batchable(inputs, outputs)
    config: dict[str, Any] = {
        "name": name,
        "platform": platform,
        "backend": BACKEND_OF_PLATFORM.get(platform, platform),
        "version_policy": {"latest": {"num_versions": 1}},
        "max_batch_size": scheduling.max_batch_size if batched else 0,
        "input": [_tensor(spec, batched) for spec in inputs],
        "output": [_tensor(spec, batched) for spec in outputs],
    }
    if label_filename is not None and config["output"]:
        config["output"][0]["label_filename"] = label_filename
    if batched:
        dynamic: dict[str, Any] = {"max_queue_delay_microseconds": int(scheduling.max_queue_delay_us)}
        preferred = sorted({b for b in scheduling.preferred_batch_sizes if 1 <= b <= scheduling.max_batch_size})
        if preferred:
            dynamic["preferred_batch_size"] = preferred
        config["dynamic_batching"] = dynamic
    config["instance_group"] = [{"kind": scheduling.instance_kind, "count": int(scheduling.instance_count)}]
    if default_model_filename is not None:
        config["default_model_filename"] = default_model_filename
    return config


def metadata_shape(tensor: Mapping[str, Any], max_batch_size: int) -> list[int]:
    """The OIP metadata shape of a config tensor: the batch dimension (-1) first when the model batches."""
    dims = list(tensor["dims"])
    return [-1, *dims] if max_batch_size > 0 else dims


def labels(card: ModelCard) -> list[str]:
    """One label per entry of the logits' last dimension: class names, or part names for segmentation."""
    return list(card.class_names if card.task == "classification" else card.part_names)


# ----------------------------------------------------------------------------------------- the text form
def _quote(text: str) -> str:
    """A protobuf text-format string literal (C escapes; non-ASCII as octal UTF-8 bytes)."""
    out = []
    for byte in text.encode():
        char = chr(byte)
        if char in '"\\':
            out.append("\\" + char)
        elif char == "\n":
            out.append("\\n")
        elif 32 <= byte < 127:
            out.append(char)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _scalar(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return value if key in _ENUM_FIELDS else _quote(value)
    raise TypeError(f"cannot write {key}={value!r} in config.pbtxt")


def _message(fields: Mapping[str, Any], indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    for key, value in fields.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", *_message(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{pad}{key} [")
            for i, item in enumerate(value):
                lines += [f"{pad}  {{", *_message(item, indent + 2), f"{pad}  }}" + ("," if i < len(value) - 1 else "")]
            lines.append(f"{pad}]")
        elif isinstance(value, (list, tuple)):
            items = ", ".join(_scalar(key, v) for v in value)
            lines.append(f"{pad}{key}: [ {items} ]" if items else f"{pad}{key}: []")
        else:
            lines.append(f"{pad}{key}: {_scalar(key, value)}")
    return lines


def config_pbtxt(config: Mapping[str, Any]) -> str:
    """The text form (``config.pbtxt``) of a :func:`model_config` dict."""
    return "\n".join(_message(config, 0)) + "\n"


__all__ = [
    "BACKEND_OF_PLATFORM",
    "DATA_TYPES",
    "LABELS_FILE",
    "MODEL_FILE_OF_PLATFORM",
    "Scheduling",
    "batchable",
    "config_pbtxt",
    "labels",
    "metadata_shape",
    "model_config",
]
