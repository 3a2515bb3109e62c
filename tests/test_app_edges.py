"""The REST API's edges (issue 26, findings 6-8): an OpenAPI document that tells the truth about
the server's caps, integers and prompts; prompts normalised at the edge (genrl_core/prompt.py), so a
NUL, a control character, invalid text or a bidi override never becomes a job or a listed policy;
and the small gaps: HEAD /health, Retry-After on every 429, `genrl serve --runs`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi.testclient import TestClient
from helpers_serve import served

from app.background import running
from app.cli import build_parser
from app.errors import AppError
from app.main import create_app
from genrl_core.envs import body_tasks
from genrl_core.prompt import MAX_PROMPT_CHARS, Prompt, PromptEmpty, PromptError

ROOT = Path(__file__).resolve().parents[1]
MAX_UPDATES, MAX_EPISODES = 7, 2  # not the defaults, so the document is seen to read this server's settings

# Prompts no one typed, each with a word its refusal must use. Sent as JSON strings, so "\ud800" is
# a lone surrogate that a JSON "\ud800" escape carries.
BAD_PROMPTS = {
    "\x1e": "control character",  # the probe's: refused as empty before (str.strip() drops U+001E)
    "stand\x00up": "NUL",
    "walk \x07 fast": "control character",
    "run\x7f": "control character",
    "\x85stand": "control character",  # a C1 control, also dropped by str.strip()
    "\ud800 stand": "lone surrogate",
    "stand up \ufffd\ufffd": "not valid UTF-8",
    "kneel \uffff": "noncharacter",
    "kneel \U0010fffe": "noncharacter",
}
# every bidi override and isolate: they show a prompt in another order than it is stored
BAD_PROMPTS.update({f"walk {chr(cp)}forward": "bidirectional" for cp in [*range(0x202A, 0x202F),
                                                                         *range(0x2066, 0x206A)]})
# Text that shows nothing: empty, as whitespace is (400, "empty")
INVISIBLE = ["\u200b", "\u200b\u200c\u200d", " \u2060\ufeff ", "\u200e\u200f", "\ufe0f\u034f", "\u3164", "\u2800 "]
# Ordinary Unicode text, accepted as typed
GOOD = ["stand up straight", "se tenir debout, bien droit (é, ü, ñ)", "站起来", "まっすぐ立つ", "立正 🧍",
        "dance 💃🏽 like 👨‍👩‍👧", "jump ❤️", "walk\tforward\n", "عقب الخطوة"]


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory) -> Iterator[TestClient]:
    """A server whose jobs only queue (no worker runs them), with caps that are not the defaults and
    no room at all in the inference queue (so any /target render that reaches it answers 429)."""
    root = tmp_path_factory.mktemp("app_edges")
    app = create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", ui=False, max_upload_mb=1,
                     max_updates=MAX_UPDATES, max_eval_episodes=MAX_EPISODES, eval_episodes=0, max_queue=10_000,
                     inference_queue=0)
    with TestClient(app) as c:
        c.app.state.services.jobs.stop()
        yield c


def expect(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, (r.status_code, r.text[:300])
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail, r.text
    for w in words:
        assert w in detail, detail
    return detail


def _query(document: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    return next(p["schema"] for p in document["paths"][path]["get"]["parameters"] if p["name"] == name)


def _integer(schema: dict[str, Any]) -> dict[str, Any]:
    """The integer branch of an optional field's schema."""
    return next(s for s in schema.get("anyOf", [schema]) if s.get("type") == "integer")


# -- finding 6: the OpenAPI document tells the truth -----------------------------------------------


def test_the_document_declares_the_servers_caps_and_the_server_keeps_them(client):
    document = client.get("/openapi.json").json()
    learn = document["paths"]["/learn"]
    json_body = learn["post"]["requestBody"]["content"]["application/json"]["schema"]["properties"]
    form = learn["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for name, (low, high) in {"updates": (1, MAX_UPDATES), "eval_episodes": (0, MAX_EPISODES),
                              "steps": (8, 64), "seed": (0, 2**31 - 1)}.items():
        for where, schema in (("GET query", _query(document, "/learn", name)), ("JSON", json_body[name]),
                              ("multipart", form[name])):
            bounds = _integer(schema)
            assert (bounds.get("minimum"), bounds.get("maximum")) == (low, high), (name, where, schema)
        # and the server answers by them: the maximum is taken, one more is a 422
        ok = client.get("/learn", params={"prompt": f"stand {name}", name: high})
        assert ok.status_code == 202, (name, ok.text)
        expect(client.get("/learn", params={"prompt": "stand", name: high + 1}), 422, name)
        expect(client.post("/learn", json={"prompt": "stand", name: high + 1}), 422, name)
    assert _integer(_query(document, "/jobs", "limit"))["maximum"] == 500
    expect(client.get("/jobs", params={"limit": 501}), 422, "limit")


