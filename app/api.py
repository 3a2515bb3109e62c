"""REST routes (OpenAPI at /docs). Blocking work runs in the thread pool (plain `def` routes) or in
job workers; the event loop only parses requests and streams files."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.errors import AppError
from app.media import save_upload
from app.service import MAX_STEPS, MIN_STEPS, Services

JOB_ID = Path(pattern=r"^[0-9a-f]{16}$", description="a job id from /learn or /jobs")
Reward = Literal["max_cosine", "cosine", "kl"]


class LearnOptions(BaseModel):
    """A policy-learning request. Unknown fields are refused, so a typo never silently changes a run."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description="what the body should do, e.g. 'stand up straight'")
    body: str | None = Field(None, description="body to learn for (GET /bodies); default: the first served")
    steps: int = Field(32, ge=MIN_STEPS, le=MAX_STEPS, description="target / imagined video length")
    updates: int | None = Field(None, ge=1, description="behaviour-learning updates (default: server's)")
    reward: Reward | None = Field(None, description="reward kind: max_cosine | cosine | kl")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    use_aligner: bool | None = Field(None, description="map the prompt into the video region (default true)")
    task: str | None = Field(None, description="real-env evaluation task (default: nearest to the prompt)")
    eval_episodes: int | None = Field(None, ge=0, description="real-env evaluation episodes (0: skip)")


def validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def _accepted(svc: Services, job: dict[str, Any]) -> JSONResponse:
    view = svc.view(job)
    return JSONResponse(view, status_code=202, headers={"Location": view["urls"]["self"]})


