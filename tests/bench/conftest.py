"""A tiny real repository for the benchmark tests, built once per session through the real pipeline:
random-weight PointNet checkpoint -> ``export_onnx`` (parity checked) -> repository version -> ``fp16``
variant by ``ensure_onnx_variants`` -> PyTorch reference weights -> ``evaluate_variants`` on a few
``shapes`` test clouds, so every variant carries an accuracy in its manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

NUM_POINTS = 64


@pytest.fixture(scope="session")
def bench_repository(tmp_path_factory) -> Path:
    """``<root>`` of a repository with ``tiny-shapes`` v1: fp32, fp16 and fp32-torch, all with accuracy."""
    import torch

    from pointserve.card import ModelCard
    from pointserve.checkpoint import save_checkpoint
    from pointserve.data.shapes import CLASS_NAMES
    from pointserve.engines.evaluate import evaluate_variants
    from pointserve.export import export_onnx, io_specs
    from pointserve.export.variants import ensure_onnx_variants
    from pointserve.models import get_model
    from pointserve.repository import Repository
    from pointserve.repository.publish import add_reference_weights

    tmp = tmp_path_factory.mktemp("bench-repo")
    card = ModelCard(
        architecture="pointnet_cls",
        config={"num_classes": len(CLASS_NAMES)},
        task="classification",
        class_names=list(CLASS_NAMES),
        num_points=NUM_POINTS,
        dataset="shapes",
    )
    torch.manual_seed(0)
    checkpoint = save_checkpoint(get_model(card.architecture, **card.config).eval(), card, tmp / "checkpoint")
    report = export_onnx(checkpoint, tmp / "fp32.onnx", parity_shapes=[(1, NUM_POINTS), (2, 100)])
    inputs, outputs = io_specs(card)
    repository = Repository(tmp / "repository")
    version = repository.create_version(
        "tiny-shapes", card=card, inputs=inputs, outputs=outputs, export_report=report.manifest_dict()
    )
    version.add_variant("fp32", tmp / "fp32.onnx", precision="fp32", backend="onnxruntime")
    ensure_onnx_variants(version, ["fp32", "fp16"])
    add_reference_weights(version, checkpoint)
    evaluate_variants(version, max_samples=24, batch_size=8, threads=1)
    return repository.root


@pytest.fixture(scope="session")
def bench_model_dir(bench_repository: Path) -> Path:
    return bench_repository / "tiny-shapes"


@pytest.fixture(scope="session")
def bench_server(bench_repository: Path):
    """A real uvicorn server on 127.0.0.1 serving the tiny repository (the service tests' in-thread runner)."""
    from server_helpers import running_server  # tests/server_helpers.py, shared by every suite that serves

    from pointserve.service.app import create_app
    from pointserve.service.settings import load_settings

    settings = load_settings(
        repository=bench_repository,
        batching={"max_batch_size": 8, "max_queue_delay_ms": 2, "threads_per_instance": 1},
        log_level="warning",
        access_log=False,
    )
    with running_server(create_app(settings)) as url:
        yield url
