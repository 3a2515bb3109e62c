"""REST routes (OpenAPI at /docs). Blocking work runs in the thread pool (plain `def` routes) or in
job workers; the event loop only parses requests and streams files."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model, field_validator

from app.config import AppConfig
from app.errors import AppError, error_responses
from app.instant import VIDEOS
from app.job import Job
from app.job_recipe import ARTEFACTS
from app.service import Services
from genrl_core.config import BEHAVIOUR_INITS, MAX_TARGET_SAMPLES
from genrl_core.models.reward import REWARD_KINDS
from genrl_core.prompt import MAX_PROMPT_CHARS, MAX_STEPS, MIN_STEPS, PROMPT_PATTERN, STEPS_HELP

JOB_ID = Path(pattern=r"^[0-9a-f]{16}$", description="a job id from /learn or /jobs")
Reward = Literal[REWARD_KINDS]  # the kinds a request may pick (not the ladder's oracle:TASK)
Init = Literal[BEHAVIOUR_INITS]
InstantVideo = Literal[tuple(VIDEOS)]
# What a usable text prompt is, for the OpenAPI document only: the service checks it itself (in
# genrl_core/prompt.py) and answers 400 (empty, or only invisible characters) or 422 (over maxLength, or
# a character the pattern excludes) with a message that says so, rather than pydantic's generic wording.
PROMPT_SPEC = {"minLength": 1, "maxLength": MAX_PROMPT_CHARS, "pattern": PROMPT_PATTERN}
PROMPT_HELP = (f"what the body should do, e.g. 'stand up straight' (1-{MAX_PROMPT_CHARS} characters of plain text: "
               "no control characters, NUL, bidi overrides or invalid code points; not only invisible ones)")
BINARY = {"schema": {"type": "string", "format": "binary"}}

_LAX_INT = TypeAdapter(int)  # a form field's text as GET's query parameters read it: "8" and "8.0"


class LearnOptions(BaseModel):
    """A policy-learning request. Unknown fields are refused, so a typo never silently changes a run."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description=f"{PROMPT_HELP} (a multipart request may send a video instead)",
                               json_schema_extra=PROMPT_SPEC)
    body: str | None = Field(None, description="body to learn for (GET /bodies); default: the first served")
    steps: int = Field(32, ge=MIN_STEPS, le=MAX_STEPS, description=STEPS_HELP)
    # the maxima here are AppConfig's defaults; learn_options declares a server's own
    updates: int | None = Field(None, ge=1, le=AppConfig.max_updates,
                                description="behaviour-learning updates (default: server's)")
    reward: Reward | None = Field(None, description=f"reward kind: {' | '.join(REWARD_KINDS)}")
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    use_aligner: bool | None = Field(None, description="map the prompt into the video region (default true)")
    task: str | None = Field(None, description="real-env evaluation task (default: nearest to the prompt)")
    eval_episodes: int | None = Field(None, ge=0, le=AppConfig.max_eval_episodes,
                                      description="real-env evaluation episodes (0: skip)")
    init: Init | None = Field(None, description="scratch (default) | generalist: refine the bundle's generalist on "
                                                "this prompt (409 when the bundle has none)")
    target_samples: int | None = Field(None, ge=0, le=MAX_TARGET_SAMPLES,
                                       description="0: learn to match the connector's mode rollout (default); N: the "
                                                   "best of N sampled rollouts by the VLM (the job's target shows it)")

    @field_validator("steps", "updates", "seed", "eval_episodes", "target_samples", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        # JSON Schema's "integer" is any number with a zero fractional part, 8.0 as well as 8, while
        # pydantic's strict mode (JSON bodies', see learn_post) refuses every float: so that the schema
        # and the server agree, an integral float is the integer it is (8.5 stays refused)
        return int(value) if isinstance(value, float) and value.is_integer() else value


class TextLearnOptions(LearnOptions):
    """Options of a text-prompt request (GET query, JSON body): there the prompt is required."""

    prompt: str = Field(description=PROMPT_HELP, json_schema_extra=PROMPT_SPEC)


def task_field(tasks: list[str], what: str) -> Any:
    """The `task` option, its values (the served bodies' tasks) declared for the OpenAPI document
    only: the service checks it itself and answers 422 naming the body's valid tasks."""
    return (str | None, Field(None, description=what, json_schema_extra={"enum": [*tasks, None]}))


def learn_options(cfg: AppConfig, tasks: list[str]) -> tuple[type[LearnOptions], type[LearnOptions]]:
    """LearnOptions and TextLearnOptions with the caps of this server's `cfg` (max_updates,
    max_eval_episodes are settings) and its bodies' `tasks`, so its OpenAPI document declares what it
    enforces."""
    default = cfg.default_updates if cfg.default_updates is not None else "the library's"
    capped = {
        "task": task_field(tasks, LearnOptions.model_fields["task"].description),
        "updates": (int | None, Field(None, ge=1, le=cfg.max_updates,
                                      description=f"behaviour-learning updates (default: {default})")),
        "eval_episodes": (int | None, Field(None, ge=0, le=cfg.max_eval_episodes,
                                            description=f"real-env evaluation episodes (0: skip; default: "
                                                        f"{cfg.eval_episodes})")),
    }
    options = create_model("LearnOptions", __base__=LearnOptions, __doc__=LearnOptions.__doc__, **capped)
    text = create_model("TextLearnOptions", __base__=options, __doc__=TextLearnOptions.__doc__,
                        prompt=(str, TextLearnOptions.model_fields["prompt"]))
    return options, text


class ActOptions(BaseModel):
    """An instant request (GET /act): the bundle's generalist on a text prompt, no learning."""

    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(description=PROMPT_HELP, json_schema_extra=PROMPT_SPEC)
    body: str | None = Field(None, description="body to act for (GET /bodies); default: the first served")
    task: str | None = Field(None, description="real-env task to score on (default: nearest to the prompt)")
    # the maximum here is AppConfig's default; act_options declares a server's own
    episodes: int = Field(1, ge=1, le=AppConfig.max_act_episodes, description="real-env episodes")
    steps: int = Field(32, ge=MIN_STEPS, le=MAX_STEPS, description=f"length of the imagined rollout: {STEPS_HELP}")


def act_options(cfg: AppConfig, tasks: list[str]) -> type[ActOptions]:
    """ActOptions with this server's cap on episodes and its bodies' tasks, declared in its OpenAPI
    document."""
    return create_model("ActOptions", __base__=ActOptions, __doc__=ActOptions.__doc__,
                        task=task_field(tasks, ActOptions.model_fields["task"].description),
                        episodes=(int, Field(1, ge=1, le=cfg.max_act_episodes,
                                             description=f"real-env episodes (1-{cfg.max_act_episodes})")))


def form_properties(properties: dict[str, Any]) -> dict[str, Any]:
    """JSON-schema properties as multipart form fields: a form field is text and cannot be null (an
    option left out takes its default), so the null branch of each optional one goes."""
    fields = {}
    for name, spec in properties.items():
        spec = dict(spec)
        branches = [b for b in spec.pop("anyOf", []) if b.get("type") != "null"]
        if len(branches) == 1:
            spec = {**branches[0], **spec}
        elif branches:
            spec["anyOf"] = branches
        if "enum" in spec:
            spec["enum"] = [v for v in spec["enum"] if v is not None]
        if "default" in spec and spec["default"] is None:
            del spec["default"]
        fields[name] = spec
    return fields


def validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path"))
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "; ".join(parts) or "invalid request"


def _accepted(job: Job) -> JSONResponse:
    view = job.public()
    return JSONResponse(view, status_code=202, headers={"Location": view["urls"]["self"]})


def build_router(svc: Services) -> APIRouter:
    # BodyLimit answers 413 on any route whose request body is over the limit
    router = APIRouter(responses=error_responses(413))

    def require_token(authorization: Annotated[str | None, Header()] = None,
                      x_api_token: Annotated[str | None, Header()] = None) -> None:
        given = x_api_token
        if authorization and authorization.lower().startswith("bearer "):
            given = authorization[7:].strip()
        svc.check_token(given)

    guarded = [Depends(require_token)]
    tasks = svc.served_tasks()
    Options, TextOptions = learn_options(svc.cfg, tasks)  # noqa: N806 (classes)

    @router.get("/health", tags=["server"], summary="liveness, bundles loaded, queue and inference load")
    def health() -> dict[str, Any]:
        return svc.health()

    # load balancers' health checks often send HEAD: 200 while the server answers, no body, nothing
    # computed (a route of its own: FastAPI's GET routes do not take HEAD)
    @router.head("/health", tags=["server"], response_class=Response,
                 responses={200: {"description": "the server is up (GET /health tells more)"}},
                 summary="liveness for health checks: 200, no body")
    def health_head() -> Response:
        return Response(status_code=200)

    @router.get("/bodies", tags=["server"], summary="bodies served, their bundles and tasks")
    def bodies() -> list[dict[str, Any]]:
        return svc.bodies_info()

    @router.get("/target", tags=["targets"], response_class=FileResponse,
                responses={200: {"content": {"video/mp4": BINARY}, "description": "the decoded target as mp4"},
                           **error_responses(400, 404, 422, 429, 503)},
                summary="decode what the model understands by a prompt, as an mp4")
    def target(prompt: Annotated[str, Query(description=PROMPT_HELP, json_schema_extra=PROMPT_SPEC)],
               steps: Annotated[int, Query(ge=MIN_STEPS, le=MAX_STEPS, description=STEPS_HELP)] = 32,
               body: str | None = None, use_aligner: bool = True) -> FileResponse:
        path = svc.render_target(body, prompt, steps, use_aligner)
        return FileResponse(path, media_type="video/mp4", filename="target.mp4")

    @router.post("/target", tags=["targets"], response_class=FileResponse, dependencies=guarded,
                 responses={200: {"content": {"video/mp4": BINARY}, "description": "the decoded target as mp4"},
                            **error_responses(400, 401, 404, 415, 422, 429, 503)},
                 openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                     "type": "object", "required": ["video"], "additionalProperties": False, "properties": {
                         "video": {"type": "string", "format": "binary"},
                         "steps": {"type": "integer", "minimum": MIN_STEPS, "maximum": MAX_STEPS},
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

    def learn_get(options: TextLearnOptions) -> JSONResponse:
        return _accepted(svc.submit(svc.learn_request(**options.model_dump())))

    # this server's options, with its caps: a class made here, which a string annotation (this module
    # has `from __future__ import annotations`) could not name for FastAPI
    learn_get.__annotations__["options"] = Annotated[TextOptions, Query()]
    router.get("/learn", tags=["jobs"], status_code=202, dependencies=guarded,
               responses=error_responses(400, 401, 404, 409, 422, 429, 503),
               summary="start learning a policy for a text prompt; returns the job at once")(learn_get)

    @router.post("/learn", tags=["jobs"], status_code=202, dependencies=guarded,
                 responses=error_responses(400, 401, 404, 409, 415, 422, 429, 503),
                 openapi_extra={"requestBody": {"content": {
                     "application/json": {"schema": TextOptions.model_json_schema()},
                     "multipart/form-data": {"schema": {"type": "object", "additionalProperties": False, "properties": {
                         "video": {"type": "string", "format": "binary", "description": "video prompt"},
                         "options": {"type": "string", "description": "LearnOptions as a JSON string"},
                         # each option may also come as a form field of its own (it overrides `options`)
                         **form_properties(Options.model_json_schema()["properties"])}}}}}},
                 summary="start learning a policy: JSON options, or multipart with a video prompt upload")
    async def learn_post(request: Request) -> JSONResponse:
        ctype = request.headers.get("content-type", "")
        video = None
        model: type[LearnOptions] = TextOptions  # JSON carries no video, so it needs a text prompt
        # JSON has real types: `"eval_episodes": false` or `"use_aligner": 1` is a mistake, not a 0 or a
        # true (pydantic's lax mode would take both); form fields are text and are parsed as GET's are
        strict = True
        if ctype.startswith("multipart/form-data"):
            fields, video = await _parse_form(request)
            try:
                raw = json.loads(fields.pop("options")) if "options" in fields else {}
            except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
                raise AppError(400, "the 'options' field is not valid JSON (or nested too deeply)") from None
            if not isinstance(raw, dict):
                raise AppError(422, "options must be a JSON object")
            raw.update(fields)
            model, strict = Options, False
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
            options = model.model_validate(raw, strict=strict)
        except ValidationError as exc:
            raise AppError(422, validation_message(exc.errors())) from None
        job = await run_in_threadpool(lambda: svc.submit(svc.learn_request(video=video, **options.model_dump())))
        return _accepted(job)

    def act_get(options: ActOptions) -> dict[str, Any]:
        return svc.act(**options.model_dump()).public()

    act_get.__annotations__["options"] = Annotated[act_options(svc.cfg, tasks), Query()]  # as learn_get's
    router.get("/act", tags=["instant"], dependencies=guarded,
               responses=error_responses(400, 401, 404, 409, 422, 429, 503),
               summary="act on a text prompt at once with the bundle's generalist (no learning): its real-env "
                       "return and score, the seconds it took, URLs of its real-env and imagined mp4s")(act_get)

    @router.get("/act/{run_id}/{name}", tags=["instant"], response_class=FileResponse,
                responses={200: {"content": {"video/mp4": BINARY}, "description": "the video as mp4"},
                           **error_responses(404, 422)},
                summary="a video of an instant run: real (episode 0 in the real env) | imagined")
    def act_video(run_id: Annotated[str, Path(pattern=r"^[0-9a-f]{24}$", description="an id from GET /act")],
                  name: InstantVideo) -> FileResponse:
        path = svc.instant_video(run_id, name)
        return FileResponse(path, media_type="video/mp4", filename=f"{run_id}-{name}.mp4")

    @router.get("/jobs", tags=["jobs"], responses=error_responses(422), summary="recent jobs, newest first")
    def jobs(state: Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"] | None = None,
             body: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict[str, Any]]:
        return [j.public() for j in svc.list_jobs(state=state, body=body, limit=limit)]

    @router.get("/jobs/{job_id}", tags=["jobs"], responses=error_responses(404, 422),
                summary="one job: state, queue position, progress, metrics, t_a, log, artefact URLs")
    def job(job_id: Annotated[str, JOB_ID]) -> dict[str, Any]:
        return svc.job(job_id).public()

    @router.post("/jobs/{job_id}/cancel", tags=["jobs"], dependencies=guarded,
                 responses=error_responses(401, 404, 409, 422),
                 summary="cancel a queued or running job (learning checkpoints, so the same request resumes)")
    def cancel(job_id: Annotated[str, JOB_ID]) -> dict[str, Any]:
        return svc.cancel(job_id).public()

    @router.get("/jobs/{job_id}/artefacts/{name}", tags=["jobs"], response_class=FileResponse,
                responses={200: {"description": "the file", "content": {
                    media: BINARY for media in sorted({media for _, media in ARTEFACTS.values()})}},
                    **error_responses(404, 422)},
                summary="download an artefact: target | imagined | real (mp4), alignment (png), policy (.pt)")
    def artefact(job_id: Annotated[str, JOB_ID],
                 name: Annotated[str, Path(pattern=r"^[a-z]{1,20}$")]) -> FileResponse:
        path, media_type = svc.artefact(job_id, name)
        return FileResponse(path, media_type=media_type, filename=f"{job_id}-{path.name}")

    @router.get("/policies", tags=["jobs"], responses=error_responses(404, 422, 503),
                summary="finished policies of a body, with the job that showed each")
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
                video = await run_in_threadpool(svc.take_upload, value.file, value.filename)
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
    """A form field as an integer, as GET's query parameters read one ("8" and "8.0", not "8.5")."""
    try:
        return _LAX_INT.validate_python(value)
    except ValidationError:
        raise AppError(422, f"{name} must be an integer, got {value!r}") from None
