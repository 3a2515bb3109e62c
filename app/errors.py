"""One error type for everything a request can get wrong; the API maps it to an HTTP status."""

from __future__ import annotations


class AppError(Exception):
    """A request that cannot be served, with the HTTP status and a message meant for the user."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail
