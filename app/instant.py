"""Instant runs (issue 28, zero-shot use): what the bundle's generalist did for one prompt, at once
and without learning. Each run is a folder of the cache named by an id the server chose (a digest
of what the run depends on), holding its result and its two videos; a client names a run by that
id alone, never by a path.
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from genrl_core.fileio import atomic_write

RUN_ID = re.compile(r"[0-9a-f]{24}")
# name -> file in a run's folder: the only files a download can reach
VIDEOS = {"real": "real.mp4", "imagined": "imagined.mp4"}
RESULT = "result.json"  # written last: a folder without it is a run still being made


@dataclass(frozen=True)
class Instant:
    """One instant run: the real-env evaluation (run_policy's result, without paths) and timings."""

    id: str
    body: str
    prompt: str
    policy: str                 # the InstantPolicy's slug
    evaluation: dict[str, Any]
    seconds: dict[str, float]   # policy (GenRL.act), imagined, real, total
    cached: bool = False        # served from an earlier run of the same request

    def public(self) -> dict[str, Any]:
        """What REST answers: the result, the timings and the URLs of the run's videos."""
        ev = self.evaluation
        return {"id": self.id, "body": self.body, "prompt": self.prompt, "policy": self.policy,
                "task": ev["task"], "episodes": len(ev["returns"]), "returns": ev["returns"],
                "mean_return": ev["mean_return"], "normalised": ev["normalised"],
                "random_return": ev.get("random_return"), "expert_return": ev.get("expert_return"),
                "seconds": self.seconds, "cached": self.cached,
                "urls": {name: f"/act/{self.id}/{name}" for name in VIDEOS}}


class InstantCache:
    """Instant runs on disk under `folder`, the `keep` most recent kept."""

    def __init__(self, folder: Path, keep: int = 256):
        self.folder, self.keep = folder, keep
        self._lock = threading.Lock()

    def _dir(self, run_id: str) -> Path:
        return self.folder / run_id

    def get(self, run_id: str) -> Instant | None:
        """The finished run of that id, or None."""
        if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):
            return None
        try:
            raw = json.loads((self._dir(run_id) / RESULT).read_text())
        except (OSError, ValueError):
            return None
        return Instant(**raw)

    def put(self, run: Instant) -> Instant:
        """Record a run whose videos are already in its folder; older runs beyond `keep` go."""
        text = json.dumps({k: v for k, v in asdict(run).items() if k != "cached"})  # a property of an answer
        atomic_write(self._dir(run.id) / RESULT, lambda f: f.write(text.encode()))
        self.prune()
        return run

    def file(self, run_id: str, name: str) -> Path:
        """Where video `name` (a key of VIDEOS) of a run is written."""
        return self._dir(run_id) / VIDEOS[name]

    def prune(self) -> None:
        # every folder counts, a run that failed half-way too; the one being made is the newest
        with self._lock:
            runs = sorted((p for p in self.folder.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
            for old in runs[: max(0, len(runs) - self.keep)]:
                shutil.rmtree(old, ignore_errors=True)