def test_the_document_lists_the_served_tasks_and_a_form_field_is_never_null(client):
    """A task the document allows is one the server takes, and one it does not is a 422 (schemathesis
    found unknown tasks schema-valid); multipart fields are text, so none is declared nullable
    (schemathesis sent the text "null" for them, which the server rightly refuses)."""
    document = client.get("/openapi.json").json()
    tasks = [t.name for t in body_tasks("walker")]
    learn = document["paths"]["/learn"]
    json_body = learn["post"]["requestBody"]["content"]["application/json"]["schema"]
    form = learn["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    for where, schema in (("GET /learn", _query(document, "/learn", "task")), ("JSON", json_body["properties"]["task"]),
                          ("GET /act", _query(document, "/act", "task"))):
        assert set(schema["enum"]) - {None} == set(tasks), (where, schema)
    assert form["task"]["enum"] == tasks
    for name, spec in form.items():
        assert "null" not in json.dumps(spec), (name, spec)
    jsonschema.validate({"prompt": "stand", "task": "walker_walk"}, json_body)
    assert client.get("/learn", params={"prompt": "stand task", "task": "walker_walk"}).status_code == 202
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"prompt": "stand", "task": "walker_moonwalk"}, json_body)
    expect(client.get("/learn", params={"prompt": "stand", "task": "walker_moonwalk"}), 422, "walker_stand")


