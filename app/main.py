"""The app: one FastAPI server with the REST API and the Gradio UI mounted at /ui.

    genrl serve                                   # every shipped bundle on http://127.0.0.1:7860/
    uvicorn app.main:app --host 0.0.0.0           # the same, configured by GENRL_* env vars
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no phoning home (and no DNS stalls offline)

from fastapi import FastAPI, Request  # noqa: E402
from fastapi.exception_handlers import http_exception_handler  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, RedirectResponse, Response  # noqa: E402
from fastapi_offline import FastAPIOffline  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402
from starlette.routing import Match  # noqa: E402
from starlette.types import ASGIApp, Message, Receive, Scope, Send  # noqa: E402

from app.api import build_router, validation_message  # noqa: E402
from app.config import AppConfig  # noqa: E402
from app.errors import AppError  # noqa: E402
from app.service import Services  # noqa: E402

UI_PATH = "/ui"


class BodyLimit:
    """Refuse request bodies over `limit` bytes with 413, by Content-Length at once or while
    streaming (chunked uploads), before anything is written to disk."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            response = JSONResponse({"detail": f"the request body ({int(length) / 2**20:.1f} MB) is larger than "
                                               f"the {self.limit / 2**20:.0f} MB limit"}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise AppError(413, f"the request body is larger than the {self.limit / 2**20:.0f} MB limit")
            return message

        await self.app(scope, limited, send)


HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(app: FastAPI, scope: Scope) -> list[str]:
    """Every method some route serves at this request's path. Starlette's 405 names only the methods
    of the first route whose path matched (GET /learn's, not POST /learn's). Asked of each route by
    `matches` with the method swapped, so routers nested by include_router are searched too."""
    return [method for method in HTTP_METHODS
            if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in app.router.routes)]


def create_app(bundle: str | Path | list[str | Path] | None = None, db: str | Path | None = None,
               max_jobs: int | None = None, token: str | None = None, *, cfg: AppConfig | None = None,
               ui: bool = True, **settings: Any) -> FastAPI:
    """Build the app. Arguments override GENRL_* env vars; `settings` are other AppConfig fields
    (runs, device, default_updates, eval_episodes, max_queue, max_upload_mb, ...)."""
    cfg = cfg or AppConfig.from_env(bundles=bundle, db=db, max_jobs=max_jobs, token=token, **settings)
    svc = Services.build(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc.start()
        try:
            yield
        finally:
            svc.stop()

    # /docs and /redoc from assets that ship in the fastapi-offline wheel: no CDN, so they work offline
    app = FastAPIOffline(title="GenRL", version="0.1.0", lifespan=lifespan, static_url="/docs-static",
                  description="Prompt -> target -> policy learned in a world model. Jobs persist in SQLite; "
                              "artefacts download by job id. The UI is at /ui.")
    app.state.services = svc

    @app.exception_handler(AppError)
    async def app_error(request: Request, exc: AppError) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)  # Retry-After

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 405:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join(allowed_methods(app, request.scope))}
        return await http_exception_handler(request, exc)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_message(list(exc.errors()))}, status_code=422)

    app.include_router(build_router(svc))

    if ui:
        # Gradio's temporary files (the UI's uploads, copies of what it shows) in this app's own runs
        # folder, not the machine's shared /tmp/gradio, whose files anyone there can add to: Gradio
        # serves what is in its folder. Read by Gradio when the UI is built, and process-wide (an env
        # var): one app per process has its own.
        ui_files = (cfg.runs / "ui-files").resolve()
        ui_files.mkdir(parents=True, exist_ok=True)
        os.environ["GRADIO_TEMP_DIR"] = str(ui_files)
        os.environ["GRADIO_EXAMPLES_CACHE"] = str(ui_files / "examples")  # else ./.gradio, served too
        svc.ui_files = ui_files

        import gradio as gr

        from app.ui import build_ui
        from app.ui_guard import guard_ui

        @app.get("/", include_in_schema=False)
        def root() -> RedirectResponse:
            return RedirectResponse(f"{UI_PATH}/")

        blocks = build_ui(svc)
        # Gradio's file route serves only what the UI shows (job artefacts, cached targets and replays),
        # never the job database, other users' uploads or the policy store
        shown = [cfg.runs / "jobs", cfg.runs / "cache"]
        for folder in shown:
            folder.mkdir(parents=True, exist_ok=True)
        hidden = [cfg.db, cfg.db.with_name(cfg.db.name + "-wal"), cfg.db.with_name(cfg.db.name + "-shm"),
                  svc.uploads, cfg.runs / "policies"]
        app = gr.mount_gradio_app(app, blocks, path=UI_PATH, allowed_paths=[str(p.resolve()) for p in shown],
                                  blocked_paths=[str(p.resolve()) for p in hidden],
                                  max_file_size=cfg.max_upload_bytes, footer_links=["api"], ssr_mode=False,
                                  css=_CSS)
        # the UI's API (uploads, files, events) held to REST's rules: the token, 4xx answers
        guard_ui(app, svc, blocks, UI_PATH)
    app.add_middleware(BodyLimit, limit=cfg.max_upload_bytes)  # outermost: before anything reads a body
    return app


_CSS = ".genrl-video video { max-height: 256px; object-fit: contain; image-rendering: pixelated; }"


def serve(bundle: str | None = None, host: str = "127.0.0.1", port: int = 7860, db: str | None = None,
          max_jobs: int = 1, token: str | None = None, **settings: Any) -> None:
    """Start the app with uvicorn and print its URL (`genrl serve` calls this)."""
    import uvicorn

    t0 = time.perf_counter()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    app = create_app(bundle, db=db, max_jobs=max_jobs, token=token or None, **settings)
    svc: Services = app.state.services if hasattr(app.state, "services") else None  # type: ignore[assignment]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    print(f"[serve] GenRL app on http://{shown}:{port}/  (UI {UI_PATH}/, REST docs /docs); "
          f"built in {time.perf_counter() - t0:.1f} s", flush=True)
    if svc is not None:
        print(f"[serve] jobs in {svc.cfg.db}, artefacts in {svc.cfg.runs}, bodies: {', '.join(svc.body_names())}"
              + (" (API token required for learn/cancel)" if svc.cfg.token else ""), flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=30)


def __getattr__(name: str) -> Any:
    # `uvicorn app.main:app` builds the app from GENRL_* env vars on first access, not at import
    if name == "app":
        value = globals()["app"] = create_app()
        return value
    raise AttributeError(name)
