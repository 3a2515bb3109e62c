"""Job queue, worker pool and SQLite store with the real GenRL agent on the tiny bundle: every
stage and artefact, the concurrency limit, queue positions, cancel, reuse, restart recovery and
shutdown. Learning uses the "tiny" behaviour preset and a few updates; a job with a huge
`updates` count stays reliably "running" until it is cancelled or the manager stops. One job
runs to the end once per module (`finished`); tests that need a server with a finished job
behind it restart on a private copy of that state."""

import json
import shutil
import time

import pytest
from helpers_jobs import learning, wait

from app.bodies import Bodies
from app.errors import AppError
from app.job_recipe import ARTEFACTS, find_artefact
from app.job_store import JobStore
from app.jobs import JobManager
from genrl_core.evaluate import REFERENCE_RETURNS
from genrl_core.prompt import Prompt

OPTS = {"steps": 8, "task": None, "eval_episodes": 0}  # no real-env episode where evaluation is not tested
EVAL_OPTS = {**OPTS, "eval_episodes": 1}
FEW = {"updates": 3}
FOREVER = {"updates": 100_000}  # never finishes within a test: cancelled or stopped
STAGES = ["decoding the target", "learning", "imagining a rollout", "aligning prompt and rollout", "evaluating"]


def make(root, bundle, workers=1, max_queue=32, resume=True):
    """A manager over the real tiny bundle (loaded now, tiny behaviour preset), its state under root."""
    bodies = Bodies([bundle], "cpu", root / "policies", behaviour_preset="tiny")
    bodies.load_all()
    agent = bodies.agent("walker")  # raises, with the load error, if the bundle did not load
    store = JobStore(root / "jobs.sqlite")
    manager = JobManager(store, bodies, root / "runs", max_workers=workers, max_queue=max_queue, resume=resume)
    return manager, store, agent


def learned_slugs(agent):
    return sorted(p.slug for p in agent.policies.list())


@pytest.fixture(scope="module")
def finished(tiny_bundle, tmp_path_factory):
    """A server's state (database, job folders, policies) after one job ran every stage, with a
    real-env episode; its manager stopped and store closed. Returns (root, job)."""
    root = tmp_path_factory.mktemp("finished")
    manager, store, _ = make(root, tiny_bundle)
    manager.start()
    try:
        job = wait(store, manager.submit("walker", Prompt.text("stand up straight"), FEW, EVAL_OPTS)["id"], timeout=90)
    finally:
        manager.stop()
        store.close()
    assert job["state"] == "succeeded", job["error"]
    return root, job


def restart_copy(finished, bundle, root, **kw):
    """A restart of the finished server on a private copy of its state."""
    shutil.copytree(finished[0], root, dirs_exist_ok=True)
    return make(root, bundle, **kw)


def test_job_runs_all_stages_and_records_artefacts(tiny_bundle, finished):
    root, done = finished
    manager, store, agent = make(root, tiny_bundle)
    try:
        assert set(done["artefacts"]) == set(ARTEFACTS) and done["attempts"] == 1
        assert done["progress"] == 1.0 and done["stage"] == "done" and not done["reused"]
        assert [h[0] for h in done["history"]] == [1, 2, 3] and done["metrics"]["updates"] == 3
        # the recorded alignment is that of the learned policy against the job's prompt, reproducible
        assert done["result"]["alignment"] == agent.alignment("stand up straight", done["slug"])
        assert done["t_a"] == done["result"]["alignment"]["t_a"]
        ev = done["result"]["evaluation"]
        assert ev["task"] in agent.tasks() and len(ev["returns"]) == 1 and ev["env_steps"] == 1000
        low, high, _ = REFERENCE_RETURNS[ev["task"]]  # every walker task has references
        assert (ev["random_return"], ev["expert_return"]) == (low, high) and isinstance(ev["normalised"], float)
        assert ev["normalised"] == pytest.approx((ev["mean_return"] - low) / (high - low), abs=1e-3)
        logged = " | ".join(done["log"])
        positions = [logged.find(stage) for stage in STAGES]
        assert -1 not in positions and positions == sorted(positions), done["log"]
        assert learned_slugs(agent) == [done["slug"]]
        folder = root / "runs" / "jobs" / done["id"]
        heads = {}
        for name in done["artefacts"]:
            path, _ = find_artefact(store, manager.jobs_dir, done["id"], name)
            assert path.is_file() and path.parent == folder and path.stat().st_size > 100, name
            heads[name] = path.read_bytes()[:8]
        assert all(heads[n][4:8] == b"ftyp" for n in ("target", "imagined", "real"))
        assert heads["alignment"] == b"\x89PNG\r\n\x1a\n" and heads["policy"][:2] == b"PK"  # a torch zip
        policy_dir = root / "policies" / "walker" / done["slug"]
        assert (folder / "policy.pt").read_bytes() == (policy_dir / "policy.pt").read_bytes()
    finally:
        store.close()


