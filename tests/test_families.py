"""Every registered family, shipped or test-only, through the whole pipeline: export parity and a TensorRT-valid
graph, fp16 and int8 variants, exact batching through the real ``ServedModel``, and a served request over REST
and the Open Inference Protocol (stock ``tritonclient``). A new family is tested the moment it is registered."""

from __future__ import annotations

import asyncio

import numpy as np
import onnx
from tiny_models import tiny_dataset

from pointserve.models import get_spec
from pointserve.repository import Repository

FORBIDDEN_OPS = {"ScatterND", "ScatterElements", "Scatter"}  # TensorRT: no scatter with reduction; we allow none
MAX_TOPK = 3840


def _raw_cloud(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 3)) * [2.0, 1.0, 0.5] + [3.0, -1.0, 0.5]).astype(np.float32)


def test_export_is_parity_checked_and_tensorrt_valid(family_version):
    report = family_version.manifest.export
    assert report["max_abs_diff"] <= report["parity_tolerance"] <= 1e-4
    assert all(p["argmax_equal"] or p["argmax_mismatches"] == p["near_ties"] for p in report["parity"])
    graph = onnx.load(str(family_version.variant_path("fp32")))
    ops = {node.op_type for node in graph.graph.node}
    assert not ops & FORBIDDEN_OPS, ops & FORBIDDEN_OPS
    assert all(node.domain in ("", "ai.onnx") for node in graph.graph.node), "custom ops"
    for node in graph.graph.node:
        if node.op_type == "TopK":
            k = next((i for i in graph.graph.initializer if i.name == node.input[1]), None)
            assert k is None or int(onnx.numpy_helper.to_array(k).max()) <= MAX_TOPK
    spec = get_spec(family_version.card.architecture)
    assert [i.name for i in graph.graph.input] == spec.input_names(family_version.card)
    from pointserve.export.trt_lint import lint_graph

    assert lint_graph(graph).ok, lint_graph(graph).summary()  # the export's own TensorRT lint, re-run on the file


def test_fp16_and_int8_variants_run_and_keep_the_graph_contract(family_version, tmp_path):
    from pointserve.calibration import build_calibration_set, quantize_int8
    from pointserve.calibration.qdq import check_qdq_graph
    from pointserve.engines import create_runner
    from pointserve.export.fp16 import convert_to_fp16
    from pointserve.models.collate import random_feeds

    card = family_version.card
    spec = get_spec(card.architecture)
    fp16 = convert_to_fp16(family_version.variant_path("fp32"), tmp_path / "fp16.onnx")
    family_version.add_variant("fp16", fp16, precision="fp16", backend="onnxruntime", source="fp32")
    calibration = build_calibration_set(card, tmp_path, num_samples=8, dataset=tiny_dataset(spec.task))
    result = quantize_int8(
        family_version.variant_path("fp32"),
        calibration.path,
        tmp_path / "int8.onnx",
        keep_input_layers_float=True,
        card=card,
    )
    summary = check_qdq_graph(result.path)
    assert summary.quantize_nodes > 0 and summary.per_channel_weights > 0
    family_version.add_variant("int8", result.path, precision="int8", backend="onnxruntime", source="fp32")
    feeds, _ = random_feeds(spec, card, 3, 40, np.random.default_rng(0))
    outputs = {}
    for variant in ("fp32", "fp16", "int8"):
        with create_runner(family_version, variant, backend="onnxruntime", threads=1) as runner:
            outputs[variant] = runner.infer(feeds)["logits"]
    assert outputs["fp16"].shape == outputs["fp32"].shape == outputs["int8"].shape
    assert np.abs(outputs["fp16"] - outputs["fp32"]).max() < 0.05


def test_a_cloud_answers_the_same_alone_and_in_a_mixed_batch(family_version, family_repository):
    from pointserve.service.served_model import open_served_model
    from pointserve.service.settings import load_settings

    settings = load_settings(
        repository=family_repository,
        batching={"max_batch_size": 8, "max_queue_delay_ms": 50, "threads_per_instance": 1},
        log_level="warning",
    )
    served = open_served_model(Repository(family_repository), family_version.name, settings)
    category = "b" if served.card.needs_category else None
    target = _raw_cloud(57, 0)
    others = [(_raw_cloud(n, i + 1), category) for i, n in enumerate((13, 101, 57, 8))]

    async def run():
        from pointserve.service.metrics import ServiceMetrics

        metrics = ServiceMetrics()
        await served.start(metrics)
        try:
            _, (alone,) = await served.predict([(target, category)])
            # One request of five clouds of four sizes: they join the batcher together, within one queue delay.
            _, mixed = await served.predict([others[0], (target, category), *others[1:]])
            return alone, mixed[1]
        finally:
            await served.stop(metrics, 5)

    alone, in_batch = asyncio.run(run())
    assert alone.shape == in_batch.shape
    assert np.abs(alone - in_batch).max() <= 1e-5


def test_served_over_rest_and_the_open_inference_protocol(family_version, family_repository):
    import httpx
    import tritonclient.http as triton_http
    from server_helpers import running_server

    from pointserve.service.app import create_app
    from pointserve.service.settings import load_settings

    settings = load_settings(
        repository=family_repository,
        models={name: {"enabled": name == family_version.name} for name in Repository(family_repository).models()},
        batching={"max_batch_size": 4, "max_queue_delay_ms": 2, "threads_per_instance": 1},
        log_level="warning",
        access_log=False,
    )
    card = family_version.card
    cloud = _raw_cloud(70, 9)
    with running_server(create_app(settings)) as url:
        params = {"return_logits": "true"}
        if card.needs_category:
            params["category"] = "a"
        response = httpx.post(
            f"{url}/v1/models/{family_version.name}/predict", json={"points": cloud.tolist()}, params=params, timeout=60
        )
        assert response.status_code == 200, response.text
        rest = np.asarray(response.json()["logits"], dtype=np.float32)
        client = triton_http.InferenceServerClient(url.removeprefix("http://"))
        metadata = client.get_model_metadata(family_version.name)
        assert [i["name"] for i in metadata["inputs"]][0] == "points"
        points = triton_http.InferInput("points", [1, *cloud.shape], "FP32")
        points.set_data_from_numpy(cloud[None])
        inputs = [points]
        if card.needs_category:
            category = triton_http.InferInput("category", [1], "INT64")
            category.set_data_from_numpy(np.array([0], dtype=np.int64))
            inputs.append(category)
        oip = client.infer(family_version.name, inputs).as_numpy("logits")[0]
        client.close()
    expected_rows = () if card.task == "classification" else (len(cloud),)
    assert rest.shape == (*expected_rows, card.num_outputs)
    np.testing.assert_allclose(oip, rest, atol=1e-5)
