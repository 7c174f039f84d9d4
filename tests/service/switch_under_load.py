"""The version switch under a bounded load, as one scenario for ``tests/service/test_model_control.py`` and
``scripts/model_switch_under_load.py``: client threads send OIP infer requests while a new version is published
(its folder renamed into the repository, as a finished export appears) and loaded; every answer is then matched,
bit for bit, against each version's answer for the same cloud computed alone.

Bit for bit holds because the clouds have the trained point count (no padding, no resampling) and ONNX Runtime
computes each cloud of a batch the same way whatever the batch size, on one intra-op thread.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np


def publish_version_folder(source: Path, repository: Path, name: str, version: int) -> Path:
    """Copy a finished version folder beside the repository's model folder, then rename it into place: the
    version appears whole, as ``Repository.create_version`` makes it appear."""
    staging = repository / name / f".{version}.publishing"
    shutil.copytree(source / name / str(version), staging)
    target = repository / name / str(version)
    os.rename(staging, target)
    return target


def clouds(count: int, points: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((points, 3)) * [2.0, 1.0, 0.5]).astype(np.float32) for _ in range(count)]


def infer_body(cloud: np.ndarray) -> dict:
    return {
        "inputs": [{"name": "points", "datatype": "FP32", "shape": [1, *cloud.shape], "data": cloud.ravel().tolist()}]
    }


def answer_of(response: httpx.Response) -> tuple[str, bytes]:
    """(the model version the server reports, the logits as float32 bytes)."""
    body = response.json()
    return body["model_version"], np.asarray(body["outputs"][0]["data"], dtype=np.float32).tobytes()


def references(http: httpx.Client, model: str, sample: list[np.ndarray]) -> tuple[str, list[bytes]]:
    """Each cloud's answer alone (one request at a time): the version served and its logits."""
    answers = []
    for cloud in sample:
        response = http.post(f"/v2/models/{model}/infer", json=infer_body(cloud))
        response.raise_for_status()
        answers.append(answer_of(response))
    versions = {version for version, _ in answers}
    assert len(versions) == 1, f"the references came from several versions: {versions}"
    return versions.pop(), [logits for _, logits in answers]


@dataclass
class Outcome:
    cloud: int
    started: float
    finished: float
    status: int  # 0: no answer (connection error)
    version: str = ""
    logits: bytes = b""
    error: str = ""


@dataclass
class LoadRun:
    outcomes: list[Outcome]
    switch_started: float
    switch_finished: float
    duration_s: float
    threads: int
    per_version: dict[str, list[bytes]] = field(default_factory=dict)

    def source(self, outcome: Outcome) -> str:
        """The version whose reference the answer equals bit for bit ("none" if neither, "failed")."""
        if outcome.status != 200:
            return "failed"
        for version, answers in self.per_version.items():
            if outcome.logits == answers[outcome.cloud]:
                return version
        return "none"

    def phase(self, outcome: Outcome) -> str:
        if outcome.finished < self.switch_started:
            return "before"
        if outcome.started > self.switch_finished:
            return "after"
        return "during"

    def table(self) -> dict[str, Counter]:
        """Per phase (before the load call / during it / after it returned): answers by source version."""
        rows: dict[str, Counter] = {"before": Counter(), "during": Counter(), "after": Counter()}
        for outcome in self.outcomes:
            rows[self.phase(outcome)][self.source(outcome)] += 1
        return rows

    def inconsistent(self) -> list[Outcome]:
        """Answers whose reported model_version is not the version whose logits they carry."""
        return [o for o in self.outcomes if o.status == 200 and self.source(o) != o.version]

    def report(self) -> str:
        failed = sum(o.status != 200 for o in self.outcomes)
        took = self.switch_finished - self.switch_started
        lines = [
            f"switch under load: {self.threads} client threads, {self.duration_s:.2f} s, "
            f"{len(self.outcomes)} requests, {failed} failed; load call took {took:.3f} s",
            f"{'phase':<8} {'requests':>8}  answers by version (bit for bit)",
        ]
        for phase, counts in self.table().items():
            detail = ", ".join(f"v{k}: {v}" if k.isdigit() else f"{k}: {v}" for k, v in sorted(counts.items()))
            lines.append(f"{phase:<8} {sum(counts.values()):>8}  {detail or '-'}")
        statuses = Counter(o.status for o in self.outcomes)
        lines.append(
            f"statuses: {dict(sorted(statuses.items()))}; reported versions: "
            f"{dict(sorted(Counter(o.version for o in self.outcomes if o.version).items()))}"
        )
        return "\n".join(lines)


def run_switch_under_load(
    url: str,
    model: str,
    sample: list[np.ndarray],
    switch: Callable[[], None],
    *,
    threads: int = 8,
    before_s: float = 1.0,
    after_s: float = 1.0,
    max_requests_per_thread: int = 2000,
    limit_s: float = 60.0,
) -> LoadRun:
    """``threads`` closed-loop clients for ``before_s``, then ``switch()`` (blocking: publish and load), then
    ``after_s`` more; bounded by ``max_requests_per_thread`` and ``limit_s`` whatever happens."""
    stop = threading.Event()
    outcomes: list[list[Outcome]] = [[] for _ in range(threads)]
    started = time.monotonic()
    deadline = started + limit_s

    def client(index: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as http:
            for n in range(max_requests_per_thread):
                if stop.is_set() or time.monotonic() > deadline:
                    return
                cloud = (index + n * threads) % len(sample)
                begin = time.monotonic()
                try:
                    response = http.post(f"/v2/models/{model}/infer", json=infer_body(sample[cloud]))
                except httpx.HTTPError as exc:
                    outcomes[index].append(Outcome(cloud, begin, time.monotonic(), 0, error=repr(exc)))
                    continue
                outcome = Outcome(cloud, begin, time.monotonic(), response.status_code)
                if response.status_code == 200:
                    outcome.version, outcome.logits = answer_of(response)
                else:
                    outcome.error = response.text[:300]
                outcomes[index].append(outcome)

    workers = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(threads)]
    for worker in workers:
        worker.start()
    try:
        time.sleep(before_s)
        switch_started = time.monotonic()
        switch()
        switch_finished = time.monotonic()
        time.sleep(after_s)
    finally:
        stop.set()
        for worker in workers:
            worker.join(limit_s)
    return LoadRun(
        outcomes=[o for per_thread in outcomes for o in per_thread],
        switch_started=switch_started,
        switch_finished=switch_finished,
        duration_s=time.monotonic() - started,
        threads=threads,
    )
