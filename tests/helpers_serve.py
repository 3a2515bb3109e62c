"""`genrl serve` as a user starts it: the real command in a process of its own, for the tests that
need the server's own process (its command line, its memory)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from app.background import free_port

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def served(bundle: Path, runs: Path, log: Path, *args: str) -> Iterator[tuple[subprocess.Popen, str]]:
    """The serve process and its URL, once /health answers (it fails with the log's tail if the
    process dies or is not up within 4 minutes); stopped on exit."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--bundle", str(bundle), "--runs", str(runs),
                                 "--port", str(port), *args], cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        url, deadline = f"http://127.0.0.1:{port}", time.monotonic() + 240
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            time.sleep(0.5)
        yield proc, url
    finally:
        proc.terminate()
        proc.wait(60)
