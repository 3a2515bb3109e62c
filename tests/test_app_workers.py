"""Many workers on one SQLite job store: atomic claims across processes, heartbeats that re-queue
a killed worker's job (and never a live one's), cancel across processes, `genrl worker` and
`genrl serve --workers N`, all with real processes on the tiny bundle."""

import functools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import helpers_jobs
import pytest
from fastapi.testclient import TestClient
from helpers_jobs import learning

from app.bodies import Bodies
from app.cli import main as genrl
from app.config import AppConfig
from app.executors import import_ray, make_jobs
from app.job_store import CANCEL, JobStore
from app.jobs import JobManager
from app.liveness import Owners
from app.main import create_app
from genrl_core.errors import ConfigError
from genrl_core.prompt import Prompt, PromptError

OPTS = {"steps": 8, "task": None, "eval_episodes": 0}
FEW = {"updates": 2}
FOREVER = {"updates": 100_000}  # never finishes within a test: cancelled or stopped
ROOT = Path(__file__).resolve().parents[1]
wait = functools.partial(helpers_jobs.wait, timeout=120.0)  # learning in other processes: slower


def owner_pid(job) -> int:
    return int(job["owner"].split("/")[1])


def lines(job, text):
    """Log lines of a job that say `text` (after their time stamp)."""
    return sum(line.split(" ", 1)[1].startswith(text) for line in job["log"])


# -- the store alone ---------------------------------------------------------------------------
CLAIMER = """
import json, sys
from app.job_store import JobStore
from app.liveness import Owners

store, owner, got = JobStore(sys.argv[1]), Owners.new(), []
while (job := store.claim_next(owner)) is not None:
    got.append(job["id"])
    store.update(job["id"], state="succeeded", if_owner=owner, log="done")
print(json.dumps(got))
"""


def test_a_job_keeps_its_parsed_prompt_and_an_older_database_gains_its_waiting_ones(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(b"not decoded here: only hashed")
    video = Prompt.video(clip)
    row = store.create("walker", video, {}, {})
    assert (row["prompt"], row["video"]) == ("video:clip.mp4", str(clip))
    assert Prompt.from_record(row["parsed"]) == video  # what the job runs on: no parse, no hash again
    waiting, done = store.create("walker", Prompt.text("  Stand up "), {}, {}), store.create("walker", video, {}, {})
    store.update(done["id"], state="succeeded")
    store.close()
    # a database an older version wrote: no parsed prompts
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        db.execute("ALTER TABLE jobs DROP COLUMN parsed")
    store = JobStore(tmp_path / "jobs.sqlite")
    assert Prompt.from_record(store.get(waiting["id"])["parsed"]) == Prompt.text("Stand up")
    assert store.get(row["id"])["parsed"] == Prompt.video(clip).to_record()
    with pytest.raises(PromptError, match="no parsed prompt"):  # a finished job never runs again
        Prompt.from_record(store.get(done["id"])["parsed"])


def test_processes_racing_for_claims_get_each_job_exactly_once(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    ids = [store.create("walker", Prompt.text(f"job {i}"), {}, {})["id"] for i in range(300)]
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(tmp_path / "jobs.sqlite")], cwd=ROOT,
                              stdout=subprocess.PIPE, text=True) for _ in range(4)]
    claimed = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    every = [job_id for got in claimed for job_id in got]
    assert sorted(every) == sorted(ids)  # none twice, none missed
    for job_id in ids:
        job = store.get(job_id)
        assert job["state"] == "succeeded" and job["attempts"] == 1 and lines(job, "done") == 1
    store.close()


