"""The REST API against its own OpenAPI document (issue 13, finding 5): schemathesis over every
operation of a real server on the tiny bundle (learning jobs of at most 3 updates run while it
probes), and regression tests for what the probe found: undeclared error statuses, a 422 body
declared as a list while the server sends one line, and 405 answers whose Allow header left out
methods the path serves."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import engine
from schemathesis.engine import events as engine_events

from app.background import running
from app.main import create_app

# Bounded so the run adds well under a minute on 2 CPU cores: a fixed seed (deterministic: a failure
# reproduces on the next run), at most 25 generated cases per operation in the fuzzing phase plus the
# coverage phase's boundary cases, and a timeout on every request so a hang fails instead of stalling.
CONFIG: dict[str, Any] = {
    "seed": 13,
    "request-timeout": 60,
    "generation": {"max-examples": 25, "deterministic": True, "database": "none"},
    "phases": {"examples": {"enabled": True}, "coverage": {"enabled": True}, "fuzzing": {"enabled": True},
               "stateful": {"enabled": True}},
    "checks": {
        # 413: a request body over the upload limit (a prompt over its maxLength is a 422, issue 26)
        "negative_data_rejection": {"expected-statuses": ["400", "401", "403", "404", "405", "406", "409", "413",
                                                          "415", "422", "428", "429"]},
    },
    # Schema-valid requests the server rightly refuses for what no schema can say: an uploaded file
    # that is not a video (415 by its suffix, 400 when it does not decode), or a multipart learn with
    # neither a prompt nor a video (400). Everything else schema-valid must be accepted (ST202).
    "operations": [{"include-method": "POST", "include-path": path, "checks": {"positive_data_acceptance": {
        "expected-statuses": ["2xx", "400", "401", "403", "404", "409", "415", "429"]}}}
        for path in ("/learn", "/target")],
}
STATEFUL = "Stateful tests"  # the label schemathesis gives the stateful phase's calls
# what the server under test allows: short jobs, no real-env episodes, a queue that never refuses (so
# every /learn the run makes starts a job; the 429 of a full queue is tested below, without timing)
SERVER = {"default_updates": 2, "max_updates": 3, "eval_episodes": 0, "max_eval_episodes": 0, "max_queue": 10_000,
          "behaviour_preset": "tiny", "max_upload_mb": 1, "ui": False}


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("app_schema")
    with running(create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", **SERVER)) as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(server):
    return schemathesis.openapi.from_url(f"{server}/openapi.json", config=schemathesis.Config.from_dict(CONFIG))


def test_a_finished_jobs_view_and_every_artefact_conform(api_schema, server):
    """The 200s fuzzing rarely reaches: a real finished job and each of its downloads (mp4, png, .pt).
    First in the module, so the fuzzing's jobs do not fill the server's queue before it."""
    learn = api_schema["/learn"]["GET"].Case(query={"prompt": "stand up straight", "steps": 8, "updates": 2})
    job = learn.call_and_validate().json()
    deadline = time.monotonic() + 180
    while job["state"] not in ("succeeded", "failed", "cancelled", "interrupted") and time.monotonic() < deadline:
        time.sleep(0.3)
        job = httpx.get(f"{server}/jobs/{job['id']}").json()
    assert job["state"] == "succeeded", job
    api_schema["/jobs/{job_id}"]["GET"].Case(path_parameters={"job_id": job["id"]}).call_and_validate()
    types = set()
    for name in job["urls"]["artefacts"]:
        case = api_schema["/jobs/{job_id}/artefacts/{name}"]["GET"].Case(
            path_parameters={"job_id": job["id"], "name": name})
        response = case.call_and_validate()
        assert response.status_code == 200
        types.add(response.headers["content-type"][0])
    assert {"video/mp4", "image/png", "application/octet-stream"} <= types


def test_schemathesis_finds_no_server_error_and_no_schema_violation(api_schema, server):
    """The probe's run, as `schemathesis run` does it (coverage, fuzzing and stateful phases, every
    default check, so no ST201 or ST202 finding): no 5xx, every status declared, every body, header and content
    type as declared, 405s with a full Allow. Run by schemathesis's engine rather than its pytest
    plugin, whose fixture-based loader reads a pytest attribute that pytest 9.2 no longer has."""
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = defaultdict(Counter)
    for event in engine.from_schema(api_schema).execute():
        if isinstance(event, engine_events.ScenarioFinished):
            for interaction in event.recorder.interactions.values():
                if interaction.response is not None:
                    statuses[event.recorder.label][interaction.response.status_code] += 1
            for nodes in event.recorder.checks.values():
                for node in nodes:
                    if node.status == engine.Status.FAILURE and node.failure_info is not None:
                        failure = node.failure_info.failure
                        failures.append(f"{event.recorder.label} [{node.name}] {failure.title}: {failure.message}\n"
                                        f"    {node.failure_info.code_sample[:600]}")
        elif isinstance(event, engine_events.NonFatalError | engine_events.FatalError):
            failures.append(f"engine error: {event!r}")
    assert not failures, "\n".join(dict.fromkeys(failures))
    # the run reached every operation, and learning jobs really started
    operations = {f"{method.upper()} {path}" for path, ops in api_schema.raw_schema["paths"].items() for method in ops}
    assert set(statuses) == operations | {STATEFUL}, operations ^ set(statuses)
    assert sum(statuses[STATEFUL].values()) > 0  # the stateful phase's call sequences ran too
    assert statuses["GET /learn"][202] and statuses["POST /learn"][202], statuses
    assert not any(code >= 500 for counts in statuses.values() for code in counts), statuses


# -- regression tests of the probe's findings --------------------------------------------------


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory) -> Iterator[TestClient]:
    """No job worker and a queue of one, so the second job is refused with 429."""
    root = tmp_path_factory.mktemp("app_schema_client")
    app = create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", ui=False, preload=False,
                     max_queue=1, max_upload_mb=1)
    with TestClient(app) as c:
        c.app.state.services.jobs.stop()
        yield c


def _declared(document: dict[str, Any], method: str, path: str) -> dict[str, Any]:
    return document["paths"][path][method.lower()]["responses"]


def test_each_error_status_is_declared_with_the_body_the_server_sends(client):
    document = client.get("/openapi.json").json()
    # the one error shape: {"detail": str}, for validation errors too (FastAPI's list-shaped one is gone)
    assert "HTTPValidationError" not in document["components"]["schemas"]
    error = document["components"]["schemas"]["ErrorBody"]
    assert error["required"] == ["detail"] and error["properties"]["detail"]["type"] == "string"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, status)

    probes = [  # (method, path, request arguments, the status it gets)
        ("GET", "/target", {"params": {"prompt": "   "}}, 400),
        ("GET", "/target", {"params": {"prompt": "stand", "body": "octopus"}}, 404),
        ("GET", "/target", {"params": {"prompt": "x" * 2001}}, 422),  # over maxLength (413 before: issue 26)
        ("GET", "/target", {"params": {"prompt": "stand", "steps": 65}}, 422),
        ("GET", "/learn", {"params": {"prompt": ""}}, 400),
        ("GET", "/learn", {"params": {"prompt": "stand", "body": "octopus"}}, 404),
        ("GET", "/learn", {"params": {"steps": 8}}, 422),
        ("POST", "/learn", {"content": b"{oops", "headers": {"content-type": "application/json"}}, 400),
        ("POST", "/learn", {"content": b"prompt=stand", "headers": {"content-type": "text/plain"}}, 415),
        ("POST", "/learn", {"content": b"\0" * (2 << 20), "headers": {"content-type": "application/json"}}, 413),
        ("POST", "/learn", {"json": {"prompt": "stand", "colour": "red"}}, 422),
        ("POST", "/learn", {"json": {"steps": 8}}, 422),  # JSON has no video: a text prompt is required
        # JSON types are kept: false is not 0 episodes, 1 is not true (schemathesis found these accepted)
        ("POST", "/learn", {"json": {"prompt": "stand", "eval_episodes": False}}, 422),
        ("POST", "/learn", {"json": {"prompt": "stand", "use_aligner": 1}}, 422),
        ("POST", "/target", {"files": {"video": ("notes.txt", b"hello", "text/plain")}}, 415),
        ("POST", "/target", {"data": {"steps": "8"}}, 400),
        ("GET", "/jobs", {"params": {"state": "sleeping"}}, 422),
        ("GET", "/jobs/0123456789abcdef", {}, 404),
        ("GET", "/jobs/not-a-job", {}, 422),
        ("POST", "/jobs/0123456789abcdef/cancel", {}, 404),
        ("GET", "/jobs/0123456789abcdef/artefacts/target", {}, 404),
        ("GET", "/policies", {"params": {"body": "octopus"}}, 404),
        ("GET", "/learn", {"params": {"prompt": "stand", "updates": 5}}, 202),  # fills the queue of one ...
        ("GET", "/learn", {"params": {"prompt": "walk", "updates": 5}}, 429),  # ... so this one is refused
    ]
    templated = {"/jobs/0123456789abcdef": "/jobs/{job_id}", "/jobs/not-a-job": "/jobs/{job_id}",
                 "/jobs/0123456789abcdef/cancel": "/jobs/{job_id}/cancel",
                 "/jobs/0123456789abcdef/artefacts/target": "/jobs/{job_id}/artefacts/{name}"}
    for method, path, kwargs, status in probes:
        r = client.request(method, path, **kwargs)
        assert r.status_code == status, (method, path, r.status_code, r.text[:200])
        assert str(status) in _declared(document, method, templated.get(path, path)), (method, path, status)
        if status >= 400:
            assert isinstance(r.json()["detail"], str) and r.json()["detail"], r.text
    job = client.get("/jobs").json()[0]
    client.post(f"/jobs/{job['id']}/cancel")
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 409 and "409" in _declared(document, "POST", "/jobs/{job_id}/cancel")


def test_405_answers_name_every_method_the_path_serves(client):
    """Starlette's 405 listed only the first matching route's methods: `Allow: GET` on /learn, which
    also takes POST. Every path of the document, asked with a method it lacks, names them all."""
    document = client.get("/openapi.json").json()
    for path, operations in document["paths"].items():
        url = path.replace("{job_id}", "0123456789abcdef").replace("{name}", "target")
        for method in ("PUT", "DELETE", "OPTIONS"):
            r = client.request(method, url)
            assert r.status_code == 405, (method, path, r.status_code)
            allowed = {m.strip().lower() for m in r.headers["allow"].split(",")}
            assert allowed == set(operations), (method, path, r.headers["allow"])
    assert client.request("PATCH", "/learn").headers["allow"] == "GET, POST"
