"""docker/kserve-inferenceservice.yaml names what the CPU image really serves.

No cluster or kubectl here, so nothing is applied: the YAML is parsed (``yaml.safe_load_all``) and every port,
path, user, mount and ``POINTSERVE_*`` name in it is checked against the Dockerfile's final stage, pointserve's
``Settings`` and the routes of the app itself (probed in-process, with an API key set, as the kubelet would).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import pytest
import yaml
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from pydantic import BaseModel

from pointserve.service.app import create_app
from pointserve.service.routes import ROUTERS, health
from pointserve.service.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
KSERVE = ROOT / "docker" / "kserve-inferenceservice.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def _documents() -> dict[str, dict]:
    documents = [d for d in yaml.safe_load_all(KSERVE.read_text()) if d is not None]
    by_kind = {d["kind"]: d for d in documents}
    assert len(by_kind) == len(documents), "one document per kind"
    return by_kind


@pytest.fixture(scope="module")
def isvc() -> dict:
    service = _documents()["InferenceService"]
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    return service


@pytest.fixture(scope="module")
def container(isvc) -> dict:
    (found,) = isvc["spec"]["predictor"]["containers"]
    return found


def _env(container: dict) -> dict[str, str | None]:
    """name -> literal value (None for valueFrom)."""
    return {item["name"]: item.get("value") for item in container.get("env", [])}


def _dockerfile_final_stage() -> dict:
    """The final stage's ENV (dict), USER and EXPOSE of ./Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    final = re.split(r"^FROM ", text, flags=re.M)[-1]
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", final, re.M):
        for word in shlex.split(line):
            name, _, value = word.partition("=")
            env[name] = value
    (user,) = re.findall(r"^USER (\S+)$", final, re.M)
    exposed = [int(port.split("/")[0]) for line in re.findall(r"^EXPOSE (.+)$", final, re.M) for port in line.split()]
    return {"env": env, "user": user, "expose": exposed}


def _effective_env(container: dict) -> dict[str, str | None]:
    """What the server process sees: the image's ENV, then the container's env on top (as Kubernetes does)."""
    return {**_dockerfile_final_stage()["env"], **_env(container)}


def _settings_field(name: str):
    """The Settings field a POINTSERVE_* variable sets (``__`` into nested models); fails for a name pointserve
    would silently ignore."""
    assert name.startswith(ENV_PREFIX), name
    model: type[BaseModel] = Settings
    parts = name.removeprefix(ENV_PREFIX).lower().split("__")
    for i, part in enumerate(parts):
        assert part in model.model_fields, f"{name}: {part!r} is not a setting of {model.__name__}"
        annotation = model.model_fields[part].annotation
        if i < len(parts) - 1:
            assert isinstance(annotation, type) and issubclass(annotation, BaseModel), f"{name}: {part} has no fields"
            model = annotation
    return model.model_fields[parts[-1]]


def _port(container: dict, port: int | str) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p.get("name") == port]
    return number


@pytest.fixture(scope="module")
def served_settings(container) -> Settings:
    """pointserve's Settings from the container's effective environment (secrets stand in as a dummy)."""
    mp = pytest.MonkeyPatch()
    for name in [n for n in os.environ if n.startswith(ENV_PREFIX)]:
        mp.delenv(name)
    for name, value in _effective_env(container).items():
        if name.startswith(ENV_PREFIX):
            mp.setenv(name, "secret-from-a-kubernetes-secret" if value is None else value)
    try:
        return Settings()
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def app_routes() -> dict[str, APIRoute]:
    """The app's GET routes by path: the paths its OpenAPI schema lists as GET, mapped to their APIRoute in
    pointserve.service.routes.ROUTERS (the routers the app includes, as they are)."""
    app = create_app(Settings(repository=Path("/nonexistent")), models={})
    served = {path for path, operations in app.openapi()["paths"].items() if "get" in operations}
    declared = {
        r.path: r for router in ROUTERS for r in router.routes if isinstance(r, APIRoute) and "GET" in r.methods
    }
    assert served <= set(declared) | {"/metrics"}, served - set(declared)
    return {path: declared[path] for path in served if path in declared}


