"""SQLite job store: every job's request, state, progress, metrics, log and artefacts.

One connection per process, shared by its threads under a lock (a handful of small writes per
second at most); WAL journal so a crash mid-write never corrupts finished jobs. Several
processes (worker processes, Ray tasks) may share one database: a claim is one conditional
UPDATE, every read-modify-write runs in a `BEGIN IMMEDIATE` transaction, and a running job
names its owner, who refreshes a heartbeat; a job whose owner died (`Owners`, app/liveness.py,
judges) is re-queued by the others.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from app.config import AppConfig
from app.liveness import Owners
from genrl_core.prompt import Prompt, PromptError

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
    finished REAL,
    owner TEXT,
    heartbeat REAL,
    stop_request TEXT,
    parsed TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state, seq);
CREATE INDEX IF NOT EXISTS jobs_slug ON jobs(body, slug, state);
"""
# parsed: the job's Prompt (Prompt.to_record), as the request's edge parsed it, for the job to run on
_JSON = ("settings", "options", "metrics", "history", "result", "artefacts", "log", "parsed")
# columns added after the first release: an older database gains them when opened
_ADDED = {"owner": "TEXT", "heartbeat": "REAL", "stop_request": "TEXT", "parsed": "TEXT"}
STOP, CANCEL = "stop", "cancel"  # stop_request: checkpoint and re-queue | cancel


def _stamp(message: str) -> str:
    return f"{time.strftime('%H:%M:%S')} {message}"


