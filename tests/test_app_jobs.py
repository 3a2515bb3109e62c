"""Job queue, worker pool and SQLite store with a scripted stand-in agent: fast and deterministic
checks of queueing, the concurrency limit, cancel, reuse and restart recovery. The real agent is
exercised end to end in test_app_api.py."""

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.bodies import Bodies
from app.errors import AppError
from app.jobs import JobManager
from app.store import JobStore


class FakeAgent:
    """The GenRL contract, scripted: learn runs `updates` steps of `delay` s, honouring cancel."""

    def __init__(self, root: Path, delay: float = 0.02):
        self.root, self.delay = root, delay
        self.running = 0
        self.peak = 0
        self.lock = threading.Lock()
        self.learned: list[str] = []

    def target(self, prompt, steps=32, use_aligner=True):
        return np.zeros(steps)

    def decode(self, latents):
        return np.zeros((len(latents), 8, 8, 3), np.uint8)

    def tasks(self):
        return ["walker_stand", "walker_run"]

    def guess_task(self, prompt):
        return "walker_stand"

    def policy_slug(self, prompt, settings=None):
        return f"{str(prompt).replace(' ', '-')}-{(settings or {}).get('updates', 0)}"

    def policies(self):
        return [{"slug": s, "prompt": s, "settings": {}, "finished": True, "path": str(self.root / s)}
                for s in self.learned]

    def learn(self, prompt, settings=None, callback=None, cancel=None):
        slug = self.policy_slug(prompt, settings)
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
        try:
            updates = (settings or {}).get("updates", 3)
            for u in range(1, updates + 1):
                if cancel is not None and cancel.is_set():
                    raise RuntimeError("LearningCancelled")
                time.sleep(self.delay)
                if callback:
                    callback({"update": u, "updates": updates, "reward": 0.1 * u, "actor_loss": 0.0,
                              "critic_loss": 0.0, "t_a_hist": [0, 2, 1], "elapsed": 0.0, "updates_per_s": 1.0})
        finally:
            with self.lock:
                self.running -= 1
        (self.root / slug).mkdir(parents=True, exist_ok=True)
        (self.root / slug / "policy.pt").write_bytes(b"weights")
        self.learned.append(slug)
        return {"slug": slug, "path": str(self.root / slug), "updates": updates, "train_seconds": 0.1}

    def imagine(self, slug, steps=64, seed=0):
        return np.zeros((steps, 8, 8, 3), np.uint8)

    def alignment(self, prompt, slug):
        return {"offsets": [0, 1, 2], "similarity": [0.1, 0.5, 0.2], "t_a": 1}

    def evaluate(self, slug, task=None, episodes=1, video=None, seed=0):
        from app.media import write_video

        write_video(Path(video), np.zeros((4, 8, 8, 3), np.uint8))
        return {"task": task, "returns": [1.0] * episodes, "mean_return": 1.0, "normalised": 0.5,
                "random_return": 0.0, "expert_return": 2.0, "video": str(video)}


def make(tmp_path, agent=None, workers=1, max_queue=32, resume=True):
    bodies = Bodies([tmp_path / "walker"], "cpu", tmp_path / "policies")
    body = bodies.body("walker")
    body.agent = agent or FakeAgent(tmp_path / "pol")
    body.loaded.set()
    store = JobStore(tmp_path / "jobs.sqlite")
    manager = JobManager(store, bodies, tmp_path / "runs", max_workers=workers, max_queue=max_queue, resume=resume)
    return manager, store, body.agent


def wait(store, job_id, states=("succeeded", "failed", "cancelled", "interrupted"), timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job["state"] in states:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} stuck in {store.get(job_id)['state']}")


OPTS = {"steps": 8, "task": None, "eval_episodes": 1}


def test_job_runs_all_stages_and_records_artefacts(tmp_path):
    manager, store, _ = make(tmp_path)
    manager.start()
    try:
        job = manager.submit("walker", "stand", None, {"updates": 3}, OPTS)
        done = wait(store, job["id"])
        assert done["state"] == "succeeded", done["error"]
        assert set(done["artefacts"]) == {"target", "policy", "imagined", "alignment", "real"}
        assert done["t_a"] == 1 and done["progress"] == 1.0
        assert [h[0] for h in done["history"]] == [1, 2, 3]
        assert done["result"]["evaluation"]["normalised"] == 0.5
        for name in done["artefacts"]:
            path, _ = manager.artefact_path(done["id"], name)
            assert path.is_file() and path.parent == tmp_path / "runs" / "jobs" / done["id"]
    finally:
        manager.stop()


