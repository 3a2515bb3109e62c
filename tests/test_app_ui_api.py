"""The UI's own API (Gradio's /ui/gradio_api/...) follows the REST rules (issue 26, findings 1-5),
driven over HTTP as the probe did: a real server on the tiny bundle, with an API token."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
import pytest
from helpers_video import ffmpeg_clip

from app.background import running
from app.main import create_app
from genrl_core.video import write_mp4

TOKEN = "s3cret"
API = "/ui/gradio_api"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# gradio's own use of pandas, not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")


@pytest.fixture(scope="module")
def server(tiny_bundle, tmp_path_factory) -> Iterator[tuple[httpx.Client, Any, Path]]:
    root = tmp_path_factory.mktemp("ui_api")
    app = create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", token=TOKEN, default_updates=3,
                     eval_episodes=0)
    with running(app) as url, httpx.Client(base_url=url, timeout=120) as client:
        yield client, app.state.services, root / "runs"


def fd(path: str | Path) -> dict[str, Any]:
    """A file input as Gradio's API takes it."""
    return {"path": str(path), "meta": {"_type": "gradio.FileData"}}


def clip(folder: Path, name: str = "clip.mp4") -> Path:
    frames = np.random.default_rng(0).integers(0, 255, (16, 64, 64, 3), np.uint8)
    return write_mp4(folder / name, frames)


def upload(client: httpx.Client, path: Path, headers: dict[str, str] | None = None) -> httpx.Response:
    return client.post(f"{API}/upload", files={"files": (path.name, path.read_bytes(), "video/mp4")},
                       headers=headers or {})


def target(body: str = "walker", prompt: str = "", video: Any = None, steps: Any = 16,
           token: str = TOKEN) -> list[Any]:
    return [body, prompt, video, steps, token]


def learn(prompt: str = "stand up", video: Any = None, updates: Any = 3, token: str = TOKEN) -> list[Any]:
    return ["walker", prompt, video, 16, updates, None, 0, "auto (nearest to the prompt)", 0, "scratch", token]


def queued(client: httpx.Client, name: str, data: list[Any]) -> tuple[str, Any]:
    """An event through Gradio's queue (/call/NAME, then its event stream): (event kind, its data)."""
    r = client.post(f"{API}/call/{name}", json={"data": data})
    assert r.status_code == 200, r.text
    stream = client.get(f"{API}/call/{name}/{r.json()['event_id']}").text
    events = [block for block in stream.split("\n\n") if block.startswith("event: ")]
    kind, _, payload = events[-1].partition("\n")
    return kind.removeprefix("event: "), json.loads(payload.removeprefix("data: "))


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def test_with_a_token_the_uis_uploads_and_work_events_refuse_anonymous_calls(server, tmp_path):
    """Finding 2: an anonymous /upload then show_target decoded the video into runs/uploads."""
    client, svc, runs = server
    video = clip(tmp_path)
    r = upload(client, video)
    assert r.status_code == 401 and "API token" in r.json()["detail"], r.text
    assert files_under(runs / "ui-files") == [] and files_under(runs / "uploads") == []
    # a file a token holder uploaded is no use to anyone else: every event that works asks for the token
    path = upload(client, video, AUTH).json()[0]
    targets_before = files_under(runs / "cache" / "targets")
    for token in ("", "wrong"):
        r = client.post(f"{API}/run/show_target", json={"data": target(video=fd(path), token=token)})
        assert r.status_code == 401 and "API token box" in r.json()["error"], r.text
        assert "Bearer" not in r.json()["error"]  # the page's user is asked for the token, not for a header
        r = client.post(f"{API}/run/show_target", json={"data": target(prompt="stand up", token=token)})
        assert r.status_code == 401, r.text
        r = client.post(f"{API}/run/learn", json={"data": learn(video=fd(path), prompt="", token=token)})
        assert r.status_code == 401, r.text
        r = client.post(f"{API}/run/replay", json={"data": ["walker", None, token]})
        assert r.status_code == 401, r.text
        kind, out = queued(client, "show_target", target(video=fd(path), token=token))
        assert kind == "error" and "API token" in out["error"], out
    assert files_under(runs / "uploads") == [] and svc.store.list() == []  # no work done
    assert files_under(runs / "cache" / "targets") == targets_before
    # with the token the same calls work, and what they show is served to the token's holder only
    kind, out = queued(client, "show_target", target(video=fd(path)))
    assert kind == "complete", out
    shown = out[0]["path"]
    assert len(files_under(runs / "uploads")) == 1
    assert client.get(f"{API}/file={quote(shown)}").status_code == 401
    assert client.get(f"{API}/file={quote(shown)}", headers=AUTH).status_code == 200
    page = httpx.Client(base_url=str(client.base_url), cookies={"genrl_token": TOKEN})  # as the page's cookie
    assert page.get(f"{API}/file={quote(shown)}").status_code == 200


