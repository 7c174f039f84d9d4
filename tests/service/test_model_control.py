"""Live model control (Triton's model repository extension, explicit and poll modes) against real servers on
loopback, with a real repository of tiny random-weight classifiers and stock ``tritonclient``.

Versions are built once (``staging``: v1 and v2 of the classifier with different weights) and published into
each test's own repository by renaming a finished version folder into place.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton_http
from repo_builder import CARDS, CLASSIFIER, publish_model
from server_helpers import running_server, session_settings
from switch_under_load import clouds, infer_body, publish_version_folder, references, run_switch_under_load
from tritonclient.utils import InferenceServerException

from pointserve.repository.store import Repository
from pointserve.service.app import create_app

KEY = "control-key"
POINTS = CARDS[CLASSIFIER].num_points  # the trained count: no padding or resampling, so answers are exact
SAMPLE = clouds(16, POINTS, seed=3)


@pytest.fixture(scope="module")
def staging(tmp_path_factory) -> Path:
    """The classifier as version 1 (seed 0) and version 2 (seed 5: other weights, other answers)."""
    root = tmp_path_factory.mktemp("staging") / "repository"
    publish_model(root, CLASSIFIER, seed=0)
    publish_model(root, CLASSIFIER, seed=5)
    return root


def repository_with_v1(staging: Path, where: Path) -> Path:
    root = where / "repository"
    (root / CLASSIFIER).mkdir(parents=True)
    shutil.copytree(staging / CLASSIFIER / "1", root / CLASSIFIER / "1")
    return root


@contextmanager
def serving(repository: Path, **settings) -> Iterator[tuple[httpx.Client, triton_http.InferenceServerClient]]:
    app = create_app(session_settings(repository, **settings))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        triton = triton_http.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=120)
        try:
            yield http, triton
        finally:
            triton.close()


def served_version(http: httpx.Client) -> str:
    return http.get(f"/v2/models/{CLASSIFIER}").json()["versions"][0]


def index_by_version(triton) -> dict[str, dict]:
    return {e.get("version", "-"): e for e in triton.get_model_repository_index() if e["name"] == CLASSIFIER}


def model_state_metric(http: httpx.Client) -> str:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("pointserve_model_state{") and f'model="{CLASSIFIER}"' in line and line.endswith(" 1.0"):
            return line.split('pointserve_model_state="')[1].split('"')[0]
    raise AssertionError("no model state metric")


def test_version_switch_under_load_fails_no_request(staging, tmp_path):
    """8 closed-loop clients for ~1 s, then version 2 is published and loaded with tritonclient's load_model,
    then ~1 s more: no request fails, and every answer is one version's, bit for bit."""
    repository = repository_with_v1(staging, tmp_path)
    with serving(repository, model_control="explicit") as (http, triton):
        version, v1 = references(http, CLASSIFIER, SAMPLE)
        assert version == "1"
        readiness: list[tuple[int, int]] = []  # (server, model) readiness statuses, read all along the switch
        switched = threading.Event()

        def watch_readiness() -> None:
            with httpx.Client(base_url=http.base_url, timeout=30) as watcher:
                while not switched.is_set():
                    server = watcher.get("/v2/health/ready").status_code
                    readiness.append((server, watcher.get(f"/v2/models/{CLASSIFIER}/ready").status_code))
                    time.sleep(0.01)

        def switch() -> None:
            watcher = threading.Thread(target=watch_readiness, daemon=True)
            watcher.start()
            publish_version_folder(staging, repository, CLASSIFIER, 2)
            triton.load_model(CLASSIFIER)  # empty body: the latest version
            switched.set()
            watcher.join(30)

        run = run_switch_under_load(str(http.base_url), CLASSIFIER, SAMPLE, switch, threads=8)
        assert readiness and set(readiness) == {(200, 200)}, readiness  # no flap while version 2 loaded
        print(f"\nreadiness read {len(readiness)} times during the switch: always 200")
        version, v2 = references(http, CLASSIFIER, SAMPLE)
        assert version == "2"
        assert all(a != b for a, b in zip(v1, v2, strict=True)), "the versions must answer differently"
        run.per_version = {"1": v1, "2": v2}
        print("\n" + run.report())
        table = run.table()
        failed = [o for o in run.outcomes if o.status != 200]
        assert not failed, failed[:3]
        assert set(table["before"]) == {"1"} and table["before"]["1"] > 0
        assert set(table["after"]) == {"2"} and table["after"]["2"] > 0
        assert set(table["during"]) <= {"1", "2"}
        assert not run.inconsistent()  # each answer's model_version is the version whose logits it carries
        assert served_version(http) == "2"
        assert http.get("/v2/health/ready").status_code == 200
        assert model_state_metric(http) == "ready"
        assert index_by_version(triton) == {"2": {"name": CLASSIFIER, "version": "2", "state": "READY", "reason": ""}}


