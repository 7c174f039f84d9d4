"""REST v1 against the real server: every content type, options, segmentation order and resampling, model info."""

from __future__ import annotations

import io

import numpy as np
import onnxruntime as ort
import people_files
import pytest
from repo_builder import CARDS, CLASSIFIER, PART_SEGMENTER

from pointserve.data.formats import point_cloud_to_bytes
from pointserve.data.transforms import normalize, resample_indices
from pointserve.service.core.clouds import RESAMPLE_SEED

BINARY = {"content-type": "application/octet-stream"}


def predict(client, model: str, *, query: str = "", **kwargs):
    return client.post(f"/v1/models/{model}/predict{query}", **kwargs)


def npy_bytes(points: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, points, allow_pickle=False)
    return buffer.getvalue()


def test_json_binary_and_npy_bodies_give_the_same_answer(client, cloud):
    as_json = predict(client, CLASSIFIER, json={"points": cloud.tolist(), "return_logits": True})
    as_binary = predict(client, CLASSIFIER, query="?return_logits=true", content=cloud.tobytes(), headers=BINARY)
    as_npy = predict(
        client,
        CLASSIFIER,
        query="?return_logits=1",
        content=npy_bytes(cloud),
        headers={"content-type": "application/x-npy"},
    )
    answers = [r.json() for r in (as_json, as_binary, as_npy)]
    assert [r.status_code for r in (as_json, as_binary, as_npy)] == [200, 200, 200], answers
    first = answers[0]
    assert first["model"] == CLASSIFIER and first["version"] == 1
    assert first["label"] == CARDS[CLASSIFIER].class_names[first["class_id"]]
    for other in answers[1:]:
        assert other["class_id"] == first["class_id"]
        np.testing.assert_array_equal(other["logits"], first["logits"])  # the same float32 input, bit for bit