class JobStore:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        # which running jobs' owners are gone (app/liveness.py); the managers on this store hold theirs in it
        self.owners = Owners()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.row_factory = sqlite3.Row
        self._depth = 0  # nesting of _tx() in this process
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            with self._tx():
                for statement in _SCHEMA.split(";"):  # not executescript: it would commit the transaction
                    if statement.strip():
                        self._db.execute(statement)
                have = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)").fetchall()}
                for column, kind in _ADDED.items():
                    if column not in have:
                        self._db.execute(f"ALTER TABLE jobs ADD COLUMN {column} {kind}")
                if "parsed" not in have:
                    self._parse_waiting()

    def _parse_waiting(self) -> None:
        """Parse the prompts of the jobs an older version left waiting or running, which it stored
        unparsed: once, here, so that a job only ever runs on a stored Prompt."""
        rows = self._db.execute("SELECT id, prompt, video FROM jobs WHERE state IN (?, ?)", ACTIVE).fetchall()
        for row in rows:
            try:
                prompt = Prompt.video(row["video"]) if row["video"] else Prompt.text(row["prompt"])
            except PromptError:  # its video is gone: the job fails as it starts, saying so
                continue
            self._db.execute("UPDATE jobs SET parsed = ? WHERE id = ?", (json.dumps(prompt.to_record()), row["id"]))

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[None]:
        """One write transaction across processes (BEGIN IMMEDIATE takes the write lock up front,
        so a read-modify-write never interleaves with another process's); nests in-process."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield
                finally:
                    self._depth -= 1
                return
            self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield
            except BaseException:
                self._depth = 0
                self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            self._db.execute("COMMIT")

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
    def create(self, body: str, prompt: Prompt, settings: dict, options: dict) -> dict[str, Any]:
        """A queued job for a parsed prompt, stored whole (`parsed`); its `prompt` column is what the
        job shows: the text, or "video:NAME" for a video prompt (whose file is `video`)."""
        job_id = uuid.uuid4().hex[:16]
        shown, video = (f"video:{prompt.path.name}", str(prompt.path)) if prompt.is_video else (prompt.name, None)
        with self._lock:
            self._db.execute(
                "INSERT INTO jobs (id, body, prompt, video, parsed, settings, options, state, stage, log, created) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, body, shown, video, json.dumps(prompt.to_record()), json.dumps(settings),
                 json.dumps(options), QUEUED, "queued", json.dumps([_stamp("queued")]), time.time()))
            return self.get(job_id)

    def update(self, job_id: str, log: str | None = None, if_owner: str | None = None, **fields: Any) -> bool:
        """Set columns (dicts/lists stored as JSON) and optionally append a log line. With `if_owner`,
        only while that owner still holds the job (a worker presumed dead must not overwrite the
        run that took over). Returns whether the job was written."""
        sets, args = [], []
        for key, value in fields.items():
            sets.append(f"{key} = ?")
            args.append(json.dumps(value) if key in _JSON else value)
        where, wargs = "id = ?", [job_id]
        if if_owner is not None:
            where += " AND owner = ?"
            wargs.append(if_owner)
        with self._tx():
            if log is not None:
                row = self._db.execute(f"SELECT log FROM jobs WHERE {where}", wargs).fetchone()
                if row is None:
                    return False
                lines = json.loads(row[0]) + [_stamp(log)]
                sets.append("log = ?")
                args.append(json.dumps(lines[-MAX_LOG_LINES:]))
            if not sets:
                return False
            return bool(self._db.execute(f"UPDATE jobs SET {', '.join(sets)} WHERE {where}", (*args, *wargs)).rowcount)

    def add_artefact(self, job_id: str, name: str, filename: str) -> None:
        with self._tx():
            row = self._db.execute("SELECT artefacts FROM jobs WHERE id = ?", (job_id,)).fetchone()
            artefacts = json.loads(row[0]) if row else {}
            artefacts[name] = filename
            self._db.execute("UPDATE jobs SET artefacts = ? WHERE id = ?", (json.dumps(artefacts), job_id))

    def claim_next(self, owner: str | None = None) -> dict[str, Any] | None:
        """Atomically move the oldest queued job to running, held by `owner`: one statement, so of
        any number of processes racing for it exactly one gets it (and a job cancelled in between
        is never started)."""
        now = time.time()
        with self._lock:
            row = self._db.execute(
                "UPDATE jobs SET state = ?, started = ?, attempts = attempts + 1, owner = ?, heartbeat = ?, "
                "stop_request = NULL WHERE state = ? AND seq = (SELECT seq FROM jobs WHERE state = ? "
                "ORDER BY seq LIMIT 1) RETURNING id", (RUNNING, now, owner, now, QUEUED, QUEUED)).fetchall()
            return self.get(row[0][0]) if row else None

    def heartbeat(self, owner: str) -> dict[str, str | None]:
        """Refresh the heartbeat of the running jobs `owner` holds; returns {job id: stop request}
        for each (a job missing from it was taken from this owner, who must stop working on it)."""
        with self._lock:
            rows = self._db.execute("UPDATE jobs SET heartbeat = ? WHERE owner = ? AND state = ? "
                                    "RETURNING id, stop_request", (time.time(), owner, RUNNING)).fetchall()
        return {job_id: request for job_id, request in rows}

    def request_stop(self, job_id: str, request: str) -> bool:
        """Ask whichever process runs the job to stop it at its next update: CANCEL, or STOP
        (checkpoint and re-queue). True when the job is running and got the request."""
        with self._tx():
            cur = self._db.execute("UPDATE jobs SET stop_request = ? WHERE id = ? AND state = ?",
                                   (request, job_id, RUNNING))
            if cur.rowcount and request == CANCEL:
                self.update(job_id, stage="cancelling", log="cancel requested")
            return bool(cur.rowcount)

    def cancel_if_queued(self, job_id: str) -> bool:
        with self._tx():
            cur = self._db.execute("UPDATE jobs SET state = ?, stage = ?, finished = ? WHERE id = ? AND state = ?",
                                   (CANCELLED, "cancelled before it started", time.time(), job_id, QUEUED))
            if cur.rowcount:
                self.update(job_id, log="cancelled while queued")
            return bool(cur.rowcount)

    def release(self, job_id: str, owner: str | None, resume: bool, max_attempts: int, why: str,
                graceful: bool = False) -> str | None:
        """A running job whose run ended without finishing it (its worker died, or was stopped:
        `graceful`): cancelled if a cancel was asked, else re-queued to resume from its
        checkpoint, or interrupted when resuming is off or it keeps dying (a graceful stop is
        not dying). Returns the new state (None: not running, or held by another owner now)."""
        with self._tx():
            row = self._db.execute("SELECT attempts, stop_request, owner FROM jobs WHERE id = ? AND state = ?",
                                   (job_id, RUNNING)).fetchone()
            if row is None or (owner is not None and row[2] != owner):
                return None
            attempts, request = row[0], row[1]
            free = {"owner": None, "heartbeat": None, "stop_request": None}
            if request == CANCEL:
                self.update(job_id, state=CANCELLED, stage="cancelled", finished=time.time(), log=f"cancelled ({why})",
                            **free)
                return CANCELLED
            if resume and (graceful or attempts < max_attempts):
                # the last attempt's progress, metrics and curve are not this queued job's: the next
                # attempt reports afresh from its checkpoint (else the UI showed them as current)
                self.update(job_id, state=QUEUED, stage="queued to resume", log=f"{why}: queued to resume from the "
                            "last checkpoint", progress=0.0, metrics={}, history=[], **free)
                return QUEUED
            given_up = f"{why}, after {attempts} attempts" if resume else why
            self.update(job_id, state=INTERRUPTED, stage="interrupted", finished=time.time(),
                        error=f"the job stopped before it finished ({given_up})", log=f"interrupted ({given_up})",
                        **free)
            return INTERRUPTED

    def requeue_dead(self, resume: bool, max_attempts: int, timeout: float = AppConfig.claim_timeout) -> list[str]:
        """Release the running jobs whose owner is dead: surely gone (see `Owners.dead`), or silent
        for `timeout` seconds. A live owner refreshes its heartbeat far more often than that, so
        its jobs are never taken over. Returns the ids released."""
        stale = time.time() - timeout
        with self._lock:
            rows = self._db.execute("SELECT id, owner, heartbeat FROM jobs WHERE state = ?", (RUNNING,)).fetchall()
        released = []
        for job_id, owner, beat in rows:
            gone = self.owners.dead(owner)
            if gone or beat is None or beat < stale:
                why = ("the server restarted while it was running" if not owner else
                       "its worker exited" if gone else f"its worker sent no heartbeat for {timeout:.0f} s")
                if self.release(job_id, owner, resume, max_attempts, why) is not None:
                    released.append(job_id)
        return released

    def recover(self, resume: bool, max_attempts: int, timeout: float = AppConfig.claim_timeout,
                queued: bool = True) -> list[str]:
        """At a server's start: jobs left running by a process that died are re-queued to resume
        from their checkpoint, or marked interrupted (jobs of live workers are left alone); with
        `queued` and resuming off, queued jobs are interrupted too. Returns the ids touched."""
        touched = self.requeue_dead(resume, max_attempts, timeout)
        if queued and not resume:
            with self._tx():
                for (job_id,) in self._db.execute("SELECT id FROM jobs WHERE state = ?", (QUEUED,)).fetchall():
                    self.update(job_id, state=INTERRUPTED, stage="interrupted", finished=time.time(),
                                error="the server restarted before this job started", log="interrupted while queued")
                    touched.append(job_id)
        return touched
