"""Waiting on jobs in a real job store, for the app's job, worker and Ray tests."""

from __future__ import annotations

import time

from app.job_store import FINISHED


def wait(store, job_id, states=FINISHED, timeout=20.0, check=None):
    """Poll the store until the job is in one of `states` (and `check(job)` holds); fail at once if
    it ends in another state."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = store.get(job_id)
        if job["state"] in states and (check is None or check(job)):
            return job
        assert job["state"] in states or job["state"] not in FINISHED, \
            f"job {job_id} ended {job['state']} while waiting for {states}: {job['error']}; log {job['log'][-5:]}"
        time.sleep(0.05)
    job = store.get(job_id)
    raise AssertionError(f"job {job_id} did not reach {states} in {timeout:.0f} s: state {job['state']}, "
                         f"stage {job['stage']!r}, error {job['error']}, log {job['log'][-5:]}")


def learning(job):
    """Running and reporting learning progress in this attempt (a requeued job keeps its old history)."""
    return job["state"] == "running" and job["stage"].startswith("learning: update") and bool(job["history"])


def finished(svc, job_id, timeout=180.0):
    """Wait for a job of `svc` (app.service.Services) to end; it must have succeeded."""
    deadline = time.monotonic() + timeout
    while not (job := svc.job(job_id)).done:
        assert time.monotonic() < deadline, f"job {job_id} still {job.state} ({job.stage})"
        time.sleep(0.1)
    assert job.state == "succeeded", job.error
    return job