def test_classification_answer_is_softmax_of_logits_with_ranked_top_k(client, cloud):
    answer = predict(
        client,
        CLASSIFIER,
        json={"points": cloud.tolist(), "top_k": 3, "return_probabilities": True, "return_logits": True},
    ).json()
    logits = np.asarray(answer["logits"], dtype=np.float64)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    names = CARDS[CLASSIFIER].class_names
    np.testing.assert_allclose([answer["probabilities"][n] for n in names], expected, rtol=1e-6)
    assert len(answer["top_k"]) == 3
    scores = [entry["score"] for entry in answer["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert answer["top_k"][0]["class_id"] == int(np.argmax(logits)) == answer["class_id"]
    assert answer["score"] == pytest.approx(expected.max())


def test_top_k_larger_than_the_classes_is_clamped(client, cloud):
    answer = predict(client, CLASSIFIER, query="?top_k=50", content=cloud.tobytes(), headers=BINARY).json()
    assert len(answer["top_k"]) == len(CARDS[CLASSIFIER].class_names)


@pytest.mark.parametrize(
    "filename, fmt, binary",
    [
        ("cloud.ply", "ply", False),
        ("cloud.ply", "ply", True),
        ("cloud.pcd", "pcd", False),
        ("cloud.pcd", "pcd", True),
        ("cloud.xyz", "xyz", False),
        ("cloud.txt", "txt", False),
        ("cloud.npy", "npy", True),
    ],
)
def test_multipart_upload_of_every_file_format(client, cloud, filename, fmt, binary):
    reference = predict(client, CLASSIFIER, query="?return_logits=true", content=cloud.tobytes(), headers=BINARY).json()
    data = point_cloud_to_bytes(cloud, fmt, binary=binary)
    response = predict(
        client, CLASSIFIER, files={"file": (filename, data)}, data={"return_logits": "true", "top_k": "2"}
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["class_id"] == reference["class_id"]
    assert len(answer["top_k"]) == 2
    # Text formats round the coordinates; binary ones carry the same float32 values.
    np.testing.assert_allclose(answer["logits"], reference["logits"], atol=0 if binary else 1e-3)


def test_several_files_and_instances_are_answered_as_a_list_in_order(client, cloud):
    small = cloud[:40] * 2.0 + 1.0
    singles = [
        predict(client, CLASSIFIER, query="?return_logits=true", content=c.tobytes(), headers=BINARY).json()
        for c in (cloud, small)
    ]
    as_instances = predict(
        client,
        CLASSIFIER,
        json={"instances": [{"points": cloud.tolist()}, {"points": small.tolist()}], "return_logits": True},
    ).json()
    as_files = predict(
        client,
        CLASSIFIER,
        query="?return_logits=true",
        files=[("file", ("a.npy", npy_bytes(cloud))), ("file", ("b.npy", npy_bytes(small)))],
    ).json()
    for answer in (as_instances, as_files):
        assert len(answer["predictions"]) == 2
        for got, single in zip(answer["predictions"], singles, strict=True):
            np.testing.assert_allclose(got["logits"], single["logits"], atol=1e-5)


def test_segmentation_labels_every_point_in_input_order(client, cloud):
    answer = predict(client, PART_SEGMENTER, query="?category=mug", content=cloud.tobytes(), headers=BINARY).json()
    labels = np.asarray(answer["labels"])
    assert len(labels) == len(cloud) and answer["num_points"] == len(cloud) and not answer["resampled"]
    assert set(labels) <= set(CARDS[PART_SEGMENTER].category_parts["mug"])
    assert answer["label_names"] == CARDS[PART_SEGMENTER].part_names
    assert sum(answer["counts"].values()) == len(cloud)
    # PointNet is permutation-equivariant per point: shuffled input, shuffled labels.
    order = np.random.default_rng(0).permutation(len(cloud))
    shuffled = predict(client, PART_SEGMENTER, query="?category=mug", content=cloud[order].tobytes(), headers=BINARY)
    np.testing.assert_array_equal(shuffled.json()["labels"], labels[order])


def test_category_by_name_and_by_id_agree_and_restrict_the_parts(client, cloud):
    by_name = predict(client, PART_SEGMENTER, json={"points": cloud.tolist(), "category": "lamp"}).json()
    by_id = predict(client, PART_SEGMENTER, json={"points": cloud.tolist(), "category": 1}).json()
    assert by_name["labels"] == by_id["labels"] and by_name["category"] == "lamp"
    assert set(by_name["labels"]) <= set(CARDS[PART_SEGMENTER].category_parts["lamp"])


def test_resampled_segmentation_labels_unprocessed_points_from_their_nearest_processed_neighbour(client, repository):
    rng = np.random.default_rng(3)
    big = (rng.standard_normal((3000, 3)) * [1.0, 2.0, 0.5]).astype(np.float32)
    answer = predict(client, PART_SEGMENTER, query="?category=0", content=big.tobytes(), headers=BINARY).json()
    processed = answer["num_processed_points"]
    assert answer["resampled"] and processed < len(big) and len(answer["labels"]) == len(big)

    # The expected answer, computed independently: onnxruntime on the processed subset, then brute-force
    # nearest neighbours for the rest.
    card = CARDS[PART_SEGMENTER]
    normalized = normalize(big, card.normalization)
    kept = resample_indices(len(big), processed, np.random.default_rng(RESAMPLE_SEED))
    session = ort.InferenceSession(str(repository / PART_SEGMENTER / "1" / "fp32.onnx"))
    (logits,) = session.run(None, {"points": normalized[kept][None], "category": np.array([0])})
    allowed = np.zeros(len(card.part_names), dtype=bool)
    allowed[card.category_parts["mug"]] = True
    processed_labels = np.where(allowed, logits[0], -np.inf).argmax(axis=1)
    expected = np.empty(len(big), dtype=np.int64)
    expected[kept] = processed_labels
    rest = np.setdiff1d(np.arange(len(big)), kept)
    distances = ((normalized[rest, None, :] - normalized[kept][None, :, :]) ** 2).sum(axis=2)
    expected[rest] = processed_labels[distances.argmin(axis=1)]
    np.testing.assert_array_equal(answer["labels"], expected)


def test_model_list_and_model_info(client):
    listed = client.get("/v1/models").json()["models"]
    assert {m["name"] for m in listed} == {CLASSIFIER, PART_SEGMENTER}
    info = client.get(f"/v1/models/{PART_SEGMENTER}").json()
    assert info["task"] == "part_segmentation"
    assert info["classes"] == ["mug", "lamp"] and info["parts"] == CARDS[PART_SEGMENTER].part_names
    assert info["variant"] == "fp32" and info["backend"] == "onnxruntime" and info["versions"] == [1]
    assert [spec["name"] for spec in info["inputs"]] == ["points", "category"]
    assert info["points"]["channels"] == 3
    missing = client.get("/v1/models/no-such-model")
    assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]


def test_request_id_is_returned_and_a_sane_client_id_is_kept(client):
    generated = client.get("/v2/health/live").headers["x-request-id"]
    assert len(generated) == 32
    assert client.get("/v2/health/live", headers={"X-Request-ID": "abc-123"}).headers["x-request-id"] == "abc-123"
    unsafe = "two words; <script>"
    assert client.get("/v2/health/live", headers={"X-Request-ID": unsafe}).headers["x-request-id"] != unsafe


def test_metrics_report_requests_latencies_batches_queue_and_state(client, cloud):
    predict(client, CLASSIFIER, content=cloud.tobytes(), headers=BINARY)
    predict(client, "no-such-model", content=cloud.tobytes(), headers=BINARY)
    text = client.get("/metrics").text
    assert (
        f'pointserve_requests_total{{model="{CLASSIFIER}",route="/v1/models/{{model}}/predict",status="200"}}' in text
    )
    assert 'pointserve_requests_total{model="",route="/v1/models/{model}/predict",status="404"}' in text
    for name in (
        "pointserve_request_duration_seconds_bucket",
        "pointserve_queue_wait_seconds_bucket",
        "pointserve_batch_compute_seconds_bucket",
        "pointserve_batch_size_bucket",
        f'pointserve_queue_depth{{model="{CLASSIFIER}"}}',
        f'pointserve_model_state{{model="{CLASSIFIER}",pointserve_model_state="ready"}} 1.0',
    ):
        assert name in text, name


def test_openapi_and_docs(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/models/{model}/predict"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/octet-stream", "application/x-npy", "multipart/form-data"} <= set(body)
    assert "/v2/models/{model}/infer" in schema["paths"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# ------------------------------------------------------------------------------------ files as people have them
def _people_files() -> list[tuple[str, bytes]]:
    points = people_files.exact_cloud()
    files = [
        ("mesh.ply", people_files.ply_with_normals_and_colours(points, "binary_little_endian")),
        ("mesh_ascii.ply", people_files.ply_with_normals_and_colours(points, "ascii")),
        ("scan.pcd", people_files.pcd_xyz_rgb(points, "ascii")),
        ("scan_binary.pcd", people_files.pcd_xyz_rgb(points, "binary")),
        ("airplane_0001.txt", people_files.modelnet_normal_resampled_txt(points)),
        ("tile.las", people_files.las_file(points)),
    ]
    try:
        import lazrs  # noqa: F401

        files.append(("tile.laz", people_files.las_file(points, laz=True)))
    except ImportError:
        pass
    return files


@pytest.mark.parametrize("filename, data", _people_files(), ids=lambda v: v if isinstance(v, str) else "")
def test_uploads_of_files_as_people_have_them_answer_as_their_xyz(client, filename, data):
    points = people_files.exact_cloud()
    reference = predict(client, CLASSIFIER, query="?return_logits=true", content=points.tobytes(), headers=BINARY)
    response = predict(client, CLASSIFIER, query="?return_logits=true", files={"file": (filename, data)})
    assert response.status_code == 200, response.text
    assert response.json() == reference.json()


@pytest.mark.parametrize(
    "filename, breakage, problem",
    [
        ("scan.pcd", lambda p: people_files.pcd_xyz_rgb(p, "binary", fields="a y z rgb"), "has no x field"),
        ("mesh.ply", lambda p: people_files.ply_with_normals_and_colours(p)[:-50], "truncated or corrupt"),
        ("tile.las", lambda p: people_files.las_file(p)[:24] + b"\x09\x09" + people_files.las_file(p)[26:], "version"),
    ],
)
def test_malformed_people_files_are_refused_naming_the_file(client, filename, breakage, problem):
    response = predict(client, CLASSIFIER, files={"file": (filename, breakage(people_files.exact_cloud()))})
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(f"{filename}: ") and problem in response.json()["error"]


def test_las_part_without_extension_is_read_by_its_content_type(client):
    points = people_files.exact_cloud()
    reference = predict(client, CLASSIFIER, content=points.tobytes(), headers=BINARY).json()
    files = {"file": ("tile", people_files.las_file(points), "application/vnd.las")}
    response = predict(client, CLASSIFIER, files=files)
    assert response.status_code == 200, response.text
    assert response.json()["class_id"] == reference["class_id"]
