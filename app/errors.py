"""One error type for everything a request can get wrong; the API maps it to an HTTP status.
Every error body is `{"detail": "<one line for a person>"}`, and the OpenAPI document says so."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

# Seconds a 429 asks a client to wait (its Retry-After header) when the refusal names none: a slot
# of the inference queue frees in about a render's time.
RETRY_AFTER_S = 5


class AppError(Exception):
    """A request that cannot be served, with the HTTP status and a message meant for the user.
    A 429 carries `retry_after` (seconds), sent as its Retry-After header so a client backs off."""

    def __init__(self, status: int, detail: str, retry_after: int | None = None):
        super().__init__(detail)
        self.status, self.detail = status, detail
        self.retry_after = retry_after if retry_after is not None or status != 429 else RETRY_AFTER_S

    @property
    def headers(self) -> dict[str, str] | None:
        """The response headers this error's answer carries."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer (validation errors included: one line, not a list)."""

    detail: str = Field(description="what was wrong and how to fix it, in one line")


# what each status means here, as the OpenAPI document describes it
ERROR_MEANINGS: dict[int, str] = {
    400: "bad input: an empty prompt, a prompt the model cannot use, malformed JSON, a video that does not decode",
    401: "the server has an API token and the request did not send it",
    404: "no such body, job, artefact or policy",
    409: "the job has already finished; /act: the bundle has no (usable) generalist (`genrl train-generalist`)",
    413: "the request body or an upload is over its size limit",
    415: "a content type or video format the route does not take",
    422: "a parameter or option out of range (a prompt over its maxLength too), of the wrong type, or unknown; "
         "a prompt with a control character, NUL, bidi override or invalid code point",
    429: "busy: the job queue or the inference queue is full; retry later",
    503: "the bundle is still loading, unusable, or the model stayed busy; retry later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all with the ErrorBody shape.
    Declaring 422 here also replaces FastAPI's default list-shaped validation error, which this app
    never sends."""
    responses: dict[int | str, dict[str, Any]] = {
        status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]} for status in sorted(statuses)}
    if 429 in responses:  # every 429 says when to come back (AppError.headers)
        responses[429]["headers"] = {"Retry-After": {"description": "seconds to wait before retrying",
                                                     "required": True, "schema": {"type": "integer", "minimum": 1}}}
    return responses
