"""A job as the front ends see it: a typed record built from a job-store row, and its public form
(what REST answers: no server paths, artefacts as download URLs)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.job_store import FINISHED, SUCCEEDED


def _iso(t: float | None) -> str | None:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds") if t else None


@dataclass(frozen=True)
class Job:
    id: str
    body: str
    prompt: str                       # the text prompt, or "video:NAME" for a video prompt
    video: str | None                 # the stored video prompt (a server path: never shown)
    settings: dict[str, Any]          # the learning settings the request gave
    options: dict[str, Any]           # steps, task, eval_episodes
    state: str
    stage: str
    progress: float
    metrics: dict[str, Any]           # the latest learning update's
    history: list[list[float]]        # [update, reward] points of the learning curve
    slug: str | None                  # the policy's name, once known
    t_a: int | None
    reused: bool
    result: dict[str, Any]            # alignment, evaluation
    artefacts: dict[str, str]         # name -> file in the job folder
    error: str | None
    log: list[str]
    attempts: int
    created: float
    started: float | None
    finished: float | None
    queue_position: int | None = None  # 1 = the next to start; only a queued job has one

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Job:
        """A job from a JobStore row (the store's bookkeeping columns, such as its owner, left out)."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls) if f.name in row})

    @property
    def done(self) -> bool:
        """The job has ended, one way or another: nothing about it changes any more."""
        return self.state in FINISHED

    @property
    def succeeded(self) -> bool:
        return self.state == SUCCEEDED

    def public(self) -> dict[str, Any]:
        """The public form of the job: no server paths, artefacts as download URLs."""
        jid = self.id
        metrics = {k: v for k, v in self.metrics.items() if k != "t_a_hist"}
        t_a = self.t_a
        if t_a is None and self.metrics.get("t_a_hist"):
            hist = self.metrics["t_a_hist"]
            t_a = max(range(len(hist)), key=hist.__getitem__)
        return {
            "id": jid, "body": self.body, "prompt": self.prompt,
            "prompt_kind": "video" if self.video else "text",
            "state": self.state, "stage": self.stage, "progress": round(self.progress, 3),
            "queue_position": self.queue_position, "settings": self.settings, "options": self.options,
            "metrics": metrics, "t_a_hist": self.metrics.get("t_a_hist"), "reward_history": self.history,
            "t_a": t_a, "policy": self.slug, "reused": self.reused, "result": self.result,
            "error": self.error, "log": self.log, "attempts": self.attempts,
            "created": _iso(self.created), "started": _iso(self.started), "finished": _iso(self.finished),
            "urls": {"self": f"/jobs/{jid}", "cancel": f"/jobs/{jid}/cancel",
                     "artefacts": {name: f"/jobs/{jid}/artefacts/{name}" for name in self.artefacts}},
        }