def test_a_video_over_the_limits_is_refused_by_the_ui_as_by_rest(server, tmp_path):
    """Finding 1 at the UI's door: the same limits as REST's POST /target, and nothing kept."""
    client, _, runs = server
    uhd = ffmpeg_clip(tmp_path / "uhd.mp4", "3840x2160", 20, 0.5)
    path = upload(client, uhd, AUTH).json()[0]
    r = client.post(f"{API}/run/show_target", json={"data": target(video=fd(path))})
    assert r.status_code == 400 and "3840x2160; the limit is 1920x1080" in r.json()["error"], r.text
    rest = client.post("/target", files={"video": ("uhd.mp4", uhd.read_bytes())}, headers=AUTH)
    assert rest.status_code == 400 and "3840x2160; the limit is 1920x1080" in rest.json()["detail"], rest.text
    assert not [p for p in files_under(runs / "uploads") if p.stat().st_size == uhd.stat().st_size]


def test_show_target_opens_no_server_path_and_says_the_same_whether_it_exists(server, tmp_path):
    """Finding 3: a FileData naming any server path was copied into runs/uploads, and the error told
    whether the file existed."""
    client, _, runs = server
    existing = clip(tmp_path, "server_secret.mp4")  # a real video: before, it was decoded and kept
    notes = tmp_path / "notes.txt"
    notes.write_text("a private server file")
    paths = [existing, tmp_path / "missing.mp4", notes, "/etc/nonexist.mp4", "http://127.0.0.1:9/x.mp4"]
    before = files_under(runs)
    answers = set()
    for path in paths:
        r = client.post(f"{API}/run/show_target", json={"data": target(video=fd(path))})
        assert r.status_code == 400, (path, r.text)
        answers.add(r.json()["error"])
        kind, out = queued(client, "show_target", target(video=fd(path)))
        assert kind == "error", (path, out)
        answers.add(out["error"])
    assert len(answers) == 1, answers  # one message for all: nothing learned about the server's files
    assert "uploaded" in answers.pop()
    assert files_under(runs) == before  # nothing copied, nothing decoded
    assert not any(p.name in ("server_secret.mp4", "notes.txt") for p in files_under(runs))


def test_gradio_files_live_under_runs_and_a_file_planted_in_tmp_gradio_is_not_served(server, tmp_path):
    """Finding 4: /tmp/gradio was the UI's upload folder, shared with every process, served."""
    client, _, runs = server
    path = Path(upload(client, clip(tmp_path), AUTH).json()[0])
    assert path.is_relative_to((runs / "ui-files").resolve()), path
    planted = Path(tempfile.gettempdir()) / "gradio" / uuid.uuid4().hex / "planted.mp4"
    planted.parent.mkdir(parents=True)
    try:
        planted.write_bytes(b"another process's file")
        for headers in ({}, AUTH):
            r = client.get(f"{API}/file={quote(str(planted))}", headers=headers)
            assert r.status_code in (401, 403, 404) and b"another process" not in r.content, r.status_code
    finally:
        planted.unlink()
        planted.parent.rmdir()
    assert client.get(f"{API}/file={quote(str(path))}").status_code == 401  # an upload, without the token
    assert client.get(f"{API}/file={quote(str(path))}", headers=AUTH).status_code == 200


