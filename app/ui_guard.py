"""The UI's own API (Gradio's /ui/gradio_api/...) held to the REST rules (issue 26).

Gradio serves a second door beside REST: uploads, file downloads and every UI event are callable
by any HTTP client, not only by the page. Three pieces close it:

- `GuardedBlocks` checks each event's inputs before Gradio touches them: the right number, the right
  types, and a file only when it is an upload Gradio received (never a server path, which Gradio
  would otherwise copy into its cache and serve). A refusal is a `Refusal`: a short message, no
  traceback in the log.
- `UIGuard`, an ASGI middleware in front of the mounted app, asks for the API token (when the server
  has one) on uploads and file downloads, answers unknown event names and indices with a 404, and
  gives `/run/...` refusals their 4xx status (Gradio answers every error there with a 500).
- The event handlers themselves (app/ui.py) check the token of each event that starts work.
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import gradio as gr
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import AppError
from app.service import Services

log = logging.getLogger("genrl.app")

TOKEN_COOKIE = "genrl_token"  # set by the page from its token box: the browser's uploads and videos carry it
MAX_EVENT_BYTES = 1 << 20  # an event's JSON names files, never holds them: 1 MB is plenty
NOT_AN_UPLOAD = ("a video prompt must be uploaded to this UI first (its video box, or POST "
                 "/ui/gradio_api/upload); a server path is not accepted")

# Set per /run/ request by UIGuard; a Refusal raised while serving it writes its status here, in the
# request's own context (Gradio runs handlers in threads that copy it), so UIGuard can answer with it.
_status: contextvars.ContextVar[dict[str, int] | None] = contextvars.ContextVar("genrl_ui_status", default=None)


class Refusal(gr.Error):
    """A request the UI will not serve: shown as a toast, never logged with a traceback."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail, print_exception=False)
        self.status = status


def refuse(status: int, detail: str, retry_after: int | None = None) -> Refusal:
    """The Refusal to raise for `status`, remembered for UIGuard when the request came by /run/
    (with the seconds of a 429's Retry-After, as REST sends them)."""
    holder = _status.get()
    if holder is not None:
        holder["status"] = status
        if retry_after is not None:
            holder["retry_after"] = retry_after
    return Refusal(status, detail)


def ui_refusal(exc: AppError, token_message: str) -> Refusal:
    """An AppError as the UI says it: a missing token is asked for in the token box, not as a header."""
    return refuse(exc.status, token_message if exc.status == 401 else exc.detail, exc.retry_after)


def _file_paths(value: Any) -> Iterator[Any]:
    """Every `path` of a file payload anywhere in an event's input (Gradio takes any dict with one)."""
    if isinstance(value, dict):
        if "path" in value:
            yield value["path"]
        for v in value.values():
            yield from _file_paths(v)
    elif isinstance(value, list):
        for v in value:
            yield from _file_paths(v)


def _wrong_type(block: Any, value: Any) -> str | None:
    """What an input should have been, when `value` is not that; None when it is fine."""
    if value is None:
        return None
    if isinstance(block, gr.Number | gr.Slider):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a number"
    if isinstance(block, gr.Textbox | gr.Dropdown | gr.Radio):
        return None if isinstance(value, str) else "text"
    if isinstance(block, gr.Video):
        return None if isinstance(value, dict) else "an uploaded file"
    return None


class GuardedBlocks(gr.Blocks):
    """gr.Blocks whose events refuse malformed inputs and non-upload files before Gradio processes them,
    and which calls `after_files` (the upload retention) once an event's output files are in its cache."""

    after_files: Callable[[], Any] | None = None

    def is_upload(self, path: Any) -> bool:
        """Whether `path` is a file Gradio's upload route wrote for this app (in its upload folder)."""
        if not isinstance(path, str) or path not in self.upload_file_set:
            return False
        try:
            return Path(path).resolve().is_relative_to(Path(self.GRADIO_CACHE).resolve())
        except (OSError, ValueError):
            return False

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any,
                              explicit_call: bool = False) -> Any:
        name = block_fn.name or "this event"
        wanted = len(block_fn.inputs)
        if not isinstance(inputs, list) or len(inputs) != wanted:
            got = len(inputs) if isinstance(inputs, list) else type(inputs).__name__
            raise refuse(422, f"{name} takes {wanted} inputs, got {got}")
        for block, value in zip(block_fn.inputs, inputs, strict=True):
            if getattr(block, "stateful", False):
                continue  # Gradio uses the session's own value, whatever the client sent
            want = _wrong_type(block, value)
            if want:
                label = getattr(block, "label", None) or type(block).__name__
                raise refuse(422, f"{label}: expected {want}, got {type(value).__name__}")
        # the same answer whether or not such a file exists: the refusal tells nothing about the server
        if not all(self.is_upload(p) for p in _file_paths(inputs)):
            raise refuse(400, NOT_AN_UPLOAD)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except Refusal:
            raise
        except gr.Error as exc:  # Gradio's own checks (a choice not offered, a number out of range)
            raise refuse(422, exc.message) from None
        except Exception as exc:  # anything else Gradio could not make of the client's input
            log.info("UI event %s: input refused (%s: %s)", name, type(exc).__name__, str(exc)[:200])
            raise refuse(422, f"{name}: an input is not of the expected form") from None

    async def postprocess_data(self, block_fn: Any, predictions: Any, state: Any) -> list[Any]:
        outputs = await super().postprocess_data(block_fn, predictions, state)
        # a shown video is a copy in Gradio's cache: held to the same size limit as uploads, at once
        # rather than at the next upload (the new copy is the newest file, so it stays)
        if self.after_files is not None and any(True for _ in _file_paths(outputs)):
            await run_in_threadpool(self.after_files)
        return outputs


