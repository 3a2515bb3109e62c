"""What the UI shows of a job (issue 13, items 7-8), with the real app on the tiny bundle: a job that
reused a finished policy shows that policy's reward curve and the job's target; a job queued again
after its server died shows nothing of its last attempt as current."""

from __future__ import annotations

from collections.abc import Iterator

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from helpers_jobs import finished

from app.job import Job
from app.job_store import JobStore
from app.main import create_app
from app.service import Services
from app.ui import _progress_md, build_ui
from genrl_core.prompt import Prompt

# gradio's own use of pandas, not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*no_silent_downcasting", "ignore:The copy keyword is deprecated")


@pytest.fixture(scope="module")
def svc(tiny_bundle, tmp_path_factory) -> Iterator[Services]:
    """The services of a real app with its UI, job workers running."""
    root = tmp_path_factory.mktemp("app_ui_jobs")
    app = create_app(tiny_bundle, db=root / "jobs.sqlite", runs=root / "runs", eval_episodes=0,
                     behaviour_preset="tiny")
    with TestClient(app):
        yield app.state.services


def test_a_reused_policy_shows_its_reward_curve_and_its_target(svc):
    request = svc.learn_request(prompt="stand up straight", steps=8, updates=3, eval_episodes=0)
    first = finished(svc, svc.submit(request).id)
    assert [h[0] for h in first.history] == [1, 2, 3]
    # other options, the same policy: learn() finds it finished, so this job logs no progress of its own
    request = svc.learn_request(prompt="stand up straight", steps=16, updates=3, eval_episodes=0)
    second = finished(svc, svc.submit(request).id)
    assert second.reused and second.history == [] and second.slug == first.slug
    curve, updates = svc.reward_curve(second)  # what the UI plots for it: the policy's own training
    assert [h[0] for h in curve] == [1, 2, 3] and updates == 3, curve
    assert [h[1] for h in curve] == pytest.approx([h[1] for h in first.history], abs=1e-4)  # the log rounds
    # the page's poll of that job fills the Target panel with the job's decoded target (it stayed empty).
    # Called as Gradio calls it: the job id lives in a State, which the API client cannot pass.
    poll = next(f.fn for f in build_ui(svc).fns.values() if f.name == "poll")
    outputs = poll(second.id, "")
    target = outputs[-1]
    assert isinstance(target, str) and target.endswith("target.mp4"), outputs
    assert open(target, "rb").read(8)[4:8] == b"ftyp"
    again = poll(second.id, outputs[0])  # the next tick: nothing new, so the video is not sent again
    assert not isinstance(again[-1], str), again


def test_each_body_offers_its_own_tasks_prompts_as_examples(svc):
    from app.bodies import EXAMPLE_PROMPTS, example_prompts

    on_load = next(f.fn for f in build_ui(svc).fns.values() if f.name == "on_load")
    examples = next(out for out in on_load("walker") if isinstance(out, gr.Dataset))
    samples = examples.constructor_args["samples"]  # what Gradio sends: the update of the examples
    assert ["kneel on your knees"] in samples and ["stand up straight"] in samples
    assert "raise both hands above your head" in example_prompts("stickman")
    assert "raise both hands above your head" not in example_prompts("walker")
    assert "stand up on your hind legs" in example_prompts("quadruped")
    assert example_prompts("octopus") == EXAMPLE_PROMPTS  # a body with no tasks known here


def test_a_job_queued_again_after_a_crash_shows_nothing_of_its_last_attempt(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    job = store.create("walker", Prompt.text("stand up straight"), {"updates": 5000}, {"steps": 8})
    assert store.claim_next()["id"] == job["id"]
    store.update(job["id"], stage="learning: update 120/5000", progress=0.068, history=[[10, 0.1], [120, 0.3]],
                 metrics={"update": 120, "updates": 5000, "reward": 0.3, "actor_loss": 0.1, "critic_loss": 1.0,
                          "updates_per_s": 2.0, "elapsed": 60.0})
    store.close()  # the server dies here, mid-learning

    store = JobStore(tmp_path / "jobs.sqlite")  # the next server's start
    assert store.recover(resume=True, max_attempts=3) == [job["id"]]
    again = store.get(job["id"])
    assert again["state"] == "queued" and again["attempts"] == 1
    assert again["progress"] == 0 and again["metrics"] == {} and again["history"] == []
    shown = _progress_md(Job.from_row(again))
    assert "update 120" not in shown and "0%" in shown, shown
    assert any("resume" in line for line in again["log"])  # the log keeps the story
    store.close()
