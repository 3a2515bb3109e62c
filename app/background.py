"""Run the app with uvicorn in a background thread on a free loopback port: for the browser and
load tests and the screenshot script, which need a real server rather than a TestClient."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from fastapi import FastAPI


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(app: FastAPI, port: int | None = None, ready_timeout: float = 120.0) -> Iterator[str]:
    """Yield the base URL once /health says every bundle finished loading; stop the server after."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                            timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, name="genrl-uvicorn", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_timeout
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=5).json()["status"] != "loading":
                    break
            except (httpx.HTTPError, ValueError):
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the app did not come up on {url} within {ready_timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)