def _answers_v1(http: httpx.Client, v1: list[bytes]) -> None:
    version, answers = references(http, CLASSIFIER, SAMPLE[:4])
    assert version == "1" and answers == v1[:4]


def test_failed_loads_keep_the_old_version_serving(staging, tmp_path):
    repository = repository_with_v1(staging, tmp_path)
    with serving(repository, model_control="explicit") as (http, triton):
        _, v1 = references(http, CLASSIFIER, SAMPLE[:4])

        # A variant file whose bytes no longer match the manifest's sha256 (same size: only the hash tells).
        publish_version_folder(staging, repository, CLASSIFIER, 2)
        graph = repository / CLASSIFIER / "2" / "fp32.onnx"
        data = bytearray(graph.read_bytes())
        data[len(data) // 2] ^= 0xFF
        graph.write_bytes(bytes(data))
        with pytest.raises(InferenceServerException) as failure:
            triton.load_model(CLASSIFIER)
        assert failure.value.status() == "400"
        message = failure.value.message()
        assert "version 2" in message and "sha256" in message and "fp32.onnx" in message, message
        assert "version 1 keeps serving" in message
        _answers_v1(http, v1)
        index = index_by_version(triton)
        assert index["1"]["state"] == "READY"
        assert index["2"]["state"] == "UNAVAILABLE" and "sha256" in index["2"]["reason"]
        assert http.get("/v2/health/ready").status_code == 200 and model_state_metric(http) == "ready"

        # A graph the runtime cannot read, recorded with its true hash (the repository API lets one add it).
        v1_manifest = Repository(repository).open(CLASSIFIER, 1).manifest
        broken = Repository(repository).create_version(CLASSIFIER, v1_manifest)
        garbage = tmp_path / "garbage.onnx"
        garbage.write_bytes(b"this is not an ONNX graph" * 40)
        broken.add_variant("fp32", garbage, precision="fp32", backend="onnxruntime")
        assert broken.version == 3
        answer = http.post(f"/v2/repository/models/{CLASSIFIER}/load", json={"parameters": {"version": 3}})
        assert answer.status_code == 400 and answer.content.startswith(b'{"error":')
        message = answer.json()["error"]
        assert "version 3" in message and "version 1 keeps serving" in message, message
        assert "protobuf" in message.lower() or "onnx" in message.lower(), message
        _answers_v1(http, v1)
        assert index_by_version(triton)["3"]["state"] == "UNAVAILABLE"

        # A version the repository does not have.
        missing = http.post(f"/v2/repository/models/{CLASSIFIER}/load", json={"parameters": {"version": "9"}})
        assert missing.status_code == 400
        assert "has no version 9 (versions: [1, 2, 3])" in missing.json()["error"]
        _answers_v1(http, v1)
        unknown = http.post("/v2/repository/models/nope/load")
        assert unknown.status_code == 400 and "no model 'nope' in repository" in unknown.json()["error"]
        outside = http.post("/v2/repository/models/.shapes-cls/load")  # a folder name that is no model name
        assert outside.status_code == 400 and "invalid model name" in outside.json()["error"]
        assert {e["name"] for e in triton.get_model_repository_index()} == {CLASSIFIER}  # no entry for either

        # Bad request bodies name the problem.
        for body, expected in (
            ({"parameters": {"version": 0}}, "must be a version number"),
            ({"parameters": {"config": "{}"}}, "config"),
            ({"parameters": {"colour": "red"}}, "unknown load parameter(s): colour"),
            ({"version": 2}, '{"parameters": {...}}'),
        ):
            bad = http.post(f"/v2/repository/models/{CLASSIFIER}/load", json=body)
            assert bad.status_code == 400 and expected in bad.json()["error"], bad.text

        # Once the tampered file is replaced by the genuine one, the same load succeeds.
        shutil.copyfile(staging / CLASSIFIER / "2" / "fp32.onnx", graph)
        answer = http.post(f"/v2/repository/models/{CLASSIFIER}/load", json={"parameters": {"version": 2}})
        assert answer.status_code == 200 and answer.content == b""
        assert served_version(http) == "2"
        index = index_by_version(triton)
        assert index["2"]["state"] == "READY" and "1" not in index


def test_unload_then_load_again(staging, tmp_path):
    repository = repository_with_v1(staging, tmp_path)
    with serving(repository, model_control="explicit") as (http, triton):
        _, v1 = references(http, CLASSIFIER, SAMPLE[:4])
        triton.unload_model(CLASSIFIER)  # sends {"parameters": {"unload_dependents": false}}
        gone = http.post(f"/v2/models/{CLASSIFIER}/infer", json=infer_body(SAMPLE[0]))
        assert gone.status_code == 404 and "is served (models: none)" in gone.json()["error"]
        assert not triton.is_model_ready(CLASSIFIER)
        assert http.get("/v2/health/ready").status_code == 200  # no model is not-ready: none is served
        assert model_state_metric(http) == "stopped"
        assert index_by_version(triton) == {
            "1": {"name": CLASSIFIER, "version": "1", "state": "UNAVAILABLE", "reason": "unloaded"}
        }
        assert http.post("/v2/repository/index", json={"ready": True}).json() == []
        triton.unload_model(CLASSIFIER)  # already unloaded: success (nothing to do)
        with pytest.raises(InferenceServerException, match="no model 'nope' to unload"):
            triton.unload_model("nope")

        triton.load_model(CLASSIFIER)
        assert triton.is_model_ready(CLASSIFIER) and model_state_metric(http) == "ready"
        _answers_v1(http, v1)
        assert index_by_version(triton) == {"1": {"name": CLASSIFIER, "version": "1", "state": "READY", "reason": ""}}


def test_poll_mode_follows_the_repository_folder(staging, tmp_path):
    repository = repository_with_v1(staging, tmp_path)
    interval = 0.2
    with serving(repository, model_control="poll", repository_poll_interval_s=interval) as (http, triton):
        with pytest.raises(InferenceServerException, match="model_control poll") as refused:
            triton.load_model(CLASSIFIER)
        assert refused.value.status() == "400"

        published = time.monotonic()
        publish_version_folder(staging, repository, CLASSIFIER, 2)
        while served_version(http) != "2":
            assert time.monotonic() - published < 30, "poll mode did not load version 2"
            time.sleep(0.05)
        took = time.monotonic() - published
        print(f"\npoll: version 2 served {took:.2f} s after it was published (interval {interval} s)")
        assert http.get("/v2/health/ready").status_code == 200

        shutil.rmtree(repository / CLASSIFIER / "2")  # removed: the latest is version 1 again
        while served_version(http) != "1":
            assert time.monotonic() - published < 60, "poll mode did not go back to version 1"
            time.sleep(0.05)

        shutil.rmtree(repository / CLASSIFIER)  # the model is gone from the folder: it is unloaded
        deadline = time.monotonic() + 30
        while http.get(f"/v2/models/{CLASSIFIER}").status_code != 404:
            assert time.monotonic() < deadline, "poll mode did not unload the removed model"
            time.sleep(0.05)
        assert index_by_version(triton)["1"]["reason"] == "unloaded"

        (repository / CLASSIFIER).mkdir()
        publish_version_folder(staging, repository, CLASSIFIER, 1)  # a model new to the folder: it is loaded
        deadline = time.monotonic() + 30
        while not triton.is_model_ready(CLASSIFIER):
            assert time.monotonic() < deadline, "poll mode did not load the newly published model"
            time.sleep(0.05)
        assert served_version(http) == "1"


def test_none_mode_refuses_load_and_unload(staging, tmp_path):
    repository = repository_with_v1(staging, tmp_path)
    with serving(repository) as (http, triton):
        for action in ("load", "unload"):
            answer = http.post(f"/v2/repository/models/{CLASSIFIER}/{action}")
            assert answer.status_code == 400
            message = answer.json()["error"]
            assert f"explicit model {action} is off" in message and "--model-control explicit" in message
        with pytest.raises(InferenceServerException) as refused:
            triton.load_model(CLASSIFIER)
        assert refused.value.status() == "400"
        assert triton.is_model_ready(CLASSIFIER)
        assert index_by_version(triton)["1"]["state"] == "READY"


def test_model_control_needs_the_api_key(staging, tmp_path):
    repository = repository_with_v1(staging, tmp_path)
    with serving(repository, model_control="explicit", api_key=KEY) as (http, _):
        auth = {"Authorization": f"Bearer {KEY}"}
        for path in (
            f"/repository/models/{CLASSIFIER}/unload",
            f"/repository/models/{CLASSIFIER}/load",
            "/repository/index",
        ):
            missing = http.post(f"/v2{path}")
            assert missing.status_code == 401 and "API key" in missing.json()["error"]
            assert http.post(f"/v2{path}", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert http.post(f"/v2{path}", headers=auth).status_code == 200
        ready = http.post(f"/v2/models/{CLASSIFIER}/infer", json=infer_body(SAMPLE[0]), headers=auth)
        assert ready.status_code == 200


def test_explicit_mode_can_start_with_chosen_models(staging, tmp_path):
    """``--load-model``: in explicit mode only the named models load at start; the others wait for a load."""
    repository = repository_with_v1(staging, tmp_path)
    source = Repository(staging).open(CLASSIFIER, 2)
    other = Repository(repository).create_version("other", source.manifest)
    other.add_variant("fp32", source.variant_path("fp32"), precision="fp32", backend="onnxruntime", move=False)
    with serving(repository, model_control="explicit", startup_models=[CLASSIFIER]) as (http, triton):
        entries = {e["name"]: e for e in triton.get_model_repository_index()}
        assert entries["other"] == {"name": "other", "state": "UNAVAILABLE", "reason": "not loaded"}
        assert entries[CLASSIFIER]["state"] == "READY"
        triton.load_model("other")
        assert triton.is_model_ready("other")
        version, answers = references(http, "other", SAMPLE[:2])
        assert version == "1" and np.frombuffer(answers[0], np.float32).shape == (4,)


def test_startup_models_need_explicit_mode_and_known_names(staging, tmp_path):
    from pointserve.errors import ConfigError
    from pointserve.service.served_model import model_names
    from pointserve.service.settings import load_settings

    repository = repository_with_v1(staging, tmp_path)
    with pytest.raises(ConfigError, match="startup_models .--load-model. needs model_control explicit"):
        load_settings(repository=repository, startup_models=[CLASSIFIER])
    with pytest.raises(ConfigError, match="settings name model.s. nope that repository"):
        model_names(load_settings(repository=repository, model_control="explicit", startup_models=["nope"]))
    with pytest.raises(ConfigError, match="no models to serve"):
        model_names(load_settings(repository=repository, models={CLASSIFIER: {"enabled": False}}))
    # With model control on, a server may start with nothing loaded: models come later.
    assert (
        model_names(load_settings(repository=repository, model_control="poll", models={CLASSIFIER: {"enabled": False}}))
        == []
    )
