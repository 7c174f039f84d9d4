"""The fp16 variant: float16 inside, float32 at the boundary, same axes, close to the fp32 graph."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from pointserve.checkpoint import load_checkpoint
from pointserve.errors import ExportError
from pointserve.export import convert_to_fp16
from pointserve.export.fp16 import logits_producer
from pointserve.export.onnx_export import graph_specs
from pointserve.models import get_spec
from pointserve.models.collate import random_feeds


@pytest.fixture(scope="module")
def fp16_graphs(cls_export, partseg_export, tmp_path_factory):
    out = tmp_path_factory.mktemp("fp16")
    paths = {}
    for name, (fp32, _) in {"cls": cls_export, "partseg": partseg_export}.items():
        paths[name] = (fp32, convert_to_fp16(fp32, out / f"{name}-fp16.onnx"))
    return paths


def _float_initializer_types(model: onnx.ModelProto) -> set[int]:
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16}
    return {t.data_type for t in model.graph.initializer if t.data_type in floats}


@pytest.mark.parametrize("which", ["cls", "partseg"])
def test_fp16_graph_keeps_fp32_io_and_dynamic_axes(which, fp16_graphs):
    fp32_path, fp16_path = fp16_graphs[which]
    fp32, fp16 = onnx.load(str(fp32_path)), onnx.load(str(fp16_path))
    onnx.checker.check_model(fp16, full_check=True)
    assert graph_specs(fp16) == graph_specs(fp32)  # names, float32/int64 dtypes, "batch"/"num_points" axes
    assert _float_initializer_types(fp16) == {onnx.TensorProto.FLOAT16}
    casts = [n for n in fp16.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # points in, logits out: nothing else left in fp32
    assert fp16_path.stat().st_size < 0.6 * fp32_path.stat().st_size


@pytest.mark.parametrize("which", ["cls", "partseg"])
def test_fp16_agrees_with_fp32_in_onnxruntime_cpu(which, fp16_graphs, cls_checkpoint, partseg_checkpoint):
    fp32_path, fp16_path = fp16_graphs[which]
    _, card = load_checkpoint(cls_checkpoint if which == "cls" else partseg_checkpoint)
    feeds, _ = random_feeds(get_spec(card.architecture), card, 32, 500, np.random.default_rng(7))
    providers = ["CPUExecutionProvider"]
    reference = ort.InferenceSession(str(fp32_path), providers=providers).run(["logits"], feeds)[0]
    half = ort.InferenceSession(str(fp16_path), providers=providers).run(["logits"], feeds)[0]
    assert half.dtype == np.float32 and half.shape == reference.shape
    agreement = float((half.argmax(-1) == reference.argmax(-1)).mean())
    assert agreement >= 0.995, agreement  # over 32 clouds (cls) or 16,000 points (part segmentation)
    spread = float(reference.std())
    assert float(np.abs(half - reference).max()) < 0.05 * spread + 1e-3


def test_logits_node_can_stay_fp32(cls_export, tmp_path):
    fp32_path, _ = cls_export
    out = convert_to_fp16(fp32_path, tmp_path / "fp16.onnx", keep_logits_fp32=True)
    model = onnx.load(str(out))
    last = next(n for n in model.graph.node if n.name == logits_producer(onnx.load(str(fp32_path))))
    initializers = {t.name: t.data_type for t in model.graph.initializer}
    weights = [initializers[name] for name in last.input if name in initializers]
    assert weights and set(weights) == {onnx.TensorProto.FLOAT}


def test_unknown_node_to_keep_is_an_error(cls_export, tmp_path):
    fp32_path, _ = cls_export
    with pytest.raises(ExportError, match="not_a_node"):
        convert_to_fp16(fp32_path, tmp_path / "fp16.onnx", keep_fp32_nodes=["not_a_node"])
    assert not (tmp_path / "fp16.onnx").exists()


def test_unreadable_source_is_an_error(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ExportError, match="bad.onnx"):
        convert_to_fp16(bad, tmp_path / "fp16.onnx")
