"""``pointserve export-triton``: a real repository (random-weight PointNets exported to ONNX) written as a Triton model
repository, and every ``config.pbtxt`` read back with Triton's own protobuf schema (``model_config_pb2``)."""

from __future__ import annotations

import hashlib
import inspect

import numpy as np
import pytest
from google.protobuf import json_format, text_format
from repo_builder import CARDS, CLASSIFIER, PART_SEGMENTER, build_repository
from tiny_models import tiny_card
from tritonclient.grpc import model_config_pb2

from pointserve.cli import main
from pointserve.deploy.triton import export_triton, notes_for
from pointserve.models import get_spec
from pointserve.models.spec import identity_preprocessor
from pointserve.repository.store import Repository
from pointserve.repository.triton import Scheduling, config_pbtxt, model_config
from pointserve.service.settings import BatchingSettings

ModelConfig = model_config_pb2.ModelConfig


@pytest.fixture(scope="module")
def repository(tmp_path_factory):
    return build_repository(tmp_path_factory.mktemp("repository"))


def read_config(path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), ModelConfig())


def export(repository, output, *extra: str, model: str = CLASSIFIER) -> int:
    return main(["export-triton", model, "--repository", str(repository), "-o", str(output), *extra])


def test_classifier_export_is_a_triton_model_repository(repository, tmp_path):
    assert export(repository, tmp_path) == 0
    config = read_config(tmp_path / CLASSIFIER / "config.pbtxt")
    assert config.name == CLASSIFIER and config.platform == "onnxruntime_onnx" and config.backend == "onnxruntime"
    assert config.max_batch_size == BatchingSettings().max_batch_size  # serve's default, always written
    (points,) = config.input
    assert (points.name, points.data_type, list(points.dims)) == ("points", model_config_pb2.TYPE_FP32, [-1, 3])
    (logits,) = config.output
    names = CARDS[CLASSIFIER].class_names
    assert list(logits.dims) == [len(names)] and logits.label_filename == "labels.txt"
    assert (tmp_path / CLASSIFIER / "labels.txt").read_text().splitlines() == names
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 0
    (group,) = config.instance_group
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_CPU and group.count == 1
    variant = Repository(repository).open(CLASSIFIER).variant("fp32")
    copied = (tmp_path / CLASSIFIER / "1" / "model.onnx").read_bytes()
    assert hashlib.sha256(copied).hexdigest() == variant.sha256
    readme = (tmp_path / "README.md").read_text()
    assert f"## {CLASSIFIER}" in readme and "repeating points" in readme and "normalised coordinates" in readme


def test_part_segmentation_export_asks_for_the_category(repository, tmp_path):
    assert export(repository, tmp_path, model=PART_SEGMENTER) == 0
    config = read_config(tmp_path / PART_SEGMENTER / "config.pbtxt")
    category = next(t for t in config.input if t.name == "category")
    assert category.data_type == model_config_pb2.TYPE_INT64 and list(category.dims) == [1]
    assert category.HasField("reshape") and list(category.reshape.shape) == []  # the graph takes (B,)
    assert list(config.output[0].dims) == [-1, len(CARDS[PART_SEGMENTER].part_names)]
    labels = (tmp_path / PART_SEGMENTER / "labels.txt").read_text().splitlines()
    assert labels == CARDS[PART_SEGMENTER].part_names
    readme = (tmp_path / "README.md").read_text()
    assert "input 'category' (INT64, shape [-1, 1])" in readme and "mug, lamp" in readme


def test_the_exported_graph_takes_what_the_config_says(repository, tmp_path):
    """No Triton server here: ONNX Runtime runs the copied graph with tensors shaped by the config (batch first)."""
    import onnxruntime as ort

    result = export_triton(Repository(repository).open(PART_SEGMENTER), tmp_path)
    config = result.config
    session = ort.InferenceSession(str(result.model_file), providers=["CPUExecutionProvider"])
    batch, num_points = 3, 50
    feeds = {}
    for tensor in config["input"]:
        shape = [batch, *(num_points if d == -1 else d for d in tensor["dims"])]
        if "reshape" in tensor:  # what Triton hands the graph
            shape = [batch, *tensor["reshape"]["shape"]]
        dtype = np.float32 if tensor["data_type"] == "TYPE_FP32" else np.int64
        feeds[tensor["name"]] = np.zeros(shape, dtype=dtype)
    (logits,) = session.run(None, feeds)
    assert list(logits.shape) == [batch, *(num_points if d == -1 else d for d in config["output"][0]["dims"])]


def test_one_description_two_renderings(repository, tmp_path):
    result = export_triton(
        Repository(repository).open(CLASSIFIER),
        tmp_path,
        max_batch_size=16,
        max_queue_delay_ms=2.5,
        preferred_batch_sizes=(4, 8),
        instance_count=2,
    )
    written = read_config(result.config_file)
    assert written == json_format.ParseDict(result.config, ModelConfig())
    assert written.max_batch_size == 16 and list(written.dynamic_batching.preferred_batch_size) == [4, 8]
    assert written.dynamic_batching.max_queue_delay_microseconds == 2500 and written.instance_group[0].count == 2


