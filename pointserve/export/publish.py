"""Publish a trained checkpoint into the repository: export to ONNX (parity-checked), then a new version
with the fp32 graph and the checkpoint's own weights (``fp32-torch``, the accuracy reference)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from pointserve.checkpoint import load_checkpoint
from pointserve.export.onnx_export import DEFAULT_OPSET, export_model
from pointserve.repository.publish import add_reference_weights, default_model_name
from pointserve.repository.store import ModelVersion, Repository, check_name


def publish_checkpoint(
    checkpoint_dir: str | Path,
    repository_root: str | Path,
    name: str | None = None,
    *,
    opset: int | None = None,
    simplify: bool = True,
    status: Callable[[str], object] | None = None,
    allow_trt_incompatible: bool = False,
):
    """Export ``checkpoint_dir`` and add it as the next version of ``name``; returns ``(version, report)``.

    The graph is written next to the repository first: the version folder only appears once it passed
    the parity check, so a failed export leaves the repository as it was.
    """
    model, card = load_checkpoint(checkpoint_dir)
    name = check_name(name or default_model_name(card))
    repository = Repository(repository_root)
    repository.root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=repository.root, prefix=".export-") as tmp:
        if status:
            status(f"exporting {card.architecture} to ONNX and checking parity")
        onnx_path = Path(tmp) / "fp32.onnx"
        report = export_model(
            model,
            card,
            onnx_path,
            opset=opset or DEFAULT_OPSET,
            simplify_graph=simplify,
            allow_trt_incompatible=allow_trt_incompatible,
        )
        version: ModelVersion = repository.create_version(
            name, card=card, inputs=report.inputs, outputs=report.outputs, export_report=report.manifest_dict()
        )
        version.add_variant("fp32", onnx_path, precision="fp32", backend="onnxruntime")
    add_reference_weights(version, checkpoint_dir)
    return version, report