def request_token(scope: Scope) -> str | None:
    """The token a request carries: an Authorization bearer, an X-API-Token header, or the page's cookie."""
    headers = Headers(scope=scope)
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if "x-api-token" in headers:
        return headers["x-api-token"]
    cookie: SimpleCookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header is no token, not an error
        return None
    morsel = cookie.get(TOKEN_COOKIE)
    return unquote(morsel.value) if morsel else None


class UIGuard:
    """ASGI middleware for the mounted UI's API, under `prefix` (e.g. /ui/gradio_api)."""

    EVENT_ROUTES = ("/run/", "/api/", "/call/", "/queue/join")

    def __init__(self, app: ASGIApp, svc: Services, blocks: GuardedBlocks, prefix: str):
        self.app, self.svc, self.blocks, self.prefix = app, svc, blocks, prefix.rstrip("/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(self.prefix + "/"):
            return await self.app(scope, receive, send)
        route, method = path[len(self.prefix):], scope["method"]
        if route.rstrip("/") == "/process_recording":  # Gradio's screen-recorder upload: this UI has none
            return await _answer(scope, receive, send, 404, "this UI takes no screen recordings")
        is_file = route.startswith(("/file=", "/file/"))
        if route in ("/upload", "/upload_progress") or is_file:
            try:
                self.svc.check_token(request_token(scope))
            except AppError:
                what = "show its files" if is_file else "take uploads"
                return await _answer(scope, receive, send, 401, f"this server needs its API token to {what}: "
                                                                "enter it in the API token box")
            if is_file and "://" in unquote(route):  # Gradio would fetch a URL for the client: not ours
                return await _answer(scope, receive, send, 404, "not a file of this app")
            await self.app(scope, receive, send)
            if route == "/upload" and method == "POST":
                await run_in_threadpool(self.svc.prune_uploads)  # each upload makes room under the limits
            return None
        if method == "POST" and route.startswith(self.EVENT_ROUTES):
            return await self._event(scope, receive, send, route)
        return await self.app(scope, receive, send)

    async def _event(self, scope: Scope, receive: Receive, send: Send, route: str) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_EVENT_BYTES:
                return await _answer(scope, receive, send, 413, "an event's request body is over 1 MB; "
                                                                "upload files first and send their paths")
        problem = self._unknown_event(route, body)
        if problem:
            return await _answer(scope, receive, send, 404, problem)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        if not route.startswith(("/run/", "/api/")):
            return await self.app(scope, replay, send)
        # Gradio answers every failure of a direct call with a 500: a refusal gets its own status
        holder: dict[str, int] = {}
        token = _status.set(holder)

        async def send_with_status(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 500 and "status" in holder:
                message = {**message, "status": holder["status"]}
                if "retry_after" in holder:  # a 429 says when to come back, as REST's do
                    message["headers"] = [*message.get("headers", []),
                                          (b"retry-after", str(holder["retry_after"]).encode())]
            await send(message)

        try:
            await self.app(scope, replay, send_with_status)
        finally:
            _status.reset(token)
        return None

    def _unknown_event(self, route: str, body: bytes) -> str | None:
        """Why Gradio could not find the event a call names (Gradio's own answer is a 500), or None."""
        try:
            parsed = json.loads(body)
        except ValueError:
            return None  # Gradio refuses a body that is not JSON with a 422 of its own
        fns = self.blocks.fns
        fn_index = parsed.get("fn_index") if isinstance(parsed, dict) else None
        if fn_index is not None:
            if isinstance(fn_index, bool) or not isinstance(fn_index, int) or fn_index not in fns:
                return f"no UI event with fn_index {fn_index!r}"
            return None
        if route == "/queue/join":
            return "a queued event needs its fn_index" if isinstance(parsed, dict) else None
        api_name = route.strip("/").split("/")[-1]
        public = route.startswith("/call/v2/")  # that route looks the name up among the documented ones only
        if not any(fn.api_name == api_name and (fn.api_visibility == "public" or not public)
                   for fn in fns.values()):
            return f"no UI endpoint {api_name!r}; the UI's endpoints are listed at /ui/gradio_api/info"
        return None


def guard_ui(app: FastAPI, svc: Services, blocks: GuardedBlocks, path: str) -> None:
    """Hold the Gradio app mounted at `path` of `app` to the REST rules (see the module's text)."""
    gradio_app = next(r.app for r in app.routes if isinstance(r, Mount) and r.path == path)

    async def bad_arguments(request: Request, exc: Exception) -> JSONResponse:
        # Gradio's routes raise TypeError for a client's malformed arguments (a /call/v2 keyword that
        # the event lacks or misses, an upload field that is not a file); handlers' own errors never
        # get here (Gradio answers those itself), so this is the client's mistake: a 422, no traceback
        log.info("UI API %s: refused (%s)", request.url.path, str(exc)[:200])
        return JSONResponse({"detail": str(exc)[:300]}, status_code=422)

    gradio_app.add_exception_handler(TypeError, bad_arguments)
    app.add_middleware(UIGuard, svc=svc, blocks=blocks, prefix=f"{path}/gradio_api")


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
