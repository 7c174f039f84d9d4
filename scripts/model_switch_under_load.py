"""A model's version switched under load, against a real `pointserve serve --model-control explicit` process.

    .venv/bin/python scripts/model_switch_under_load.py [--threads 8] [--before-s 1] [--after-s 1] [--json out.json]

Builds a repository with a tiny random-weight classifier (version 1, and a version 2 with other weights kept
aside), serves version 1 in a subprocess, runs closed-loop client threads (OIP infer, JSON), publishes version 2
(its folder renamed into the repository) and loads it with tritonclient's ``load_model`` while they run. Every
answer is matched bit for bit against each version's answer for the same cloud alone; the table gives, before the
load call, during it and after it returned, how many answers came from which version, and how many failed.
It is the scenario of ``tests/service/test_model_control.py`` (``tests/service/switch_under_load.py``), with the
server in its own process rather than a thread of the test's. Exit status 1 if any request failed or any answer
was from the wrong version. Needs the development environment (torch, to build the models).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "service")]

from repo_builder import CARDS, CLASSIFIER, publish_model  # noqa: E402
from switch_under_load import clouds, publish_version_folder, references, run_switch_under_load  # noqa: E402

from pointserve.bench.processes import free_port, pointserve_command, server_process  # noqa: E402

CONFIG = {
    "access_log": False,
    "log_level": "warning",
    "batching": {"max_batch_size": 8, "max_queue_delay_ms": 5, "threads_per_instance": 1},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8, help="client threads (default: 8)")
    parser.add_argument("--before-s", type=float, default=1.0, help="load before the switch (default: 1 s)")
    parser.add_argument("--after-s", type=float, default=1.0, help="load after the load call returned (default: 1 s)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import tritonclient.http as triton_http

    sample = clouds(16, CARDS[CLASSIFIER].num_points, seed=3)
    with tempfile.TemporaryDirectory(prefix="switch-") as tmp:
        work = Path(tmp)
        staging = work / "staging" / "repository"
        print("building version 1 and version 2 of the classifier (random weights) ...", flush=True)
        publish_model(staging, CLASSIFIER, seed=0)
        publish_model(staging, CLASSIFIER, seed=5)
        repository = work / "repository"
        shutil.copytree(staging / CLASSIFIER / "1", repository / CLASSIFIER / "1")
        config = work / "serve.json"
        config.write_text(json.dumps(CONFIG))
        port = free_port()
        command = [*pointserve_command(repository, port, config), "--model-control", "explicit"]
        with server_process(command, port, "/v2/health/ready", work / "serve.log") as (_, url):
            triton = triton_http.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=120)
            with httpx.Client(base_url=url, timeout=60) as http:
                _, v1 = references(http, CLASSIFIER, sample)

                def switch() -> None:
                    publish_version_folder(staging, repository, CLASSIFIER, 2)
                    triton.load_model(CLASSIFIER)

                run = run_switch_under_load(
                    url, CLASSIFIER, sample, switch, threads=args.threads, before_s=args.before_s, after_s=args.after_s
                )
                _, v2 = references(http, CLASSIFIER, sample)
            triton.close()
    run.per_version = {"1": v1, "2": v2}
    print(run.report())
    table = run.table()
    failed = sum(o.status != 200 for o in run.outcomes)
    wrong = (
        sum(v for k, v in table["before"].items() if k != "1")
        + sum(v for k, v in table["after"].items() if k != "2")
        + table["during"].get("none", 0)
        + len(run.inconsistent())
    )
    if args.json:
        figures = {
            "threads": run.threads,
            "duration_s": round(run.duration_s, 3),
            "load_call_s": round(run.switch_finished - run.switch_started, 3),
            "requests": len(run.outcomes),
            "failed": failed,
            "wrong_version": wrong,
            "phases": {phase: dict(counts) for phase, counts in table.items()},
        }
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 1 if failed or wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
