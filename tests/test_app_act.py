"""Zero-shot use in the app (issue 28 item 2): GET /act runs the bundle's generalist on a prompt in
the real env at once, with the token, limits and input checks of /learn and /target; its videos
come back by a server-chosen id only; a bundle without a generalist is told how to train one. The
UI's Instant does the same through its own API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.background import running
from app.main import create_app
from app.ui import build_ui

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
API = "/ui/gradio_api"
# gradio's own use of pandas, not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")


@pytest.fixture(scope="module")
def client(generalist_bundle, tmp_path_factory) -> Iterator[TestClient]:
    """A server on a bundle with a generalist, an API token, no job worker."""
    root = tmp_path_factory.mktemp("app_act")
    app = create_app(generalist_bundle, db=root / "jobs.sqlite", runs=root / "runs", ui=False, token=TOKEN,
                     max_act_episodes=2)
    with TestClient(app) as c:
        c.app.state.services.jobs.stop()
        yield c


def act(client: TestClient, headers: dict[str, str] | None = AUTH, **params: Any) -> httpx.Response:
    return client.get("/act", params=params, headers=headers)


def test_act_returns_the_real_env_result_and_its_videos_by_id(client):
    r = act(client, prompt="stand up straight", task="walker_stand", steps=8)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["task"] == "walker_stand" and out["episodes"] == 1 and len(out["returns"]) == 1
    assert isinstance(out["normalised"], float)  # walker_stand has reference returns: a true score
    assert out["seconds"]["total"] >= out["seconds"]["policy"] > 0 and not out["cached"]
    assert out["policy"].startswith("instant-stand-up-straight-")
    assert "/" not in json.dumps({k: v for k, v in out.items() if k != "urls"})  # no server path in the answer
    for name, url in out["urls"].items():
        assert url == f"/act/{out['id']}/{name}"
        video = client.get(url)
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
        assert video.content[4:8] == b"ftyp"
    again = act(client, prompt="  Stand up straight ", task="walker_stand", steps=8).json()
    assert again["cached"] and again["id"] == out["id"] and again["returns"] == out["returns"]
    # the task nearest to the prompt when none is named; another prompt is another run
    other = act(client, prompt="run fast", steps=8).json()
    assert other["task"] in client.get("/bodies").json()[0]["tasks"] and other["id"] != out["id"]


# (query, status): what /act and /learn both answer to the same bad input
BAD = [
    ({"prompt": ""}, 400),
    ({"prompt": "\u200b \u200b"}, 400),  # only invisible characters: empty
    ({"prompt": "x" * 2001}, 422),
    ({"prompt": "stand\x00up"}, 422),
    ({"prompt": "stand", "steps": 3000}, 422),
    ({"prompt": "stand", "steps": "many"}, 422),
    ({"prompt": "stand", "body": "octopus"}, 404),
    ({"prompt": "stand", "task": "walker_moonwalk"}, 422),
    ({"prompt": "stand", "colour": "red"}, 422),  # an unknown parameter: a typo never passes silently
    ({"steps": 8}, 422),  # no prompt
]


@pytest.mark.parametrize(("query", "status"), BAD)
def test_act_refuses_bad_input_as_learn_does(client, query, status):
    r = act(client, **query)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]
    learn = client.get("/learn", params={"updates": 1, **query}, headers=AUTH)
    assert learn.status_code == status, learn.text


def test_act_asks_for_the_token_and_caps_episodes_as_declared(client):
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = act(client, headers=headers, prompt="stand up")
        assert r.status_code == 401 and "token" in r.json()["detail"], r.text
        assert client.get("/learn", params={"prompt": "stand up"}, headers=headers).status_code == 401
    for episodes in (0, 3):  # this server allows 1-2
        assert act(client, prompt="stand", episodes=episodes).status_code == 422
    document = client.get("/openapi.json").json()
    operation = document["paths"]["/act"]["get"]
    episodes = next(p for p in operation["parameters"] if p["name"] == "episodes")
    assert episodes["schema"]["minimum"] == 1 and episodes["schema"]["maximum"] == 2
    assert {"400", "401", "404", "409", "413", "422", "429", "503"} <= set(operation["responses"])
    videos = document["paths"]["/act/{run_id}/{name}"]["get"]["responses"]
    assert {"200", "404", "422"} <= set(videos)


def test_an_instant_video_is_reached_by_a_server_chosen_id_only(client):
    assert client.get("/act/0123456789abcdef01234567/real").status_code == 404  # no such run
    for url in ("/act/..%2F..%2Fjobs.sqlite/real", "/act/not-an-id/real", "/act/0123456789abcdef01234567/policy"):
        r = client.get(url)
        assert r.status_code in (404, 422) and isinstance(r.json()["detail"], str), (url, r.text)


def test_act_is_refused_with_429_when_the_inference_queue_is_full(generalist_bundle, tmp_path):
    app = create_app(generalist_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", ui=False,
                     inference_queue=0)  # no room to wait: every inference request is refused, as /target's
    with TestClient(app) as c:
        c.app.state.services.bodies.agent(None, wait=60)
        for path in ("/act", "/target"):
            r = c.get(path, params={"prompt": "stand up"})
            assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1, (path, r.text)


def test_a_bundle_without_a_generalist_is_told_how_to_train_one(tiny_bundle, tmp_path):
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", ui=False)
    with TestClient(app) as c:
        c.app.state.services.jobs.stop()
        r = c.get("/act", params={"prompt": "stand up"})
        assert r.status_code == 409 and "genrl train-generalist" in r.json()["detail"], r.text
        # nor can learning start from one: refused before a job is queued
        r = c.post("/learn", json={"prompt": "stand up", "init": "generalist"})
        assert r.status_code == 409 and "genrl train-generalist" in r.json()["detail"], r.text
        assert c.get("/jobs").json() == []


def test_learning_can_start_from_the_generalist(client):
    assert client.get("/bodies").json()[0]["generalist"] is True
    r = client.post("/learn", json={"prompt": "kneel on your knees", "init": "generalist", "updates": 5},
                    headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["settings"]["init"] == "generalist"
    r = client.get("/learn", params={"prompt": "kneel", "init": "the moon"}, headers=AUTH)
    assert r.status_code == 422 and "init" in r.text
    schema = client.get("/openapi.json").json()["paths"]["/learn"]["post"]
    assert "409" in schema["responses"]


def test_the_uis_instant_shows_the_imagined_rollout_and_a_real_env_video(generalist_bundle, tmp_path):
    """Instant through the UI: refused without the token (asked for in the token box, never as a
    header) over the UI's own API; then, called as Gradio calls it (the run's id lives in a State,
    which the API client cannot read), the run's videos and score in the result panels."""
    app = create_app(generalist_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", token=TOKEN,
                     eval_episodes=0)
    data = ["walker", "stand up straight", None, 8, "auto (nearest to the prompt)"]
    with running(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        r = http.post(f"{API}/run/instant", json={"data": [*data, "wrong"]})
        assert r.status_code == 401 and "API token box" in r.json()["error"] and "Bearer" not in r.text, r.text
        fns = {f.name: f.fn for f in build_ui(app.state.services).fns.values()}
        imagined, align, real, score = fns["instant_results"](fns["instant"](*data, TOKEN))
    assert imagined.endswith("imagined.mp4") and real.endswith("real.mp4") and align is None
    assert "Instant" in score and "true return" in score
