"""`genrl`, the console script: the core's commands (genrl_core/cli.py) and the app's, `serve` and
`worker`, which only the app knows how to run (genrl_core never imports the app).

    genrl serve                                   # the web app (REST API + UI) on every shipped bundle
    genrl worker --runs runs/app --device cuda:1  # one more process running the server's queued jobs
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from genrl_core import cli as core
from genrl_core.cli_flags import add_flags
from genrl_core.errors import ConfigError

SERVED_BUNDLES = {"default": None, "help": "bundle folder(s), one per body, comma-separated (default: GENRL_BUNDLE, "
                                           "else every bundle in checkpoints/, the walker's first)"}


def _cmd_serve(args: argparse.Namespace) -> None:
    from app.main import serve

    serve(bundle=args.bundle, host=args.host, port=args.port, db=args.db, max_jobs=args.max_jobs, token=args.token,
          workers=args.workers, executor=args.executor, ray_address=args.ray_address, runs=args.runs)


def _cmd_worker(args: argparse.Namespace) -> None:
    from app.config import AppConfig
    from app.workers import run_worker

    if args.jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {args.jobs}")
    if args.claim_timeout is not None and args.claim_timeout <= 0:
        raise ConfigError(f"--claim-timeout must be positive, got {args.claim_timeout}")
    run_worker(AppConfig.from_env(bundles=args.bundle, db=args.db, runs=args.runs, device=args.device,
                                  max_jobs=args.jobs, claim_timeout=args.claim_timeout))


def _add_job_store_flags(p: argparse.ArgumentParser, runs_help: str) -> None:
    """Where the server's jobs live: the server and its workers name the same place."""
    p.add_argument("--db", default=None, help="SQLite job database (default: RUNS/jobs.sqlite)")
    p.add_argument("--runs", default=None, help=runs_help)


def add_app_commands(sub: argparse._SubParsersAction) -> None:
    """`serve` and `worker`, beside the core's subcommands."""
    from app.config import AppConfig

    p = sub.add_parser("serve", help="start the web app (REST API + UI) on a bundle")
    add_flags(p, "bundle", bundle=SERVED_BUNDLES)
    _add_job_store_flags(p, "folder of job artefacts, uploads, learned policies and caches, and of the job database "
                            "unless --db says otherwise (default: GENRL_RUNS, else runs/app)")
    p.add_argument("--host", default="127.0.0.1", help="0.0.0.0 to listen on all interfaces")
    p.add_argument("--port", type=int, default=7860, help="port")
    p.add_argument("--max-jobs", type=int, default=1, help="learning jobs that run at once; others queue")
    p.add_argument("--token", default=None, help="API token required to start/cancel jobs (or GENRL_API_TOKEN)")
    p.add_argument("--workers", type=int, default=None,
                   help="run jobs in N worker processes (one per GPU) instead of the server's threads")
    p.add_argument("--executor", choices=("local", "ray"), default=None,
                   help="local (default) | ray: each job a Ray task with one GPU (or CPU); Ray is in requirements")
    p.add_argument("--ray-address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local one)")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("worker", help="run queued learning jobs of a server's job database (e.g. one per GPU)")
    add_flags(p, "bundle", "device",
              bundle={"default": None, "help": "bundle folder(s), comma-separated, as the server's "
                                               "(default: GENRL_BUNDLE, else every bundle in checkpoints/)"},
              device={"default": None, "help": "cpu | cuda | cuda:K | auto (default: GENRL_DEVICE, else auto)"})
    _add_job_store_flags(p, "the server's runs folder (default: GENRL_RUNS, else runs/app)")
    p.add_argument("--jobs", type=int, default=1, help="jobs this worker runs at once")
    p.add_argument("--claim-timeout", type=float, default=None,
                   help="seconds without a heartbeat before a dead worker's job is re-queued "
                        f"(default: GENRL_CLAIM_TIMEOUT, else {AppConfig.claim_timeout:g})")
    p.set_defaults(func=_cmd_worker)


def build_parser() -> argparse.ArgumentParser:
    return core.build_parser(add_app_commands)


def main(argv: Sequence[str] | None = None) -> int:
    return core.main(argv, build_parser())


if __name__ == "__main__":
    sys.exit(main())