def test_the_uis_temporary_files_are_held_to_the_upload_retention(tiny_bundle, tmp_path):
    """Finding 4: uploads to the UI and the videos it shows stayed forever; now the upload retention's
    limits cover them."""
    from fastapi.testclient import TestClient

    runs = tmp_path / "runs"
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=runs, preload=False, upload_keep_mb=1)
    first, second = tmp_path / "first.mp4", tmp_path / "second.mp4"
    first.write_bytes(b"\1" * 600_000)
    second.write_bytes(b"\2" * 600_000)
    with TestClient(app) as client:
        kept = upload(client, first).json()[0]
        assert Path(kept).exists()
        newer = upload(client, second).json()[0]  # 1.2 MB in all, over the 1 MB kept: the oldest goes
        assert not Path(kept).exists() and Path(newer).exists()
        assert [p.name for p in files_under(runs / "ui-files")] == ["second.mp4"]
        third = tmp_path / "third.mp4"
        third.write_bytes(b"\3" * 440_000)  # 1,040,000 bytes with the second: under the 1 MB kept
        upload(client, third)
        assert sorted(p.name for p in files_under(runs / "ui-files")) == ["second.mp4", "third.mp4"]
        # a shown video is a file Gradio keeps too: the one that takes the folder over the limit
        # makes room at once, as an upload does (before, only the next upload did)
        r = client.post(f"{API}/run/show_target", json={"data": target(prompt="stand up", steps=64)})
        shown = Path(r.json()["data"][0]["path"])
        assert r.status_code == 200 and shown.stat().st_size > 1_048_576 - 1_040_000, r.text[:300]
        assert sorted(p.name for p in files_under(runs / "ui-files")) == sorted(["third.mp4", shown.name])
    assert files_under(runs / "ui-files") == []  # and Gradio's own deletion of its files, at the latest on shutdown


MALFORMED = [
    ("run/show_target", {"data": target(prompt="")}, 400),  # an empty prompt
    ("run/show_target", {"data": target(prompt="   ", steps="many")}, 422),
    ("run/show_target", {"data": target(prompt=5)}, 422),
    ("run/show_target", {"data": target(body="octopus", prompt="stand")}, 422),
    ("run/show_target", {"data": target(prompt="stand", steps=3000)}, 422),
    ("run/show_target", {"data": target(prompt="stand", video="/etc/passwd")}, 422),
    ("run/show_target", {"data": ["walker"]}, 422),  # too few inputs
    ("run/show_target", {"data": "stand"}, 422),
    ("run/show_target", {}, 422),
    ("run/show_target", b"{not json", 422),
    ("run/no_such_endpoint", {"data": []}, 404),
    ("call/no_such_endpoint", {"data": []}, 404),
    ("call/v2/no_such_endpoint", {}, 404),
    ("call/v2/show_target", {"bogus": 1}, 422),
    ("call/v2/show_target", {"prompt": "stand"}, 422),  # missing arguments
    ("queue/join", {"data": [], "fn_index": 999, "session_hash": "abc"}, 404),
    ("queue/join", {"data": [], "fn_index": "x", "session_hash": "abc"}, 404),
    ("queue/join", {"data": [], "session_hash": "abc"}, 404),
    ("run/learn", {"data": learn(updates="many")}, 422),
    ("run/learn", {"data": learn(updates=10**9)}, 422),
    ("run/learn", {"data": learn(prompt="")}, 400),
    ("run/replay", {"data": ["walker", "no-such-policy", TOKEN]}, 422),
    ("run/replay", {"data": ["walker", None, TOKEN]}, 400),
    ("run/cancel", {"data": [None, TOKEN]}, 400),
    ("process_recording", {"data": []}, 404),
]


def test_malformed_calls_to_the_uis_api_get_a_short_4xx_and_no_traceback(server, capfd):
    """Finding 5: 24 of 37 malformed calls answered 500, with a stack trace in the log."""
    client, svc, _ = server
    capfd.readouterr()
    for route, body, status in MALFORMED:
        if isinstance(body, bytes):
            r = client.post(f"{API}/{route}", content=body, headers={"Content-Type": "application/json"})
        else:
            r = client.post(f"{API}/{route}", json=body)
        assert r.status_code == status, (route, body, r.status_code, r.text[:300])
        answer = r.json()
        message = answer.get("error") or answer.get("detail")
        assert message and len(json.dumps(message)) < 400, (route, answer)
    # through the queue, the same refusals arrive as the event's error, one line each
    for data in (target(prompt=""), target(prompt="stand", steps="many"), target(body="octopus", prompt="x")):
        kind, out = queued(client, "show_target", data)
        assert kind == "error" and 0 < len(out["error"]) < 300, out
    upload_field = client.post(f"{API}/upload", files={"files": (None, "not a file")}, headers=AUTH)
    assert upload_field.status_code == 422, upload_field.text
    url_file = client.get(f"{API}/file=http://127.0.0.1:9/x.mp4", headers=AUTH)
    assert 400 <= url_file.status_code < 500
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err, (log.out + log.err)[-3000:]
    assert svc.store.list() == []  # and none of it started a job