def test_export_defaults_are_serves():
    defaults = inspect.signature(export_triton).parameters
    serve = BatchingSettings()
    assert defaults["max_batch_size"].default == serve.max_batch_size
    assert defaults["max_queue_delay_ms"].default == serve.max_queue_delay_ms
    assert defaults["instance_count"].default == serve.instance_count


def test_batching_from_a_serve_config_file(repository, tmp_path):
    settings = tmp_path / "serve.yaml"
    settings.write_text(
        f"batching: {{max_queue_delay_ms: 2}}\nmodels:\n  {CLASSIFIER}: {{batching: {{max_batch_size: 12, "
        "instance_count: 2, preferred_batch_size: 6}}\n"
    )
    assert export(repository, tmp_path / "triton", "--config", str(settings), "--instances", "3") == 0
    config = read_config(tmp_path / "triton" / CLASSIFIER / "config.pbtxt")
    assert config.max_batch_size == 12 and config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert list(config.dynamic_batching.preferred_batch_size) == [6]
    assert config.instance_group[0].count == 3  # a flag beats the file


def test_existing_folders_are_replaced_only_when_asked(repository, tmp_path, capsys):
    assert export(repository, tmp_path) == 0
    assert export(repository, tmp_path, "--max-batch-size", "4") == 2
    assert "exists; pass --force to replace it" in capsys.readouterr().err
    assert export(repository, tmp_path, "--max-batch-size", "4", "--force") == 0
    assert read_config(tmp_path / CLASSIFIER / "config.pbtxt").max_batch_size == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["README.md", CLASSIFIER]  # no staging folders left
    stranger = tmp_path / "other"
    (stranger / CLASSIFIER).mkdir(parents=True)
    assert export(repository, stranger, "--force") == 2
    assert "is not a Triton model folder" in capsys.readouterr().err


def test_readme_keeps_every_exported_model(repository, tmp_path):
    assert export(repository, tmp_path) == 0
    assert export(repository, tmp_path, model=PART_SEGMENTER) == 0
    assert export(repository, tmp_path, "--force") == 0
    readme = (tmp_path / "README.md").read_text()
    assert readme.count(f"## {CLASSIFIER}\n") == 1 and readme.count(f"## {PART_SEGMENTER}\n") == 1


def test_variants_triton_cannot_load_are_refused(repository, tmp_path, capsys):
    assert export(repository, tmp_path, "--variant", "fp32-torch") == 2
    assert "export an ONNX or TensorRT variant: fp32" in capsys.readouterr().err
    assert export(repository, tmp_path, "--variant", "int8") == 2
    assert "has no variant 'int8' (variants: fp32, fp32-torch)" in capsys.readouterr().err
    assert export(repository, tmp_path, "--instance-kind", "gpu") == 0  # an ONNX graph may run on Triton's GPUs
    group = read_config(tmp_path / CLASSIFIER / "config.pbtxt").instance_group[0]
    assert group.kind == model_config_pb2.ModelInstanceGroup.KIND_GPU


def test_every_family_gets_a_config_triton_accepts(architecture):
    """The batch rules, for every registered family: batched when every tensor starts with the batch, else
    max_batch_size 0 without dynamic batching; the README names the CPU preprocessing that stays behind."""
    card, spec = tiny_card(architecture), get_spec(architecture)
    inputs, outputs = spec.inputs(card), spec.outputs(card)
    config = model_config(
        architecture, platform="onnxruntime_onnx", inputs=inputs, outputs=outputs, scheduling=Scheduling(8, 1000)
    )
    parsed = text_format.Parse(config_pbtxt(config), ModelConfig())
    assert parsed == json_format.ParseDict(config, ModelConfig())
    assert [t.name for t in parsed.input] == [t.name for t in inputs]
    batched = all(t.shape[0] == "batch" for t in (*inputs, *outputs))
    assert parsed.max_batch_size == (8 if batched else 0)
    assert parsed.HasField("dynamic_batching") == batched
    notes = " ".join(notes_for(card, config))
    preprocessed = bool(spec.index_inputs) or spec.preprocess is not identity_preprocessor
    assert ("CPU preprocessing does not travel" in notes) == preprocessed
    assert ("category" in notes) == card.needs_category


@pytest.mark.gpu
def test_tensorrt_plan_export(tmp_path):
    """A real plan (built on this GPU) goes to 1/model.plan, platform tensorrt_plan, on GPU instances, with
    max_batch_size within the plan's optimisation profile."""
    pytest.importorskip("tensorrt")
    from pointserve.engines.build import build_tensorrt_plans
    from pointserve.engines.tensorrt.plan import profile_from_flags

    repository = build_repository(tmp_path / "repository", names=(CLASSIFIER,))
    model_version = Repository(repository).open(CLASSIFIER)
    build_tensorrt_plans(model_version, ["fp32"], profile_from_flags(64, max_batch=8, max_points=256))
    plan_variant = next(v.name for v in model_version.manifest.variants if v.backend == "tensorrt")
    result = export_triton(model_version, tmp_path / "triton", variant=plan_variant, max_batch_size=32)
    config = read_config(result.config_file)
    assert config.platform == "tensorrt_plan" and result.model_file.name == "model.plan"
    assert config.max_batch_size == 8
    assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert hashlib.sha256(result.model_file.read_bytes()).hexdigest() == model_version.variant(plan_variant).sha256
