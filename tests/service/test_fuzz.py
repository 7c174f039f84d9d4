"""Bounded fuzzing of the live server: hypothesis-generated hostile requests, and schemathesis from /openapi.json.
No answer may be a 5xx, and every 4xx must be JSON with an error message. (The >= 2,000-request acceptance
run is ``scripts/acceptance_service.py fuzz``.)"""

from __future__ import annotations

import httpx
import schemathesis
from fuzz_requests import FuzzRequest, check_answer, hostile_requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from repo_builder import CLASSIFIER, PART_SEGMENTER
from schemathesis.checks import not_a_server_error

FUZZ_SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@FUZZ_SETTINGS
@given(request=hostile_requests((CLASSIFIER, PART_SEGMENTER)))
def test_no_hostile_request_gets_a_server_error(client: httpx.Client, request: FuzzRequest):
    response = client.request(request.method, request.path, content=request.body, headers=request.headers)
    problem = check_answer(response.status_code, response.headers.get("content-type", ""), response.content)
    assert problem is None, (request, problem)


def test_the_server_is_healthy_after_fuzzing(client: httpx.Client):
    assert client.get("/v2/health/ready").status_code == 200


def test_schemathesis_cases_from_the_openapi_document_get_no_server_error(server):
    # Schemathesis as a library (its pytest plugin does not run under pytest 9): a strategy per operation.
    schema = schemathesis.openapi.from_url(f"{server}/openapi.json")
    calls = 0
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), model=st.sampled_from([CLASSIFIER, PART_SEGMENTER, "nope"]))
        def call(case, model):
            nonlocal calls
            if "model" in (case.path_parameters or {}):
                case.path_parameters["model"] = model  # mostly served models, so bodies reach the decoders
            response = case.call(base_url=server)
            calls += 1
            content_type = response.headers.get("content-type") or [""]  # schemathesis: a list per header
            problem = check_answer(response.status_code, content_type[0], response.content)
            assert problem is None, (case.method, case.formatted_path, problem)
            case.validate_response(response, checks=[not_a_server_error])

        call()
    assert calls >= 50
