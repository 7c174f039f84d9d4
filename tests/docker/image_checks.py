"""What ``scripts/image-test.sh`` asks the server running from the built image (run with the project's .venv):

    python tests/docker/image_checks.py config IMAGE_INSPECT_JSON   # the image's run configuration, shell words
    python tests/docker/image_checks.py serve URL                   # the HTTP checks; one report line each

``serve`` checks liveness and readiness, a classification (REST v1 and Open Inference Protocol v2), a segmentation
of a 5,000-point cloud (over 4,096 points: the server resamples it to what the engine computes and answers a label
for every input point) and /metrics. Any failed check exits non-zero with the reason.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import httpx
import numpy as np
from image_repository import MODEL, SEGMENTER  # the two models the served repository holds

SEGMENTED_POINTS = 5000


def config(path: str) -> None:
    """``podman image inspect`` output -> shell assignments: IMAGE_ENV (array), IMAGE_USER, IMAGE_WORKDIR,
    IMAGE_COMMAND (array: entrypoint + cmd), IMAGE_HEALTHCHECK (array: the CMD form's command), IMAGE_PORTS."""
    (inspected,) = json.loads(Path(path).read_text())
    cfg = inspected["Config"]
    # podman keeps a docker-format image's HEALTHCHECK beside the OCI config (top-level "Healthcheck"); docker
    # inspect has it in Config. An OCI-format build drops it (hence `podman build --format docker`).
    health = inspected.get("Healthcheck") or cfg.get("Healthcheck") or {}
    test = health.get("Test") or []
    if test[:1] != ["CMD"]:
        raise SystemExit(
            f"image has no HEALTHCHECK CMD (Healthcheck = {health!r}, manifest {inspected.get('ManifestType')})"
        )

    def array(name: str, words: list[str]) -> str:
        return f"{name}=({' '.join(shlex.quote(w) for w in words)})"

    print(array("IMAGE_ENV", cfg.get("Env") or []))
    print(f"IMAGE_USER={shlex.quote(cfg.get('User') or 'root')}")
    print(f"IMAGE_WORKDIR={shlex.quote(cfg.get('WorkingDir') or '/')}")
    print(array("IMAGE_COMMAND", (cfg.get("Entrypoint") or []) + (cfg.get("Cmd") or [])))
    print(array("IMAGE_HEALTHCHECK", test[1:]))
    print(f"IMAGE_PORTS={shlex.quote(' '.join(sorted(cfg.get('ExposedPorts') or {})))}")


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"check failed: {what}")


def _predict(client: httpx.Client, model: str, points: np.ndarray) -> dict:
    response = client.post(
        f"/v1/models/{model}/predict",
        content=points.astype("<f4").tobytes(),
        headers={"content-type": "application/octet-stream"},
    )
    _check(response.status_code == 200, f"POST /v1/models/{model}/predict: {response.status_code} {response.text}")
    return response.json()


def serve(url: str) -> None:
    rng = np.random.default_rng(0)
    with httpx.Client(base_url=url, timeout=60) as client:
        for path in ("/v2/health/live", "/v2/health/ready"):
            status = client.get(path).status_code
            _check(status == 200, f"GET {path}: {status}")
        server = client.get("/v2").json()
        print(f"health: live 200, ready 200 ({server['name']} {server['version']})")

        classes = client.get(f"/v1/models/{MODEL}").json()["classes"]
        answer = _predict(client, MODEL, rng.standard_normal((50, 3)))
        _check(answer["label"] in classes and len(answer["top_k"]) == len(classes), f"classification: {answer}")
        best = answer["top_k"][0]
        print(
            f"classify (v1): {MODEL}, 50 points -> label {answer['label']!r} "
            f"(score {best['score']:.3f}, top_k over {len(classes)} classes)"
        )

        metadata = client.get(f"/v2/models/{MODEL}").json()
        points_input = metadata["inputs"][0]
        cloud = rng.standard_normal((1, 128, 3)).astype(np.float32)
        request = {
            "inputs": [
                {
                    "name": points_input["name"],
                    "shape": list(cloud.shape),
                    "datatype": "FP32",
                    "data": cloud.ravel().tolist(),
                }
            ]
        }
        response = client.post(f"/v2/models/{MODEL}/infer", json=request)
        _check(response.status_code == 200, f"POST /v2/models/{MODEL}/infer: {response.status_code} {response.text}")
        (output,) = response.json()["outputs"]
        _check(output["shape"] == [1, len(classes)] and len(output["data"]) == len(classes), f"v2 infer: {output}")
        print(
            f"classify (v2 infer): {MODEL}, 1 x 128 points -> {output['name']} {output['shape']} {output['datatype']}"
        )

        segmented = _predict(client, SEGMENTER, rng.standard_normal((SEGMENTED_POINTS, 3)))
        labels = segmented["labels"]
        _check(segmented["num_points"] == SEGMENTED_POINTS and len(labels) == SEGMENTED_POINTS, "a label per point")
        _check(segmented["resampled"] and segmented["num_processed_points"] < SEGMENTED_POINTS, "resampled")
        print(
            f"segment (v1): {SEGMENTER}, {SEGMENTED_POINTS} points -> {len(labels)} labels "
            f"(resampled, {segmented['num_processed_points']} processed; counts {segmented['counts']})"
        )

        metrics = client.get("/metrics")
        _check(metrics.status_code == 200 and "pointserve_" in metrics.text, "GET /metrics")
        print("metrics: 200")


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("config", "serve"):
        sys.exit(__doc__)
    {"config": config, "serve": serve}[sys.argv[1]](sys.argv[2])