def test_concurrency_limit_queue_positions_and_full_queue(tiny_bundle, tmp_path):
    manager, store, agent = make(tmp_path, tiny_bundle, workers=2, max_queue=3)
    jobs = [manager.submit("walker", Prompt.text(prompt), FOREVER, OPTS)
            for prompt in ("stand up", "run fast", "lie down")]
    assert [j["queue_position"] for j in jobs] == [1, 2, 3]
    with pytest.raises(AppError) as err:
        manager.submit("walker", Prompt.text("one too many"), FEW, OPTS)
    assert err.value.status == 429 and "full" in err.value.detail
    manager.start()
    try:
        for j in jobs[:2]:
            wait(store, j["id"], ("running",), check=learning)
        # both workers busy learning: the third waits, first in line
        for _ in range(10):
            assert store.count("running") == 2 and store.get(jobs[2]["id"])["queue_position"] == 1
            time.sleep(0.05)
        assert manager.stats() == {"workers": 2, "running": 2, "queued": 1, "max_queue": 3}
        late = manager.submit("walker", Prompt.text("walk forward"), FEW, OPTS)  # the limit counts waiting jobs only
        assert late["queue_position"] == 2
        assert manager.cancel(late["id"])["state"] == "cancelled"
        manager.cancel(jobs[0]["id"])  # a worker frees up: the waiting job starts
        assert wait(store, jobs[0]["id"], timeout=10)["state"] == "cancelled"
        wait(store, jobs[2]["id"], ("running",), check=learning)
        assert store.count("running") == 2 and store.get(jobs[1]["id"])["state"] == "running"
        for j in jobs[1:]:
            manager.cancel(j["id"])
            assert wait(store, j["id"], timeout=10)["state"] == "cancelled"
        assert manager.stats()["running"] == 0 and learned_slugs(agent) == []
    finally:
        manager.stop()
        store.close()


def test_cancel_queued_and_running(tiny_bundle, tmp_path):
    manager, store, agent = make(tmp_path, tiny_bundle)
    manager.start()
    try:
        running = manager.submit("walker", Prompt.text("run fast"), FOREVER, OPTS)
        queued = manager.submit("walker", Prompt.text("later"), FEW, OPTS)
        wait(store, running["id"], ("running",), check=learning)
        gone = manager.cancel(queued["id"])
        assert gone["state"] == "cancelled" and gone["started"] is None and not gone["artefacts"]
        manager.cancel(running["id"])
        job = wait(store, running["id"], timeout=10)
        assert job["state"] == "cancelled" and job["stage"] == "cancelled", job["error"]
        assert "policy" not in job["artefacts"] and learned_slugs(agent) == []
        # learning checkpointed on cancel: a rerun resumes rather than starting over
        run_dir = tmp_path / "policies" / "walker" / job["slug"]
        meta = json.loads((run_dir / "meta.json").read_text())
        assert (run_dir / "state.pt").is_file() and not meta["finished"] and meta["updates_done"] >= 1
        with pytest.raises(AppError) as err:
            manager.cancel(running["id"])
        assert err.value.status == 409
        with pytest.raises(AppError) as err:
            manager.cancel("0" * 16)
        assert err.value.status == 404
        # a job submitted after it runs to the end on the only worker, which takes the oldest queued
        # job first: so the worker has passed the cancelled one by, for good
        marker = wait(store, manager.submit("walker", Prompt.text("marker"), FEW, OPTS)["id"], timeout=120)
        assert marker["state"] == "succeeded", marker["error"]
        gone = store.get(queued["id"])
        assert gone["state"] == "cancelled" and gone["started"] is None and gone["attempts"] == 0
    finally:
        manager.stop()
        store.close()


