"""One error type for everything a request can get wrong; the API maps it to an HTTP status.
Every error body is `{"detail": "<one line for a person>"}`, and the OpenAPI document says so."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class AppError(Exception):
    """A request that cannot be served, with the HTTP status and a message meant for the user."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


class ErrorBody(BaseModel):
    """The body of every 4xx/5xx answer (validation errors included: one line, not a list)."""

    detail: str = Field(description="what was wrong and how to fix it, in one line")


# what each status means here, as the OpenAPI document describes it
ERROR_MEANINGS: dict[int, str] = {
    400: "bad input: an empty prompt, a prompt the model cannot use, malformed JSON, a video that does not decode",
    401: "the server has an API token and the request did not send it",
    404: "no such body, job, artefact or policy",
    409: "the job has already finished",
    413: "the request body, upload or prompt is over its size limit",
    415: "a content type or video format the route does not take",
    422: "a parameter or option out of range, of the wrong type, or unknown",
    429: "busy: the job queue or the inference queue is full; retry later",
    503: "the bundle is still loading, unusable, or the model stayed busy; retry later",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route can answer, all with the ErrorBody shape.
    Declaring 422 here also replaces FastAPI's default list-shaped validation error, which this app
    never sends."""
    return {status: {"model": ErrorBody, "description": ERROR_MEANINGS[status]} for status in sorted(statuses)}
