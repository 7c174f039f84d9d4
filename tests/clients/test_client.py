"""The Python client against a real server: every encoding, uploads, segmentation, OIP v2, errors, async."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from pointserve_client import (
    AsyncPointServeClient,
    ClassificationResult,
    PointServeClient,
    PointServeHTTPError,
    SegmentationResult,
)

from pointserve.data.formats import write_point_cloud


@pytest.fixture
def client(server_url):
    with PointServeClient(server_url) as http:
        yield http


def _softmax(logits: np.ndarray) -> np.ndarray:
    exp = np.exp(logits.astype(np.float64) - logits.max())
    return exp / exp.sum()


def test_health_and_metadata(client, models):
    assert client.live() and client.ready()
    names = {m["name"] for m in client.models()}
    assert set(models.values()) <= names
    info = client.model(models["classifier"])
    assert info["task"] == "classification" and info["classes"] == ["cube", "sphere", "cone", "torus"]


@pytest.mark.parametrize("encoding", ["binary", "json", "npy"])
def test_every_encoding_gives_the_same_typed_answer(client, models, cloud, encoding):
    answer = client.predict(models["classifier"], cloud, encoding=encoding, top_k=4, return_logits=True)
    assert isinstance(answer, ClassificationResult)
    assert answer.model == models["classifier"] and answer.version == 1 and answer.request_id
    assert [c.label for c in answer.top_k][0] == answer.label and len(answer.top_k) == 4
    reference = client.predict(models["classifier"], cloud, encoding="binary", return_logits=True)
    assert answer.label == reference.label
    np.testing.assert_allclose(answer.logits, reference.logits, atol=1e-5)
    # The score is the softmax of the logits the server reports.
    assert answer.score == pytest.approx(_softmax(np.asarray(answer.logits)).max(), abs=1e-6)


def test_oip_v2_logits_match_rest(client, models, cloud):
    rest = client.predict(models["classifier"], cloud, return_logits=True)
    binary = client.infer(models["classifier"], cloud)
    plain = client.infer(models["classifier"], cloud, binary=False)
    assert binary.shape == (1, 4) and binary.dtype == np.float32
    np.testing.assert_allclose(binary[0], rest.logits, atol=1e-5)
    np.testing.assert_array_equal(binary, plain)
    batch = client.infer(models["classifier"], np.stack([cloud, cloud[::-1]]), version=1)
    np.testing.assert_allclose(batch[0], batch[1], atol=1e-4)  # order of points does not matter to PointNet


def test_file_uploads_in_every_format(client, models, cloud, tmp_path):
    files = []
    for name, kwargs in [("c.ply", {"binary": True}), ("a.ply", {"binary": False}), ("c.pcd", {}), ("c.xyz", {})]:
        files.append(write_point_cloud(tmp_path / name, cloud, **kwargs))
    np.save(tmp_path / "c.npy", cloud, allow_pickle=False)
    files.append(tmp_path / "c.npy")
    reference = client.predict(models["classifier"], cloud, return_logits=True)
    single = client.predict_file(models["classifier"], files[0], return_logits=True)
    assert isinstance(single, ClassificationResult) and single.label == reference.label
    several = client.predict_file(models["classifier"], files, return_logits=True)
    assert len(several) == len(files)
    for answer in several:
        np.testing.assert_allclose(answer.logits, reference.logits, atol=1e-4)
    raw = client.predict_file(models["classifier"], (tmp_path / "c.pcd").read_bytes(), filename="scan.pcd")
    assert raw.label == reference.label
    with pytest.raises(ValueError, match="filename"):
        client.predict_file(models["classifier"], b"1 2 3\n")


def test_segmentation_labels_every_point(client, models, cloud):
    answer = client.predict(models["segmenter"], cloud, category="lamp")
    assert isinstance(answer, SegmentationResult)
    assert answer.labels.shape == (len(cloud),) and answer.num_points == len(cloud)
    assert set(answer.labels.tolist()) <= {3, 4, 5}  # the lamp's parts only
    assert answer.category == "lamp" and sum(answer.counts.values()) == len(cloud)
    assert set(answer.point_labels) <= {"base", "shade", "stem"}
    logits = client.infer(models["segmenter"], cloud, category=1)
    assert logits.shape == (1, len(cloud), 6)


def test_many_clouds_in_one_request(client, models, cloud):
    answers = client.predict_many(models["segmenter"], [cloud, cloud[:40]], categories=["mug", 1])
    assert [a.category for a in answers] == ["mug", "lamp"]
    assert [a.num_points for a in answers] == [len(cloud), 40]


def test_errors_raise_with_the_servers_message(client, models, cloud):
    with pytest.raises(PointServeHTTPError) as missing:
        client.predict("no-such-model", cloud)
    assert missing.value.status_code == 404 and "no-such-model" in missing.value.message
    bad = cloud.copy()
    bad[3, 1] = np.nan
    with pytest.raises(PointServeHTTPError) as invalid:
        client.predict(models["classifier"], bad)
    assert invalid.value.status_code == 400 and invalid.value.request_id
    with pytest.raises(PointServeHTTPError) as category:
        client.predict(models["segmenter"], cloud, category="teapot")
    assert 400 <= category.value.status_code < 500 and "teapot" in category.value.message


def test_async_client_concurrent_requests(server_url, models, cloud):
    async def run():
        async with AsyncPointServeClient(server_url, max_connections=8) as client:
            assert await client.ready()
            clouds = [cloud * (1 + i / 10) for i in range(12)]
            answers = await asyncio.gather(*(client.predict(models["classifier"], c) for c in clouds))
            logits = await client.infer(models["classifier"], np.stack(clouds[:3]))
            uploaded = await client.predict_file(models["classifier"], b"0 0 0\n1 0 0\n0 1 0\n" * 4, filename="t.xyz")
            return clouds, answers, logits, uploaded

    clouds, answers, logits, uploaded = asyncio.run(run())
    assert len(answers) == 12 and all(isinstance(a, ClassificationResult) for a in answers)
    with PointServeClient(server_url) as sync:
        for c, answer in zip(clouds, answers, strict=True):
            assert sync.predict(models["classifier"], c).label == answer.label
    assert logits.shape == (3, 4) and isinstance(uploaded, ClassificationResult)


def test_render_answers_the_servers_png_of_the_predicted_parts(client, models, cloud):
    pytest.importorskip("matplotlib")
    png = client.render(models["segmenter"], cloud, category="lamp")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PointServeHTTPError) as classifier:
        client.render(models["classifier"], cloud)
    assert classifier.value.status_code == 400 and "segmented cloud" in classifier.value.message