def test_the_custom_predictor_is_what_kserve_looks_for(isvc, container):
    assert container["name"] == "kserve-container"
    assert _env(container)["PROTOCOL"] == "v2"  # KServe's custom-predictor protocol variable: OIP v2
    assert not ENV_PREFIX.startswith("PROTOCOL")  # ...which pointserve's settings do not read
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] in ("RawDeployment", "Serverless")
    # The image runs as given: no command or args override the ENTRYPOINT ["pointserve"] / CMD ["serve"].
    assert "command" not in container and "args" not in container


def test_every_pointserve_variable_is_a_setting_and_validates(container, served_settings):
    names = [name for name in _env(container) if name.startswith(ENV_PREFIX)]
    assert names
    for name in names:
        _settings_field(name)
    unknown = [n for n in _env(container) if not n.startswith(ENV_PREFIX) and n != "PROTOCOL"]
    assert not unknown, f"variables neither pointserve's nor KServe's: {unknown}"
    assert served_settings.host == "0.0.0.0"  # from the image: reachable from the pod network


def test_the_settings_check_catches_a_misspelt_variable():
    with pytest.raises(AssertionError, match="not a setting"):
        _settings_field("POINTSERVE_BATCHING__MAX_BATCHSIZE")
    with pytest.raises(AssertionError, match="not a setting"):
        _settings_field("POINTSERVE_REPOSITORY_PATH")


def test_the_port_is_the_one_the_server_listens_on(isvc, container, served_settings):
    (port,) = container["ports"]
    assert port["containerPort"] == served_settings.port
    assert port["containerPort"] in _dockerfile_final_stage()["expose"]
    annotations = isvc["metadata"]["annotations"]
    assert int(annotations["prometheus.kserve.io/port"]) == served_settings.port
    for probe in PROBES:
        assert _port(container, container[probe]["httpGet"]["port"]) == served_settings.port, probe


def test_probes_ask_the_real_health_endpoints(container, app_routes):
    paths = {probe: container[probe]["httpGet"]["path"] for probe in PROBES}
    for probe, path in paths.items():
        assert path in app_routes, f"{probe}: GET {path} is not a route of the app"
    # readiness is the endpoint that answers 503 while loading / draining; liveness and startup the process check
    assert app_routes[paths["readinessProbe"]].endpoint is health.ready
    assert app_routes[paths["livenessProbe"]].endpoint is health.live
    assert app_routes[paths["startupProbe"]].endpoint is health.live


def test_probes_and_metrics_answer_as_the_kubelet_and_prometheus_would(isvc, container):
    """In-process app with an API key: the probes need none (the kubelet sends none), /metrics does."""
    app = create_app(Settings(repository=Path("/nonexistent"), api_key="k8s-secret"), models={})
    with TestClient(app) as client:
        for probe in PROBES:
            response = client.get(container[probe]["httpGet"]["path"])
            assert response.status_code == 200, (probe, response.text)
        metrics = isvc["metadata"]["annotations"]["prometheus.kserve.io/path"]
        assert client.get(metrics).status_code == 401
        answer = client.get(metrics, headers={"Authorization": "Bearer k8s-secret"})
        assert answer.status_code == 200 and "pointserve_" in answer.text


def test_the_repository_volume_is_mounted_where_the_server_reads(isvc, container, served_settings):
    predictor = isvc["spec"]["predictor"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    mount = mounts[str(served_settings.repository)]
    assert mount.get("readOnly") is True
    volumes = {v["name"]: v for v in predictor["volumes"]}
    claim = volumes[mount["name"]]["persistentVolumeClaim"]["claimName"]
    assert claim == _documents()["PersistentVolumeClaim"]["metadata"]["name"]
    if container["securityContext"].get("readOnlyRootFilesystem"):
        assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_user_resources_and_grace_period_fit_the_image_and_the_server(isvc, container, served_settings):
    predictor = isvc["spec"]["predictor"]
    uid, gid = (int(x) for x in _dockerfile_final_stage()["user"].split(":"))
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert (predictor["securityContext"]["runAsUser"], predictor["securityContext"]["runAsGroup"]) == (uid, gid)
    limits, requests = container["resources"]["limits"], container["resources"]["requests"]
    assert {"cpu", "memory"} <= set(limits) and {"cpu", "memory"} <= set(requests)
    # ONNX Runtime's threads = the CPU limit (a whole number of CPUs)
    assert served_settings.batching.threads_per_instance == int(limits["cpu"])
    # SIGTERM drains before exit: the kubelet must wait longer than the drain
    assert predictor["terminationGracePeriodSeconds"] > served_settings.drain_timeout_s + served_settings.drain_linger_s
