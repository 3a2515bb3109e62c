"""App settings: defaults that work on a CPU laptop, overridable by arguments or GENRL_* env vars."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

SHIPPED_DIR = Path("checkpoints")
DEFAULT_BUNDLE = SHIPPED_DIR / "walker"  # served first: the body a request that names none gets


def shipped_bundles() -> list[Path]:
    """Every bundle shipped in checkpoints/ (a folder with a world model), the walker's first."""
    found = [f.parent for f in sorted(SHIPPED_DIR.glob("*/world_model.pt")) if (f.parent / "config.json").is_file()]
    return sorted(found, key=lambda d: d != DEFAULT_BUNDLE) or [DEFAULT_BUNDLE]


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


@dataclass
class AppConfig:
    bundles: list[Path] = field(default_factory=shipped_bundles)  # one per body (default: all shipped)
    db: Path = Path("runs/app/jobs.sqlite")          # SQLite job store
    runs: Path = Path("runs/app")                     # job artefacts, uploads, policies, caches
    device: str = "auto"                              # cpu | cuda | auto (cuda when available)
    max_jobs: int = 1                                 # jobs learning at once
    max_queue: int = 32                               # queued jobs beyond which /learn answers 429
    token: str | None = None                          # guards endpoints that start or cancel work
    resume: bool = True                               # restart: re-queue interrupted jobs (learn resumes)
    max_attempts: int = 3                             # ... but give up on a job that keeps dying
    default_updates: int | None = None               # learn updates when a request gives none (None: library default)
    max_updates: int = 100_000                        # refuse absurd requests
    eval_episodes: int = 1                            # real-env episodes per job by default (0: skip)
    max_eval_episodes: int = 5
    max_act_episodes: int = 5                         # real-env episodes an /act request may ask for
    max_upload_mb: float = 20.0                       # request bodies and video uploads
    upload_keep_hours: float = 24.0                   # uploads older than this are deleted (not those of live jobs)
    upload_keep_mb: float = 1024.0                    # ... and the oldest beyond this much in all
    inference_slots: int = 1                          # /target renders at once (CPU: one is fastest)
    inference_queue: int = 16                         # waiting /target requests beyond which 429
    target_cache: int = 256                           # decoded target mp4s kept on disk
    preload: bool = True                              # load bundles at start-up (in the background)
    behaviour_preset: str = "small"                   # learning defaults for what a job omits: tiny | small | paper
    workers: int = 0                                  # worker processes beside the web process (0: its threads)
    executor: str = "local"                           # local (this box) | ray (each job a Ray task)
    ray_address: str | None = None                    # Ray cluster to join (None: RAY_ADDRESS, else a local one)
    claim_timeout: float = 30.0                       # a running job silent this long is re-queued (dead worker)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @classmethod
    def from_env(cls, **overrides) -> AppConfig:
        """Settings from GENRL_* env vars (the Docker image and `uvicorn app.main:app` use these),
        then explicit overrides whose value is not None."""
        cfg = cls()
        bundles = _env("GENRL_BUNDLE")
        if bundles:
            cfg.bundles = [Path(b) for b in bundles.split(",") if b.strip()]
        runs = _env("GENRL_RUNS")
        if runs:
            cfg.runs = Path(runs)
        cfg.db = Path(_env("GENRL_DB", str(cfg.runs / "jobs.sqlite")))
        cfg.device = _env("GENRL_DEVICE", cfg.device)
        cfg.max_jobs = int(_env("GENRL_MAX_JOBS", str(cfg.max_jobs)))
        cfg.token = _env("GENRL_API_TOKEN")
        if _env("GENRL_UPDATES"):
            cfg.default_updates = int(_env("GENRL_UPDATES"))
        cfg.eval_episodes = int(_env("GENRL_EVAL_EPISODES", str(cfg.eval_episodes)))
        cfg.behaviour_preset = _env("GENRL_BEHAVIOUR_PRESET", cfg.behaviour_preset)
        cfg.max_upload_mb = float(_env("GENRL_MAX_UPLOAD_MB", str(cfg.max_upload_mb)))
        cfg.upload_keep_hours = float(_env("GENRL_UPLOAD_KEEP_HOURS", str(cfg.upload_keep_hours)))
        cfg.upload_keep_mb = float(_env("GENRL_UPLOAD_KEEP_MB", str(cfg.upload_keep_mb)))
        cfg.workers = int(_env("GENRL_WORKERS", str(cfg.workers)))
        cfg.executor = _env("GENRL_EXECUTOR", cfg.executor)
        cfg.ray_address = _env("GENRL_RAY_ADDRESS")
        cfg.claim_timeout = float(_env("GENRL_CLAIM_TIMEOUT", str(cfg.claim_timeout)))
        for key, value in overrides.items():
            if value is None:
                continue
            if not hasattr(cfg, key):
                raise TypeError(f"unknown app setting {key!r}")
            if key == "bundles":
                if isinstance(value, str):
                    value = value.split(",")
                value = [Path(b) for b in ([value] if isinstance(value, Path) else value) if str(b).strip()]
            elif key in ("db", "runs"):
                value = Path(value)
            setattr(cfg, key, value)
        if "db" not in overrides or overrides["db"] is None:
            if not _env("GENRL_DB"):
                cfg.db = cfg.runs / "jobs.sqlite"
        return cfg