def test_concurrency_limit_queue_positions_and_full_queue(tmp_path):
    agent = FakeAgent(tmp_path / "pol", delay=0.05)
    manager, store, _ = make(tmp_path, agent, workers=2, max_queue=4)
    jobs = [manager.submit("walker", f"p{i}", None, {"updates": 4}, OPTS) for i in range(4)]
    assert [j["queue_position"] for j in jobs] == [1, 2, 3, 4]
    with pytest.raises(AppError) as err:
        manager.submit("walker", "one too many", None, {"updates": 4}, OPTS)
    assert err.value.status == 429
    manager.start()
    try:
        for j in jobs:
            assert wait(store, j["id"])["state"] == "succeeded"
        assert agent.peak == 2  # never more than max_workers learning at once
    finally:
        manager.stop()


def test_cancel_queued_and_running(tmp_path):
    agent = FakeAgent(tmp_path / "pol", delay=0.05)
    manager, store, _ = make(tmp_path, agent)
    manager.start()
    try:
        running = manager.submit("walker", "long", None, {"updates": 400}, OPTS)
        queued = manager.submit("walker", "later", None, {"updates": 3}, OPTS)
        wait(store, running["id"], ("running",))
        assert manager.cancel(queued["id"])["state"] == "cancelled"
        while not store.get(running["id"])["history"]:
            time.sleep(0.02)
        manager.cancel(running["id"])
        assert wait(store, running["id"])["state"] == "cancelled"
        with pytest.raises(AppError) as err:
            manager.cancel(running["id"])
        assert err.value.status == 409
        with pytest.raises(AppError) as err:
            manager.cancel("0" * 16)
        assert err.value.status == 404
    finally:
        manager.stop()


def test_same_prompt_and_settings_reuse_the_finished_job(tmp_path):
    manager, store, agent = make(tmp_path)
    manager.start()
    try:
        first = wait(store, manager.submit("walker", "stand", None, {"updates": 3}, OPTS)["id"])
        second = wait(store, manager.submit("walker", "stand", None, {"updates": 3}, OPTS)["id"])
        assert second["state"] == "succeeded" and second["reused"]
        assert second["slug"] == first["slug"] and agent.learned == [first["slug"]]
        assert set(second["artefacts"]) == set(first["artefacts"])
        other = wait(store, manager.submit("walker", "stand", None, {"updates": 4}, OPTS)["id"])
        assert not other["reused"] and len(agent.learned) == 2
    finally:
        manager.stop()


def test_restart_keeps_finished_jobs_and_resumes_or_interrupts_running_ones(tmp_path):
    manager, store, _ = make(tmp_path)
    manager.start()
    done = wait(store, manager.submit("walker", "stand", None, {"updates": 2}, OPTS)["id"])
    manager.stop()
    # a crash: a job left 'running' in the database with no process behind it
    crashed = store.create("walker", "crashed", None, {"updates": 2}, OPTS)
    store.update(crashed["id"], state="running", attempts=1)
    store.close()

    manager, store, _ = make(tmp_path)  # same database and run folder: a restart
    assert store.get(done["id"])["state"] == "succeeded"
    manager.start()
    try:
        resumed = wait(store, crashed["id"])
        assert resumed["state"] == "succeeded" and resumed["attempts"] == 2
        assert any("restart" in line for line in resumed["log"])
        assert manager.artefact_path(done["id"], "real")[0].is_file()
    finally:
        manager.stop()
        store.close()

    manager, store, _ = make(tmp_path, resume=False)
    again = store.create("walker", "crashed again", None, {}, OPTS)
    store.update(again["id"], state="running", attempts=1)
    manager.start()
    try:
        job = store.get(again["id"])
        assert job["state"] == "interrupted" and "stopped" in job["error"]
    finally:
        manager.stop()


def test_shutdown_requeues_the_running_job(tmp_path):
    manager, store, _ = make(tmp_path, FakeAgent(tmp_path / "pol", delay=0.05))
    manager.start()
    job = manager.submit("walker", "long", None, {"updates": 400}, OPTS)
    wait(store, job["id"], ("running",))
    manager.stop()
    job = store.get(job["id"])
    assert job["state"] == "queued" and "resume" in job["stage"]


def test_unknown_artefact_names_never_reach_the_disk(tmp_path):
    manager, store, _ = make(tmp_path)
    job = store.create("walker", "x", None, {}, OPTS)
    for name in ["../jobs.sqlite", "target/../../x", "policy.pt", ""]:
        with pytest.raises(AppError) as err:
            manager.artefact_path(job["id"], name)
        assert err.value.status == 404
