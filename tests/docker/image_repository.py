"""The image tests' model repository: a tiny random-weight PointNet classifier (``tiny-cls``) and segmenter
(``tiny-seg``) from ``tests/tiny_models.py``, exported with pointserve.export and registered with
pointserve.repository. Used by ``tests/docker/conftest.py`` (fixture ``image_repository``) and, as a script, by
``scripts/image-test.sh`` to have a real repository to serve from the built image:

    .venv/bin/python tests/docker/image_repository.py DIR      # writes DIR/repository, prints its path
"""

from __future__ import annotations

import sys
from pathlib import Path

MODEL = "tiny-cls"
SEGMENTER = "tiny-seg"


def build_repository(root: Path) -> Path:
    """Write the two-model repository to ``root / "repository"`` (checkpoints and ONNX files beside it)."""
    from tiny_models import random_checkpoint, tiny_card

    from pointserve.checkpoint import load_checkpoint
    from pointserve.export import export_model
    from pointserve.repository import Repository

    repository = Repository(root / "repository")
    # A classifier and a segmenter: segmentation answers for resampled clouds need scipy's k-d tree.
    for name, architecture in ((MODEL, "pointnet_cls"), (SEGMENTER, "pointnet_seg")):
        model, card = load_checkpoint(random_checkpoint(root / f"checkpoint-{name}", tiny_card(architecture), seed=0))
        onnx_path = root / f"{name}.onnx"
        report = export_model(model, card, onnx_path, parity_shapes=[(1, card.num_points)], simplify_graph=False)
        version = repository.create_version(
            name, card=card, inputs=report.inputs, outputs=report.outputs, export_report=report.model_dump()
        )
        version.add_variant("fp32", onnx_path, precision="fp32", backend="onnxruntime")
    return repository.root


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIR")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: tiny_models
    target = Path(sys.argv[1])
    target.mkdir(parents=True, exist_ok=True)
    print(build_repository(target))
