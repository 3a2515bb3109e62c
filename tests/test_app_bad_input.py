"""Bad input never crashes the server or loses a job: each gets a 4xx with a clear message."""

import io

import pytest
from fastapi.testclient import TestClient

from app.main import create_app


@pytest.fixture(scope="module")
def client(tiny_bundle, tmp_path_factory):
    root = tmp_path_factory.mktemp("app_bad")
    app = create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", default_updates=3, eval_episodes=0,
                     max_upload_mb=1, ui=False)
    with TestClient(app) as c:
        yield c


def expect(r, status, *words):
    assert r.status_code == status, (r.status_code, r.text)
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail, r.text
    for w in words:
        assert w in detail, detail
    return detail


def test_prompts_and_ranges(client):
    expect(client.get("/target", params={"prompt": "   "}), 400, "empty")
    expect(client.get("/target"), 422, "prompt")
    expect(client.get("/target", params={"prompt": "x" * 3000}), 413, "3000 characters")
    expect(client.get("/target", params={"prompt": "stand", "steps": 65}), 422, "steps", "64")
    expect(client.get("/target", params={"prompt": "stand", "steps": "many"}), 422, "steps")
    expect(client.get("/target", params={"prompt": "stand", "body": "octopus"}), 404, "octopus", "walker")
    expect(client.get("/learn", params={"prompt": ""}), 400, "empty")
    expect(client.get("/learn", params={"prompt": "stand", "steps": 4}), 422, "steps")
    expect(client.get("/learn", params={"prompt": "stand", "body": "octopus"}), 404, "valid: walker")
    expect(client.get("/learn", params={"prompt": "stand", "reward": "vibes"}), 422, "reward")
    expect(client.get("/learn", params={"prompt": "stand", "updates": 0}), 422, "updates")
    expect(client.get("/learn", params={"prompt": "stand", "updates": 10**9}), 422, "updates")
    expect(client.get("/learn", params={"prompt": "stand", "task": "walker_fly"}), 422, "walker_stand")
    expect(client.get("/learn", params={"prompt": "stand", "eval_episodes": 99}), 422, "eval_episodes")
    expect(client.post("/learn", json={"prompt": "stand", "colour": "red"}), 422, "colour")
    expect(client.post("/learn", json=["stand"]), 422, "JSON object")
    expect(client.post("/learn", content=b"{not json", headers={"content-type": "application/json"}), 400, "JSON")
    expect(client.post("/learn", content=b"prompt=stand", headers={"content-type": "text/plain"}), 415)


def test_uploads(client):
    expect(client.post("/learn", files={"video": ("notes.txt", b"hello", "text/plain")}), 415, ".mp4")
    expect(client.post("/learn", files={"video": ("fake.mp4", b"not a video at all" * 50, "video/mp4")}),
           400, "fake.mp4", "not a usable video")
    expect(client.post("/learn", files={"video": ("empty.mp4", b"", "video/mp4")}), 400, "empty")
    expect(client.post("/target", files={"video": ("fake.gif", b"GIF89a garbage", "image/gif")}), 400, "fake.gif")
    big = io.BytesIO(b"\0" * (2 * 1024 * 1024))
    expect(client.post("/learn", files={"video": ("big.mp4", big, "video/mp4")}), 413, "limit")
    expect(client.post("/learn", files={"clip": ("a.mp4", b"x", "video/mp4")}), 422, "video")
    expect(client.post("/target", data={"steps": "8"}), 400, "video")


def test_jobs_and_artefact_paths(client):
    expect(client.get("/jobs/0123456789abcdef"), 404, "no job")
    expect(client.get("/jobs/not-a-job"), 422, "job_id")
    expect(client.post("/jobs/0123456789abcdef/cancel"), 404, "no job")
    expect(client.get("/jobs", params={"state": "sleeping"}), 422, "state")
    job = client.get("/learn", params={"prompt": "stand up", "steps": 8}).json()
    expect(client.get(f"/jobs/{job['id']}/artefacts/secrets"), 404, "unknown artefact", "target")
    for trick in ["..%2F..%2Fjobs.sqlite", "..%2Fjobs.sqlite", "%2Fetc%2Fpasswd", "target.mp4", "TARGET"]:
        r = client.get(f"/jobs/{job['id']}/artefacts/{trick}")
        assert r.status_code in (404, 422), (trick, r.status_code)
        assert "detail" in r.json()
    for trick in [f"/jobs/{job['id']}/../../jobs.sqlite", "/jobs/..%2F..%2Fjobs.sqlite/artefacts/target",
                  f"/jobs/{job['id']}/artefacts/../../../etc/passwd"]:
        r = client.get(trick)
        assert r.status_code in (404, 422) and b"root:" not in r.content and b"SQLite" not in r.content, trick
    # the job itself was not harmed by any of this and finishes; a second cancel is refused
    import time

    deadline = time.monotonic() + 120
    while client.get(f"/jobs/{job['id']}").json()["state"] not in ("succeeded", "failed") and \
            time.monotonic() < deadline:
        time.sleep(0.3)
    assert client.get(f"/jobs/{job['id']}").json()["state"] == "succeeded"
    expect(client.post(f"/jobs/{job['id']}/cancel"), 409, "already")
    assert client.get("/health").json()["status"] == "ok"


def test_token_guards_work_endpoints(tiny_bundle, tmp_path):
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", token="s3cret", ui=False,
                     preload=False)
    with TestClient(app) as c:
        expect(c.get("/learn", params={"prompt": "stand"}), 401, "token")
        expect(c.get("/learn", params={"prompt": "stand"}, headers={"Authorization": "Bearer wrong"}), 401)
        expect(c.post("/jobs/0123456789abcdef/cancel"), 401, "token")
        r = c.get("/learn", params={"prompt": "stand", "updates": 2}, headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 202
        r = c.post(f"/jobs/{r.json()['id']}/cancel", headers={"X-API-Token": "s3cret"})
        assert r.status_code in (200, 409)
        assert c.get("/health").status_code == 200 and c.get("/jobs").status_code == 200  # reads stay open


def test_chunked_oversized_body_and_bad_options(client):
    def chunks():
        for _ in range(3):
            yield b"\0" * (512 * 1024)  # 1.5 MB in all, with no Content-Length

    r = client.post("/learn", content=chunks(), headers={"content-type": "multipart/form-data; boundary=xyz"})
    expect(r, 413, "limit")
    expect(client.post("/learn", files={"options": (None, "{oops")}), 400, "options", "JSON")
    expect(client.post("/learn", files={"options": (None, '["stand"]')}), 422, "JSON object")
    expect(client.post("/learn", files={"options": (None, '{"prompt": "stand", "steps": 99}')}), 422, "steps")