def test_an_integral_float_is_the_integer_the_schema_says_it_is(client):
    """JSON Schema's "integer" takes 8.0 (a number with no fractional part), and so does the server now;
    `"steps": 8.0` was a 422 while the document declared it valid."""
    document = client.get("/openapi.json").json()
    body_schema = document["paths"]["/learn"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    for options in ({"prompt": "stand", "steps": 8.0}, {"prompt": "stand", "updates": 3.0, "eval_episodes": 1.0,
                                                         "seed": 5.0}):
        jsonschema.validate(options, body_schema)  # what the document says is valid ...
        r = client.post("/learn", json=options)  # ... the server takes, as the integers they are
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["options"]["steps"] == int(options.get("steps", 32)) and isinstance(job["options"]["steps"], int)
        if "updates" in options:
            assert job["settings"]["updates"] == 3 and job["settings"]["seed"] == 5
            assert job["options"]["eval_episodes"] == 1
    assert client.get("/learn", params={"prompt": "stand", "steps": "8.0"}).status_code == 202
    # a fraction, a bool and a string stay refused, in the document and by the server
    for bad in (8.5, True, "8"):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({"prompt": "stand", "steps": bad}, body_schema)
        expect(client.post("/learn", json={"prompt": "stand", "steps": bad}), 422, "steps")
    expect(client.get("/learn", params={"prompt": "stand", "steps": "8.5"}), 422, "steps")


def test_a_prompt_over_its_maxlength_is_the_422_the_document_implies(client):
    document = client.get("/openapi.json").json()
    prompt = _query(document, "/learn", "prompt")
    assert prompt["maxLength"] == MAX_PROMPT_CHARS == 2000
    for path in ("/learn", "/target"):
        assert "422" in document["paths"][path]["get"]["responses"]
        expect(client.get(path, params={"prompt": "x" * 2001}), 422, "2001 characters", "2000")
    expect(client.post("/learn", json={"prompt": "x" * 2001}), 422, "2001 characters")
    # 413 is the body and upload limit only, and the document says so
    assert "prompt" not in document["paths"]["/learn"]["get"]["responses"]["413"]["description"]
    # the length as sent, as maxLength counts it: spaces around the text count too
    expect(client.get("/learn", params={"prompt": "x" * 1999 + "  "}), 422, "2001 characters")
    assert client.get("/learn", params={"prompt": "x" * 2000}).status_code == 202


def test_the_prompt_pattern_in_the_document_agrees_with_the_server(client):
    """Every prompt the document's pattern refuses, the server refuses with a 422 that says why; every
    one it allows is taken, but for invisible-only text (a 400 "empty", declared), which no
    ECMAScript pattern can tell from visible text."""
    document = client.get("/openapi.json").json()
    for path in ("/learn", "/target"):
        schema = _query(document, path, "prompt")
        assert schema["minLength"] == 1 and schema["maxLength"] == MAX_PROMPT_CHARS
        pattern = re.compile(schema["pattern"])
        for bad, word in BAD_PROMPTS.items():
            # beyond the pattern: a lone surrogate (no valid JSON text holds one) and the noncharacters past
            # U+FFFF (an ECMAScript pattern without the u flag cannot name them); the server refuses both
            if "surrogate" not in word and max(map(ord, bad)) <= 0xFFFF:
                assert not pattern.search(bad), (path, repr(bad))
        for good in GOOD:
            assert pattern.search(good), (path, good)
    pattern = re.compile(_query(document, "/learn", "prompt")["pattern"])
    assert pattern.search("\x1e") is None  # the probe's "\x1e": not schema-valid, so its 422 is declared


# -- finding 7: prompts normalised at the edge ----------------------------------------------------------


def test_the_prompt_parser_refuses_what_no_one_typed_and_says_what_it_is():
    for bad, word in BAD_PROMPTS.items():
        with pytest.raises(PromptError, match=word) as err:
            Prompt.text(bad)
        assert not isinstance(err.value, PromptEmpty), repr(bad)
        assert "U+" in str(err.value), str(err.value)  # the code point, so the sender can find it
    assert "U+001E, character 1" in str(pytest.raises(PromptError, Prompt.text, "\x1e").value)
    for text in INVISIBLE:
        with pytest.raises(PromptEmpty, match="empty"):
            Prompt.text(text)
    for good in GOOD:
        assert Prompt.text(good).name == good.strip()
    # normalised: NFC (an accent as one code point or as a letter and a combining mark is one prompt),
    # without the invisible format characters around it
    composed, decomposed = Prompt.text("café debout"), Prompt.text("cafe\u0301 debout")
    assert decomposed.name == "café debout" and decomposed.identity == composed.identity
    assert Prompt.text("\ufeff\u200bstand up\u200b ").name == "stand up"
    assert Prompt.text("dance 👨‍👩‍👧").name == "dance 👨‍👩‍👧"  # a ZWJ inside an emoji sequence stays


def test_rest_answers_each_odd_prompt_with_a_4xx_and_lists_no_job_or_policy(client):
    svc = client.app.state.services
    before = {j["id"] for j in svc.store.list(limit=10_000)}
    for bad, word in BAD_PROMPTS.items():
        # JSON as the probe sent it: its escapes carry the lone surrogate and NUL (httpx's json= cannot)
        expect(client.post("/learn", content=json.dumps({"prompt": bad}),
                           headers={"content-type": "application/json"}), 422, word)
        if "surrogate" not in word:  # a URL carries no lone surrogate (httpx cannot encode one)
            expect(client.get("/learn", params={"prompt": bad}), 422, word)
            expect(client.get("/target", params={"prompt": bad}), 422, word)
            expect(client.post("/learn", files={"prompt": (None, bad.encode())}), 422, word)  # a form field
    # invalid UTF-8 in a URL (the probe's "��"): decoded with replacement characters, then refused
    expect(client.get("/learn?prompt=stand%FF%FEup"), 422, "not valid UTF-8")
    expect(client.get("/target?prompt=%C3%28"), 422, "not valid UTF-8")
    for text in INVISIBLE:
        expect(client.get("/learn", params={"prompt": text}), 400, "empty")
        expect(client.post("/learn", json={"prompt": text}), 400, "empty")
    assert {j["id"] for j in svc.store.list(limit=10_000)} == before  # no job was queued
    prompts = [p["prompt"] for p in client.get("/policies").json()]
    assert not any(re.search(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ufffd]", p) for p in prompts)
    # the UI's handlers call these same service methods: the same refusals, as AppErrors (never a 500)
    for bad, word in BAD_PROMPTS.items():
        for call, args in ((svc.learn_request, {"prompt": bad}), (svc.render_target, {"body": None, "prompt": bad})):
            with pytest.raises(AppError, match=word) as err:
                call(**args)
            assert err.value.status == 422


def test_ordinary_unicode_prompts_are_accepted(client):
    for good in GOOD:
        r = client.post("/learn", json={"prompt": good, "steps": 8})
        assert r.status_code == 202, (good, r.text)
        assert r.json()["prompt"] == good.strip()
    r = client.get("/learn", params={"prompt": "cafe\u0301 debout"})  # stored as NFC
    assert r.status_code == 202 and r.json()["prompt"] == "café debout"


# -- finding 8: small gaps ---------------------------------------------------------------------------


def test_head_health_answers_200_and_is_documented(client):
    r = client.head("/health")
    assert r.status_code == 200 and r.content == b""
    assert client.get("/health").status_code == 200
    document = client.get("/openapi.json").json()
    assert {"get", "head"} <= set(document["paths"]["/health"])
    assert client.request("PUT", "/health").headers["allow"] == "GET, HEAD"


def test_every_429_carries_retry_after(client, tiny_bundle, tmp_path):
    # the inference queue: no room in this server's, so a render that reaches it is refused
    r = client.get("/target", params={"prompt": "stand up straight", "steps": 8})
    expect(r, 429, "busy")
    assert int(r.headers["retry-after"]) >= 1
    # the job queue: a server with room for one queued job
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", ui=False, preload=False,
                     max_queue=1)
    with TestClient(app) as c:
        c.app.state.services.jobs.stop()
        assert c.get("/learn", params={"prompt": "stand", "updates": 5}).status_code == 202
        for r in (c.get("/learn", params={"prompt": "walk"}), c.post("/learn", json={"prompt": "walk"})):
            expect(r, 429, "queue is full")
            assert int(r.headers["retry-after"]) >= 1
    # and the document declares the header on every 429 it lists
    document = client.get("/openapi.json").json()
    declared = [(path, method, response) for path, ops in document["paths"].items() for method, op in ops.items()
                for status, response in op["responses"].items() if status == "429"]
    assert declared
    for path, method, response in declared:
        assert response["headers"]["Retry-After"]["required"] is True, (method, path)
    # an AppError 429 raised anywhere carries it: the answer is built from the error
    assert AppError(429, "busy").headers == {"Retry-After": "5"} and AppError(400, "bad").headers is None


def test_the_uis_api_refuses_odd_prompts_as_rest_does_and_its_429_carries_retry_after(tiny_bundle, tmp_path):
    """The UI's events parse prompts through the same edge (its handlers call the service), answered by
    Gradio's /run/ route with the refusal's own status; a full job queue there is a 429 with
    Retry-After too. A real server with the UI, driven over HTTP as the probe did."""
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", max_queue=0,
                     eval_episodes=0)
    api = "/ui/gradio_api/run"

    def learn(prompt: str) -> list[Any]:  # the Learn button's inputs, as test_app_ui_api sends them
        return ["walker", prompt, None, 16, 3, None, 0, "auto (nearest to the prompt)", 0, "scratch", ""]

    with running(app) as url, httpx.Client(base_url=url, timeout=120) as ui:
        for bad, word in [("\x1e", "control character"), ("stand\x00up", "NUL"), ("walk \u202eforward", "bidi"),
                          ("x" * 2001, "2001 characters")]:
            for route, data in (("show_target", ["walker", bad, None, 16, ""]), ("learn", learn(bad))):
                r = ui.post(f"{api}/{route}", json={"data": data})
                assert r.status_code == 422 and word in json.dumps(r.json()), (route, repr(bad), r.text[:300])
        r = ui.post(f"{api}/learn", json={"data": learn("\u200b\u200d")})
        assert r.status_code == 400 and "empty" in r.text, r.text[:300]
        r = ui.post(f"{api}/learn", json={"data": learn("stand up straight")})  # a good prompt: the full queue
        assert r.status_code == 429 and "queue is full" in r.text, r.text[:300]
        assert int(r.headers["retry-after"]) >= 1
    assert app.state.services.store.list() == []


def test_serve_takes_a_runs_folder(tiny_bundle, tmp_path):
    """`genrl serve --runs DIR`: the job database, uploads and artefacts under DIR (before, only the
    GENRL_RUNS env var set it). The real command in a process of its own."""
    runs = tmp_path / "served"
    assert build_parser().parse_args(["serve", "--runs", str(runs)]).runs == str(runs)
    help_text = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--help"], cwd=ROOT,
                               capture_output=True, text=True, timeout=120).stdout
    assert "--runs" in help_text and "GENRL_RUNS" in help_text
    log = tmp_path / "serve.log"
    with served(tiny_bundle, runs, log) as (_, url):
        assert httpx.head(f"{url}/health", timeout=5).status_code == 200  # and HEAD, through uvicorn
        assert (runs / "jobs.sqlite").is_file()
        assert f"jobs in {runs / 'jobs.sqlite'}, artefacts in {runs}" in log.read_text()
