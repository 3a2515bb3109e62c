"""`--executor ray`: every learning job runs as a Ray task on a local Ray instance started here
(two CPUs, no dashboard), over the same job store, with cancel and restart keeping their meaning."""

import functools
import json

import helpers_jobs
import pytest
import ray
from fastapi.testclient import TestClient
from helpers_jobs import learning

from app.main import create_app

wait = functools.partial(helpers_jobs.wait, timeout=180.0)  # learning in other processes: slower


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=128 * 2**20, log_to_driver=True)
    yield
    ray.shutdown()


def test_ray_executor_runs_cancels_and_requeues_on_stop(tiny_bundle, tmp_path, local_ray):
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", executor="ray", ui=False,
                     default_updates=2, eval_episodes=0, behaviour_preset="tiny", device="cpu")
    store = app.state.services.store
    with TestClient(app) as client:
        assert client.get("/health").json()["jobs"]["workers"] == 1  # max_jobs tasks in flight
        job = client.post("/learn", json={"prompt": "stand up straight", "steps": 8}).json()
        done = wait(store, job["id"])
        assert done["state"] == "succeeded" and done["attempts"] == 1, (done["error"], done["log"])
        assert any(line.endswith("submitted to the Ray cluster") for line in done["log"])
        assert [h[0] for h in done["history"]] == [1, 2]
        for name in ("target", "imagined", "alignment", "policy"):
            assert client.get(f"/jobs/{job['id']}/artefacts/{name}").status_code == 200, name

        # cancel: the web process asks through the store; the task stops at its next update
        forever = client.post("/learn", json={"prompt": "run fast", "steps": 8, "updates": 100_000}).json()
        wait(store, forever["id"], ("running",), check=learning)
        asked = client.post(f"/jobs/{forever['id']}/cancel").json()
        assert asked["stage"] == "cancelling" or asked["state"] == "cancelled"
        cancelled = wait(store, forever["id"], timeout=60)
        assert cancelled["state"] == "cancelled", cancelled["log"][-3:]

        # a server stop: the running task checkpoints and its job is queued for the next start
        again = client.post("/learn", json={"prompt": "kneel on the ground", "steps": 8,
                                            "updates": 100_000}).json()
        wait(store, again["id"], ("running",), check=learning)
    stopped = store.get(again["id"])
    assert stopped["state"] == "queued" and "resume" in stopped["stage"], stopped["log"][-3:]
    meta = json.loads((tmp_path / "runs" / "policies" / "walker" / stopped["slug"] / "meta.json").read_text())
    checkpointed = meta["updates_done"]
    assert checkpointed >= 1 and not meta["finished"]

    # the next start resumes it, on Ray again, from its checkpoint
    app = create_app(tiny_bundle, db=tmp_path / "jobs.sqlite", runs=tmp_path / "runs", executor="ray", ui=False,
                     default_updates=2, eval_episodes=0, behaviour_preset="tiny", device="cpu")
    store = app.state.services.store
    with TestClient(app) as client:
        resumed = wait(store, again["id"], ("running",), check=learning)
        assert resumed["attempts"] == 2 and resumed["history"][0][0] == checkpointed + 1, resumed["history"][:3]
        client.post(f"/jobs/{again['id']}/cancel")
        assert wait(store, again["id"], timeout=60)["state"] == "cancelled"