def test_same_prompt_and_settings_reuse_the_finished_job(tiny_bundle, finished, tmp_path):
    first = finished[1]
    manager, store, agent = restart_copy(finished, tiny_bundle, tmp_path)
    manager.start()
    try:
        second = wait(store, manager.submit("walker", Prompt.text("stand up straight"), FEW, EVAL_OPTS)["id"])
        assert second["state"] == "succeeded" and second["reused"], second["error"]
        assert second["slug"] == first["slug"] and learned_slugs(agent) == [first["slug"]]
        assert set(second["artefacts"]) == set(first["artefacts"]) and second["t_a"] == first["t_a"]
        assert second["result"] == first["result"] and not any("learning" in line for line in second["log"])
        assert any(f"results of job {first['id']}" in line for line in second["log"])
        for name in ("imagined", "alignment", "policy", "real"):
            assert find_artefact(store, manager.jobs_dir, second["id"], name)[0].read_bytes() == \
                find_artefact(store, manager.jobs_dir, first["id"], name)[0].read_bytes(), name
        # other settings: another policy, learned afresh (cancelled once it is learning)
        other = manager.submit("walker", Prompt.text("stand up straight"), FOREVER, EVAL_OPTS)
        other = wait(store, other["id"], ("running",), check=learning)
        assert not other["reused"] and other["slug"] != first["slug"]
        manager.cancel(other["id"])
        assert wait(store, other["id"], timeout=10)["state"] == "cancelled"
        assert learned_slugs(agent) == [first["slug"]]
    finally:
        manager.stop()
        store.close()


def test_restart_keeps_finished_jobs_and_resumes_or_interrupts_running_ones(tiny_bundle, finished, tmp_path):
    done = finished[1]
    shutil.copytree(finished[0], tmp_path, dirs_exist_ok=True)
    # a crash: a job left 'running' in the database with no process behind it
    store = JobStore(tmp_path / "jobs.sqlite")
    crashed = store.create("walker", Prompt.text("kneel on the ground"), FEW, OPTS)
    store.update(crashed["id"], state="running", attempts=1)
    store.close()

    manager, store, agent = make(tmp_path, tiny_bundle)  # same database and run folder: a restart
    assert store.get(done["id"])["state"] == "succeeded"
    manager.start()
    try:
        resumed = wait(store, crashed["id"], timeout=30)
        assert resumed["state"] == "succeeded" and resumed["attempts"] == 2, resumed["error"]
        assert any("restart" in line for line in resumed["log"])
        assert find_artefact(store, manager.jobs_dir, done["id"], "real")[0].is_file()
        assert find_artefact(store, manager.jobs_dir, resumed["id"], "policy")[0].is_file()
        assert learned_slugs(agent) == sorted([done["slug"], resumed["slug"]])
    finally:
        manager.stop()
        store.close()

    manager, store, _ = make(tmp_path, tiny_bundle, resume=False)
    again = store.create("walker", Prompt.text("crashed again"), FEW, OPTS)
    store.update(again["id"], state="running", attempts=1)
    manager.start()
    try:
        job = store.get(again["id"])
        assert job["state"] == "interrupted" and "stopped" in job["error"]
        assert store.get(done["id"])["state"] == "succeeded"
    finally:
        manager.stop()
        store.close()


def test_shutdown_requeues_the_running_job(tiny_bundle, tmp_path):
    manager, store, _ = make(tmp_path, tiny_bundle)
    manager.start()
    job = manager.submit("walker", Prompt.text("run fast"), FOREVER, OPTS)
    wait(store, job["id"], ("running",), check=learning)
    manager.stop(timeout=10)
    job = store.get(job["id"])
    assert job["state"] == "queued" and "resume" in job["stage"] and job["queue_position"] == 1, job["stage"]
    meta = json.loads((tmp_path / "policies" / "walker" / job["slug"] / "meta.json").read_text())
    checkpointed = meta["updates_done"]
    assert checkpointed >= 1 and not meta["finished"]
    store.close()

    manager, store, _ = make(tmp_path, tiny_bundle)  # the next start resumes it from its checkpoint
    manager.start()
    try:
        resumed = wait(store, job["id"], ("running",), check=learning)
        assert resumed["attempts"] == 2 and resumed["history"][0][0] == checkpointed + 1, resumed["history"][:3]
        manager.cancel(job["id"])
        assert wait(store, job["id"], timeout=10)["state"] == "cancelled"
    finally:
        manager.stop()
        store.close()


def test_unknown_artefact_names_never_reach_the_disk(tiny_bundle, finished):
    root, done = finished
    manager, store, _ = make(root, tiny_bundle)
    try:
        assert find_artefact(store, manager.jobs_dir, done["id"], "policy")[0].is_file()
        for name in ["../jobs.sqlite", "target/../../x", "policy.pt", "../../policies", "Policy", ""]:
            with pytest.raises(AppError) as err:
                find_artefact(store, manager.jobs_dir, done["id"], name)
            assert err.value.status == 404 and "unknown artefact" in err.value.detail, name
        with pytest.raises(AppError) as err:
            find_artefact(store, manager.jobs_dir, "../" + done["id"], "policy")
        assert err.value.status == 404
    finally:
        store.close()
