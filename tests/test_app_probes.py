"""Requests that used to crash the server with a 500 (issue 13, item 2): now a short 4xx."""

import json
import os
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from genrl_core.prompt import Prompt
from genrl_core.video import write_mp4


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    app = create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", ui=False, eval_episodes=0)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_deeply_nested_json_is_a_400_not_a_crash(client):
    deep = "[" * 50_000 + "]" * 50_000
    res = client.post("/learn", content=deep, headers={"Content-Type": "application/json"})
    assert res.status_code == 400 and "nested too deeply" in res.json()["detail"]
    res = client.post("/learn", files={"options": (None, deep)})  # multipart, options only
    assert res.status_code == 400 and "nested too deeply" in res.json()["detail"]


def test_a_bad_upload_is_answered_in_one_line_without_ffmpeg_or_server_paths(client):
    res = client.post("/learn", files={"video": ("a.mp4", b"not a video at all", "video/mp4")})
    detail = res.json()["detail"]
    assert res.status_code == 400 and "does not decode as a video" in detail
    assert "ffmpeg" not in detail.lower() and "/" not in detail and len(detail) < 300, detail


def test_a_lone_surrogate_in_the_prompt_is_a_422_and_stores_no_job(client):
    before = len(client.get("/jobs").json())
    res = client.post("/learn", content=json.dumps({"prompt": "\ud800 stand"}),
                      headers={"Content-Type": "application/json"})
    assert res.status_code == 422 and "lone surrogate" in res.json()["detail"]
    assert len(client.get("/jobs").json()) == before


def test_post_target_reads_use_aligner_as_get_does(client, tmp_path):
    clip = write_mp4(tmp_path / "clip.mp4", np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), np.uint8))
    for value, status in (("banana", 422), ("false", 200), ("yes", 200)):
        res = client.post("/target", data={"use_aligner": value}, files={"video": ("clip.mp4", clip.read_bytes())})
        assert res.status_code == status, (value, res.text[:200])
    assert "use_aligner must be true or false" in client.post(
        "/target", data={"use_aligner": "banana"}, files={"video": ("clip.mp4", clip.read_bytes())}).json()["detail"]
    assert client.get("/target", params={"prompt": "stand", "use_aligner": "banana"}).status_code == 422


def test_api_docs_load_without_a_cdn(client):
    for page in ("/docs", "/redoc"):
        html = client.get(page).text
        assert "cdn." not in html and "https://" not in html.split("<body", 1)[-1].split("</body>")[0].replace(
            "https://fastapi", ""), page
        for asset in [a for a in html.split('"') if a.startswith("/docs-static/")]:
            assert client.get(asset).status_code == 200, asset
    assert client.get("/docs-static/swagger-ui-bundle.js").status_code == 200


def test_uploads_are_kept_within_age_and_size_limits_but_never_a_live_jobs(tiny_bundle, tmp_path):
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", ui=False, preload=False,
                     upload_keep_hours=24, upload_keep_mb=4)
    svc = app.state.services  # no workers started: the queued job below stays queued
    svc.uploads.mkdir(parents=True, exist_ok=True)
    now = time.time()
    files = {}
    for name, age_h, mb in (("old.mp4", 30, 1), ("live.mp4", 40, 1), ("mid.mp4", 2, 3), ("new.mp4", 1, 3)):
        path = svc.uploads / name
        path.write_bytes(b"\0" * (mb << 20))
        os.utime(path, (now - age_h * 3600, now - age_h * 3600))
        files[name] = path
    assert svc.store.create("walker", Prompt.video(files["live.mp4"]), {}, {})["state"] == "queued"
    gone = {p.name for p in svc.prune_uploads()}
    # old.mp4: past 24 h; mid.mp4: the oldest of what is left while 7 MB > 4 MB; live.mp4 is a queued job's
    assert gone == {"old.mp4", "mid.mp4"}
    assert files["live.mp4"].exists() and files["new.mp4"].exists()