def build_router(svc: Services) -> APIRouter:
    router = APIRouter()

    def require_token(authorization: Annotated[str | None, Header()] = None,
                      x_api_token: Annotated[str | None, Header()] = None) -> None:
        given = x_api_token
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        svc.check_token(given)

    guarded = [Depends(require_token)]

    @router.get("/health", tags=["server"], summary="liveness, bundles loaded, queue and inference load")
    def health() -> dict[str, Any]:
        return svc.health()

    @router.get("/bodies", tags=["server"], summary="bodies served, their bundles and tasks")
    def bodies() -> list[dict[str, Any]]:
        return svc.bodies.info()

    @router.get("/target", tags=["targets"], response_class=FileResponse,
                responses={200: {"content": {"video/mp4": {}}, "description": "the decoded target as mp4"}},
                summary="decode what the model understands by a prompt, as an mp4")
    def target(prompt: Annotated[str, Query(description="text prompt")],
               steps: Annotated[int, Query(ge=MIN_STEPS, le=MAX_STEPS)] = 32,
               body: str | None = None, use_aligner: bool = True) -> FileResponse:
        path = svc.render_target(body, prompt, steps, use_aligner)
        return FileResponse(path, media_type="video/mp4", filename="target.mp4")

    @router.post("/target", tags=["targets"], response_class=FileResponse, dependencies=guarded,
                 responses={200: {"content": {"video/mp4": {}}}},
                 openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["video"], "properties": {
                         "video": {"type": "string", "format": "binary"}, "steps": {"type": "integer"},
                         "body": {"type": "string"}, "use_aligner": {"type": "boolean"}}}}}}},
                 summary="decode the target of a video prompt (multipart upload; needs the token when the "
                         "server has one: uploads cost disk and decoding)")
    async def target_video(request: Request) -> FileResponse:
        fields, video = await _parse_form(request)
        extra = set(fields) - {"steps", "body", "use_aligner"}
        if extra:
            raise AppError(422, f"unknown field(s) {', '.join(sorted(extra))}; valid: video, steps, body, use_aligner")
        if video is None:
            raise AppError(400, "upload the video prompt as the multipart field 'video'")
        steps = _int(fields.get("steps", 32), "steps")
        use_aligner = _bool(fields.get("use_aligner", "true"), "use_aligner")
        path = await run_in_threadpool(svc.render_target, fields.get("body"), video, steps, use_aligner)
        return FileResponse(path, media_type="video/mp4", filename="target.mp4")

    @router.get("/learn", tags=["jobs"], status_code=202, dependencies=guarded,
                summary="start learning a policy for a text prompt; returns the job at once")
    def learn_get(options: Annotated[LearnOptions, Query()]) -> JSONResponse:
        return _accepted(svc, svc.submit(**options.model_dump()))

    @router.post("/learn", tags=["jobs"], status_code=202, dependencies=guarded,
                 openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": LearnOptions.model_json_schema()},
                     "multipart/form-data": {"schema": {"type": "object", "properties": {
                         "video": {"type": "string", "format": "binary", "description": "video prompt"},
                         "options": {"type": "string", "description": "LearnOptions as a JSON string"}}}}}}},
                 summary="start learning a policy: JSON options, or multipart with a video prompt upload")
    async def learn_post(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        video = None
        if ctype.startswith("multipart/form-data"):
            fields, video = await _parse_form(request)
            try:
                raw = json.loads(fields.pop("options")) if "options" in fields else {}
            except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
                raise AppError(400, "the 'options' field is not valid JSON (or nested too deeply)") from None
            if not isinstance(raw, dict):
                raise AppError(422, "options must be a JSON object")
            raw.update(fields)
        elif ctype.startswith("application/json") or not ctype:
            try:
                raw = await request.json()
            except (ValueError, RecursionError):
                raise AppError(400, "the body is not valid JSON (or nested too deeply)") from None
            if not isinstance(raw, dict):
                raise AppError(422, "the body must be a JSON object of options (see LearnOptions in /docs)")
        else:
            raise AppError(415, f"send application/json or multipart/form-data, not {ctype!r}")
        try:
            options = LearnOptions.model_validate(raw)
        except ValidationError as exc:
            raise AppError(422, validation_message(exc.errors())) from None
        job = await run_in_threadpool(lambda: svc.submit(video=video, **options.model_dump()))
        return _accepted(svc, job)

    @router.get("/jobs", tags=["jobs"], summary="recent jobs, newest first")
    def jobs(state: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] | None = None,
             body: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return [svc.view(j) for j in svc.store.list(state=state, body=body, limit=limit)]

    @router.get("/jobs/{job_id}", tags=["jobs"], summary="one job: state, queue position, progress, metrics, t_a, "
                                                          "log, artefact URLs")
    def job(job_id: Annotated[str, JOB_ID]) -> dict[str, Any]:
        return svc.view(svc.job(job_id))

    @router.post("/jobs/{job_id}/cancel", tags=["jobs"], dependencies=guarded,
                 summary="cancel a queued or running job (learning checkpoints, so the same request resumes)")
    def cancel(job_id: Annotated[str, JOB_ID]) -> dict[str, Any]:
        return svc.view(svc.jobs.cancel(job_id))

    @router.get("/jobs/{job_id}/artefacts/{name}", tags=["jobs"], response_class=FileResponse,
                summary="download an artefact: target | imagined | real (mp4), alignment (png), policy (.pt)")
    def artefact(job_id: Annotated[str, JOB_ID],
                 name: Annotated[str, Path(pattern=r"^[a-z]{1,20}$")]) -> FileResponse:
        path, media_type = svc.jobs.artefact_path(job_id, name)
        return FileResponse(path, media_type=media_type, filename=f"{job_id}-{path.name}")

    @router.get("/policies", tags=["jobs"], summary="finished policies of a body, with the job that showed each")
    def policies(body: str | None = None) -> list[dict[str, Any]]:
        return svc.policies(body)

    async def _parse_form(request: Request) -> tuple[dict[str, str], Any]:
        form = await request.form(max_files=1, max_fields=20)
        fields: dict[str, str] = {}
        video = None
        for key, value in form.multi_items():
            if hasattr(value, "read"):  # an UploadFile
                if key != "video":
                    raise AppError(422, f"unexpected file field {key!r}; upload the video prompt as 'video'")
                video = await run_in_threadpool(save_upload, value.file, value.filename, svc.uploads,
                                                svc.cfg.max_upload_bytes)
                await run_in_threadpool(svc.prune_uploads)  # each upload makes room under the limits
            else:
                fields[key] = value
        return fields, video

    return router


_TRUE, _FALSE = ("1", "true", "t", "yes", "y", "on"), ("0", "false", "f", "no", "n", "off")


def _bool(value: Any, name: str) -> bool:
    """A form field as a bool, by the same words GET's query parameters accept (pydantic's)."""
    text = str(value).strip().lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise AppError(422, f"{name} must be true or false, got {value!r}")


def _int(value: Any, name: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise AppError(422, f"{name} must be an integer, got {value!r}") from None