def test_a_silent_or_exited_owner_loses_its_job_and_a_live_one_never(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    elsewhere = "another-machine/4242/cafe0000"  # an owner on another box: judged by its heartbeat alone
    job = store.create("walker", Prompt.text("stand"), {}, {})
    assert store.claim_next(elsewhere)["id"] == job["id"]
    assert not store.owners.dead(elsewhere)
    for _ in range(3):  # a live owner keeps its heartbeat fresh: never taken over
        assert store.heartbeat(elsewhere) == {job["id"]: None}
        assert store.requeue_dead(resume=True, max_attempts=3, timeout=30) == []
    store.update(job["id"], heartbeat=time.time() - 31)  # ...then falls silent past the timeout
    assert store.requeue_dead(resume=True, max_attempts=3, timeout=30) == [job["id"]]
    requeued = store.get(job["id"])
    assert requeued["state"] == "queued" and requeued["owner"] is None and requeued["queue_position"] == 1
    assert lines(requeued, "its worker sent no heartbeat for 30 s: queued to resume") == 1
    assert store.heartbeat(elsewhere) == {}  # the old owner learns it lost the job
    assert not store.update(job["id"], if_owner=elsewhere, state="succeeded")  # and cannot overwrite it

    # an owner of this machine whose process has exited is released at once, heartbeat or not
    dead_proc = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_proc.wait()
    here = Owners.new().rsplit("/", 2)[0]
    gone = f"{here}/{dead_proc.pid}/0000beef"
    assert store.owners.dead(gone) and not store.owners.dead(f"{here}/{os.getppid()}/0000cafe")
    assert store.claim_next(gone)["attempts"] == 2
    assert store.requeue_dead(resume=True, max_attempts=3, timeout=30) == [job["id"]]
    assert lines(store.get(job["id"]), "its worker exited") == 1

    # a cancel asked of a job whose worker died ends it cancelled; a job that keeps dying is interrupted
    store.claim_next(gone)
    assert store.request_stop(job["id"], CANCEL)
    store.requeue_dead(resume=True, max_attempts=5, timeout=30)
    assert store.get(job["id"])["state"] == "cancelled"
    other = store.create("walker", Prompt.text("run"), {}, {})
    store.claim_next(gone)
    store.requeue_dead(resume=True, max_attempts=1, timeout=30)
    assert store.get(other["id"])["state"] == "interrupted" and "1 attempts" in store.get(other["id"])["error"]
    store.close()


def test_settings_errors_name_the_bad_value(tmp_path, monkeypatch, capsys):
    store = JobStore(tmp_path / "jobs.sqlite")
    bodies = Bodies([], "cpu", tmp_path / "policies")
    for bad, words in [({"executor": "banana"}, "'banana'"), ({"workers": -1}, "-1"),
                       ({"executor": "ray", "workers": 2}, "workers is for the local executor")]:
        with pytest.raises(ValueError, match=words):
            make_jobs(AppConfig(runs=tmp_path, db=tmp_path / "jobs.sqlite", **bad), store, bodies)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(ConfigError, match="pip install ray"):
        import_ray()
    store.close()
    assert genrl(["worker", "--jobs", "0", "--runs", str(tmp_path)]) == 2
    assert "--jobs must be at least 1, got 0" in capsys.readouterr().err


def test_the_default_app_never_imports_ray(tmp_path):
    code = "import sys, app.main, app.executors, app.workers; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=120).returncode == 0


# -- real worker processes ---------------------------------------------------------------------
def start_worker(bundle, runs, db, log_file, claim_timeout=10):
    """`genrl worker` in a process of its own, on the CPU with the tiny behaviour preset."""
    env = {**os.environ, "GENRL_BEHAVIOUR_PRESET": "tiny", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "app.cli", "worker", "--bundle", str(bundle), "--runs", str(runs),
           "--db", str(db), "--device", "cpu", "--claim-timeout", str(claim_timeout)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)


def test_two_workers_race_for_20_jobs_each_runs_once_and_a_killed_ones_job_is_finished(tiny_bundle, tmp_path):
    runs, db = tmp_path / "runs", tmp_path / "jobs.sqlite"
    store = JobStore(db)
    # the web side: the queue and cancels, no worker threads of its own
    web = JobManager(store, Bodies([tiny_bundle], "cpu", runs / "policies", behaviour_preset="tiny"), runs, 0)
    # 19 tiny jobs, then one that learns long enough to be killed in the middle of it
    jobs = [web.submit("walker", Prompt.text(f"walk forward {i}"), FEW, OPTS) for i in range(19)]
    jobs += [web.submit("walker", Prompt.text("stand up straight"), {"updates": 100}, OPTS)]
    with open(tmp_path / "workers.log", "wb") as out:
        workers = [start_worker(tiny_bundle, runs, db, out) for _ in range(2)]
        try:
            long = wait(store, jobs[-1]["id"], ("running",), check=learning, timeout=240)
            victim = next(w for w in workers if w.pid == owner_pid(long))
            assert long["attempts"] == 1  # killed in the middle of its first attempt
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            # (the survivor may take the job over at once: an exited owner needs no heartbeat timeout)
            survivor = next(w for w in workers if w is not victim)

            done = [wait(store, j["id"], timeout=240) for j in jobs]
            assert [j["state"] for j in done] == ["succeeded"] * 20, [(j["state"], j["error"]) for j in done]
            # every job ran exactly once; the killed one twice, finished by the survivor
            assert [j["attempts"] for j in done] == [1] * 19 + [2]
            for job in done:
                assert lines(job, "started") == lines(job, "decoding the target") == job["attempts"], job["log"]
            assert owner_pid(done[-1]) == survivor.pid and lines(done[-1], "its worker exited") == 1
            assert done[-1]["metrics"]["updates"] == 100 and done[-1]["history"][-1][0] == 100
            assert {owner_pid(j) for j in done[:19]} == {victim.pid, survivor.pid}  # both took part
            policies = [json.loads(p.read_text()) for p in (runs / "policies" / "walker").glob("*/meta.json")]
            assert len(policies) == 20 and all(m["finished"] for m in policies)

            # a cancel made on the web side reaches the job in the worker process through the store
            forever = web.submit("walker", Prompt.text("lie down on your back"), FOREVER, OPTS)
            wait(store, forever["id"], ("running",), check=learning)
            asked = web.cancel(forever["id"])
            assert asked["stage"] == "cancelling" or asked["state"] == "cancelled"
            cancelled = wait(store, forever["id"], timeout=60)
            assert cancelled["state"] == "cancelled" and lines(cancelled, "cancel requested") == 1

            # SIGTERM: the worker stops cleanly
            survivor.send_signal(signal.SIGTERM)
            assert survivor.wait(60) == 0
        finally:
            for w in workers:
                if w.poll() is None:
                    w.kill()
                    w.wait(30)
            store.close()


def test_serve_with_worker_processes_learns_and_cancels_over_http(tiny_bundle, tmp_path):
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", workers=1, ui=False,
                     default_updates=2, eval_episodes=0, behaviour_preset="tiny", device="cpu")
    store = app.state.services.store
    with TestClient(app) as client:
        assert client.get("/health").json()["jobs"]["workers"] == 1
        job = client.post("/learn", json={"prompt": "stand up straight", "steps": 8}).json()
        done = wait(store, job["id"], timeout=180)
        assert done["state"] == "succeeded" and done["attempts"] == 1, done["error"]
        assert owner_pid(done) in app.state.services.jobs.pids and owner_pid(done) != os.getpid()
        assert client.get(f"/jobs/{job['id']}/artefacts/imagined").status_code == 200

        forever = client.post("/learn", json={"prompt": "run fast", "steps": 8, "updates": 100_000}).json()
        wait(store, forever["id"], ("running",), check=learning)
        asked = client.post(f"/jobs/{forever['id']}/cancel").json()
        assert asked["stage"] == "cancelling" or asked["state"] == "cancelled"
        assert wait(store, forever["id"], timeout=60)["state"] == "cancelled"

        # a server stop checkpoints the worker's running job and queues it for the next start
        again = client.post("/learn", json={"prompt": "kneel on the ground", "steps": 8,
                                            "updates": 100_000}).json()
        wait(store, again["id"], ("running",), check=learning)
    stopped = store.get(again["id"])
    assert stopped["state"] == "queued" and "resume" in stopped["stage"], stopped["log"][-3:]
