"""The REST API end to end with the real app on the tiny bundle: learn -> poll -> artefacts,
cancel, reuse, a video prompt, and a restart that keeps finished jobs and resumes a running one."""

import json
import time

import pytest
from fastapi.testclient import TestClient

from app.main import create_app
from genrl_core.evaluate import REFERENCE_RETURNS

FINISHED = ("succeeded", "failed", "cancelled", "interrupted")
MAGIC = {"target": b"ftyp", "imagined": b"ftyp", "real": b"ftyp"}


def make_app(bundle, root, **kw):
    kw = {"default_updates": 5, "eval_episodes": 0, **kw}
    return create_app(bundle, db=root / "jobs.sqlite", runs=root / "runs", **kw)


def wait_ready(client, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        health = client.get("/health").json()
        if health["status"] != "loading":
            assert health["status"] == "ok", health
            return health
        time.sleep(0.2)
    raise AssertionError("bundle did not load")


def poll(client, job_id, until=FINISHED, timeout=180, check=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/jobs/{job_id}").json()
        if job["state"] in until and (check is None or check(job)):
            return job
        assert job["state"] not in FINISHED or job["state"] in until, job
        time.sleep(0.2)
    raise AssertionError(f"job {job_id} did not reach {until}: {client.get(f'/jobs/{job_id}').json()}")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("app")


def test_health_bodies_docs_and_target(tiny_bundle, root):
    with TestClient(make_app(tiny_bundle, root)) as client:
        health = wait_ready(client)
        assert health["bodies"][0]["body"] == "walker" and "walker_stand" in health["bodies"][0]["tasks"]
        body = client.get("/bodies").json()[0]
        assert body["state"] == "ready" and body["generalist"] is False  # the tiny bundle has none
        assert body["examples"][:3] == ["stand up straight", "walk forward", "run fast"]
        assert body["stock_policies"] == []  # it ships none (a server's own policies are not stock ones)
        r = client.get("/target", params={"prompt": "stand up straight", "steps": 16})
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4" and r.content[4:8] == b"ftyp"
        again = client.get("/target", params={"prompt": "stand up straight", "steps": 16})
        assert again.content == r.content
        assert client.get("/health").json()["target_cache"]["hits"] == 1
        paths = client.get("/openapi.json").json()["paths"]
        for path in ["/learn", "/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/target", "/bodies", "/health"]:
            assert path in paths
        assert client.get("/docs").status_code == 200
        page = client.get("/")
        assert page.status_code == 200 and "<html" in page.text.lower()


def test_learn_poll_artefacts_cancel_reuse_video_and_restart(tiny_bundle, root):
    with TestClient(make_app(tiny_bundle, root)) as client:
        wait_ready(client)
        r = client.get("/learn", params={"prompt": "stand up straight", "steps": 16, "eval_episodes": 1})
        assert r.status_code == 202  # accepted: the answer describes a job that has not finished
        first = r.json()
        assert r.headers["location"] == f"/jobs/{first['id']}" and first["state"] in ("queued", "running")
        assert first["progress"] < 1.0 and not first["result"]
        r = client.post("/learn", json={"prompt": "run fast", "updates": 5000, "reward": "cosine"})
        assert r.status_code == 202
        long_job = r.json()
        assert long_job["state"] == "queued" and long_job["queue_position"] >= 1  # max_jobs=1: it waits

        done = poll(client, first["id"])
        assert done["state"] == "succeeded", done["error"]
        assert done["progress"] == 1.0 and done["metrics"]["update"] == 5 and isinstance(done["t_a"], int)
        ev = done["result"]["evaluation"]
        assert ev["task"] == "walker_stand" and len(ev["returns"]) == 1 and ev["env_steps"] == 1000
        low, high, _ = REFERENCE_RETURNS["walker_stand"]
        assert (ev["random_return"], ev["expert_return"]) == (low, high) and isinstance(ev["normalised"], float)
        assert ev["normalised"] == pytest.approx((ev["mean_return"] - low) / (high - low), abs=1e-3)
        assert set(done["urls"]["artefacts"]) == {"target", "policy", "imagined", "alignment", "real"}
        for name, url in done["urls"]["artefacts"].items():
            got = client.get(url)
            assert got.status_code == 200 and len(got.content) > 100, name
            if name in MAGIC:
                assert got.content[4:8] == b"ftyp" and got.headers["content-type"] == "video/mp4"
        assert client.get(done["urls"]["artefacts"]["alignment"]).content[:8] == b"\x89PNG\r\n\x1a\n"
        assert client.get(done["urls"]["artefacts"]["policy"]).content[:2] == b"PK"  # a torch zip
        target_mp4 = client.get(done["urls"]["artefacts"]["target"]).content

        running = poll(client, long_job["id"], until=("running",), check=lambda j: j["metrics"])
        assert running["metrics"]["updates"] == 5000 and running["reward_history"]
        r = client.post(f"/jobs/{long_job['id']}/cancel")
        assert r.status_code == 200
        assert poll(client, long_job["id"], timeout=30)["state"] == "cancelled"

        again = client.get("/learn", params={"prompt": "stand up straight", "steps": 16, "eval_episodes": 1}).json()
        reused = poll(client, again["id"])
        assert reused["state"] == "succeeded" and reused["reused"] and reused["policy"] == done["policy"]
        assert reused["result"] == done["result"]
        # nothing was learned or evaluated again: the finished job's results were copied
        assert not any("learning" in line or "evaluating" in line for line in reused["log"]), reused["log"]
        assert any(f"results of job {first['id']}" in line for line in reused["log"]), reused["log"]

        files = {"video": ("clip.mp4", target_mp4, "video/mp4")}
        r = client.post("/target", files=files, data={"steps": "8"})
        assert r.status_code == 200 and r.content[4:8] == b"ftyp"
        r = client.post("/learn", files=files, data={"options": json.dumps({"updates": 3, "steps": 8})})
        assert r.status_code == 202, r.text
        video_job = poll(client, r.json()["id"])
        assert video_job["state"] == "succeeded" and video_job["prompt_kind"] == "video", video_job["error"]
        policies = client.get("/policies").json()
        assert {done["policy"], video_job["policy"]} <= {p["slug"] for p in policies}

        resumable = client.post("/learn", json={"prompt": "lie down", "updates": 5000}).json()
        resumable = poll(client, resumable["id"], until=("running",), check=lambda j: j["metrics"])
    # leaving the block shut the app down mid-learning: the job checkpointed and waits to resume
    run_dir = root / "runs" / "policies" / "walker" / resumable["policy"]
    checkpoint = json.loads((run_dir / "meta.json").read_text())
    saved, log_every = checkpoint["updates_done"], checkpoint["settings"]["log_every"]
    assert saved >= log_every and not checkpoint["finished"] and (run_dir / "state.pt").is_file()

    with TestClient(make_app(tiny_bundle, root)) as client:  # a restart on the same database
        jobs = {j["id"]: j for j in client.get("/jobs").json()}
        assert jobs[first["id"]]["state"] == "succeeded" and jobs[long_job["id"]]["state"] == "cancelled"
        assert client.get(done["urls"]["artefacts"]["real"]).status_code == 200
        wait_ready(client)
        after = poll(client, resumable["id"], until=("running",), check=lambda j: j["metrics"] and j["attempts"] == 2)
        # resumed from its checkpoint: the first progress of this attempt is the first logged update
        # after the saved one (a restart from zero would report update log_every again)
        assert after["reward_history"][0][0] == (saved // log_every + 1) * log_every, after["reward_history"][:3]
        assert any("resume" in line for line in after["log"])
        client.post(f"/jobs/{resumable['id']}/cancel")
        assert poll(client, resumable["id"], timeout=30)["state"] == "cancelled"
