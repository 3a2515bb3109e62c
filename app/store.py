"""SQLite job store: every job's request, state, progress, metrics, log and artefacts.

One connection shared by the threads under a lock (a handful of small writes per second at
most); WAL journal so a crash mid-write never corrupts finished jobs.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, FAILED, CANCELLED, INTERRUPTED = "succeeded", "failed", "cancelled", "interrupted"
ACTIVE = (QUEUED, RUNNING)
FINISHED = (SUCCEEDED, FAILED, CANCELLED, INTERRUPTED)
MAX_LOG_LINES = 200
MAX_HISTORY = 400  # reward-curve points kept per job (downsampled beyond)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    body TEXT NOT NULL,
    prompt TEXT NOT NULL,
    video TEXT,
    settings TEXT NOT NULL,
    options TEXT NOT NULL,
    state TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    progress REAL NOT NULL DEFAULT 0,
    metrics TEXT NOT NULL DEFAULT '{}',
    history TEXT NOT NULL DEFAULT '[]',
    slug TEXT,
    t_a INTEGER,
    reused INTEGER NOT NULL DEFAULT 0,
    result TEXT NOT NULL DEFAULT '{}',
    artefacts TEXT NOT NULL DEFAULT '{}',
    error TEXT,
    log TEXT NOT NULL DEFAULT '[]',
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    started REAL,
    finished REAL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_slug ON jobs(body, slug, state);
"""
_JSON = ("settings", "options", "metrics", "history", "result", "artefacts", "log")


def _stamp(message: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {message}"


class JobStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- reading -------------------------------------------------------------------------------
    @staticmethod
    def _row(row: sqlite3.Row | None) -> dict[str, Any] | None:
        if row is None:
            return None
        job = dict(row)
        for key in _JSON:
            job[key] = json.loads(job[key]) if job[key] else ({} if key not in ("history", "log") else [])
        job["reused"] = bool(job["reused"])
        return job

    def get(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
            job = self._row(row)
            if job and job["state"] == QUEUED:
                job["queue_position"] = self._position(job["seq"])
            return job

    def _position(self, seq: int) -> int:
        """1 = the next job to start."""
        return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ? AND seq <= ?", (QUEUED, seq)).fetchone()[0]

    def list(self, state: str | None = None, body: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
        query, args = "SELECT * FROM jobs WHERE 1=1", []
        if state:
            query += " AND state = ?"
            args.append(state)
        if body:
            query += " AND body = ?"
            args.append(body)
        query += " ORDER BY seq DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            jobs = [self._row(r) for r in self._db.execute(query, args).fetchall()]
            queued = [r[0] for r in self._db.execute("SELECT seq FROM jobs WHERE state = ? ORDER BY seq",
                                                     (QUEUED,)).fetchall()]
        order = {seq: i + 1 for i, seq in enumerate(queued)}
        for job in jobs:
            if job["state"] == QUEUED:
                job["queue_position"] = order.get(job["seq"])
        return jobs

    def count(self, state: str) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM jobs WHERE state = ?", (state,)).fetchone()[0]

    def finished_with_slug(self, body: str, slug: str, options: dict[str, Any]) -> dict[str, Any] | None:
        """The latest succeeded job of a policy made with the same options (its artefacts can be reused)."""
        with self._lock:
            rows = self._db.execute("SELECT * FROM jobs WHERE body = ? AND slug = ? AND state = ? ORDER BY seq DESC",
                                    (body, slug, SUCCEEDED)).fetchall()
        for row in rows:
            job = self._row(row)
            if job["options"] == options:
                return job
        return None

    # -- writing -------------------------------------------------------------------------------
    def create(self, body: str, prompt: str, video: str | None, settings: dict, options: dict) -> dict[str, Any]:
        job_id = uuid.uuid4().hex[:16]
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, body, prompt, video, settings, options, state, stage, log, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, body, prompt, video, json.dumps(settings), json.dumps(options), QUEUED, "queued",
                 json.dumps([_stamp("queued")]), time.time()))
            return self.get(job_id)

    def update(self, job_id: str, log: str | None = None, **fields: Any) -> None:
        """Set columns (dicts/lists stored as JSON) and optionally append a log line."""
        sets, args = [], []
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            args.append(json.dumps(value) if key in _JSON else value)
        with self._lock:
            if log is not None:
                row = self._db.execute("SELECT log FROM jobs WHERE id = ?", (job_id,)).fetchone()
                lines = (json.loads(row[0]) if row else []) + [_stamp(log)]
                sets.append("log = ?")
                args.append(json.dumps(lines[-MAX_LOG_LINES:]))
            if sets:
                self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", (*args, job_id))

    def add_artefact(self, job_id: str, name: str, filename: str) -> None:
        with self._lock:
            row = self._db.execute("SELECT artefacts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            artefacts = json.loads(row[0]) if row else {}
            artefacts[name] = filename
            self._db.execute("UPDATE jobs SET artefacts = ? WHERE id = ?", (json.dumps(artefacts), job_id))

    def claim_next(self) -> dict[str, Any] | None:
        """Atomically move the oldest queued job to running (one worker gets it)."""
        with self._lock:
            while True:
                row = self._db.execute("SELECT id FROM jobs WHERE state = ? ORDER BY seq LIMIT 1",
                                       (QUEUED,)).fetchone()
                if row is None:
                    return None
                # conditional, so a job cancelled (or taken) in between is never started
                cur = self._db.execute("UPDATE jobs SET state = ?, started = ?, attempts = attempts + 1 "
                                       "WHERE id = ? AND state = ?", (RUNNING, time.time(), row[0], QUEUED))
                if cur.rowcount:
                    return self.get(row[0])

    def cancel_if_queued(self, job_id: str) -> bool:
        with self._lock:
            cur = self._db.execute("UPDATE jobs SET state = ?, stage = ?, finished = ? WHERE id = ? AND state = ?",
                                   (CANCELLED, "cancelled before it started", time.time(), job_id, QUEUED))
            if cur.rowcount:
                self.update(job_id, log="cancelled while queued")
            return bool(cur.rowcount)

    def recover(self, resume: bool, max_attempts: int) -> list[str]:
        """After a restart: jobs left running (the process died) are re-queued to resume from their
        checkpoint, or marked interrupted; queued ones stay queued. Returns the ids touched."""
        touched = []
        with self._lock:
            for row in self._db.execute("SELECT id, attempts FROM jobs WHERE state = ?", (RUNNING,)).fetchall():
                job_id, attempts = row
                if resume and attempts < max_attempts:
                    self.update(job_id, state=QUEUED, stage="queued to resume after a restart",
                                log="server restarted while running: queued to resume from the last checkpoint")
                else:
                    why = "after a restart" if not resume else f"after {attempts} attempts"
                    self.update(job_id, state=INTERRUPTED, stage="interrupted", finished=time.time(),
                                error=f"the server stopped while this job was running ({why})",
                                log=f"interrupted {why}")
                touched.append(job_id)
            if not resume:
                for (job_id,) in self._db.execute("SELECT id FROM jobs WHERE state = ?", (QUEUED,)).fetchall():
                    self.update(job_id, state=INTERRUPTED, stage="interrupted", finished=time.time(),
                                error="the server restarted before this job started", log="interrupted while queued")
                    touched.append(job_id)
        return touched
