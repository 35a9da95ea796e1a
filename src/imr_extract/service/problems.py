"""Errors as RFC 9457 problem details: ``application/problem+json``, one stable ``type`` per code.

Invariant: every error response of the service is made here. Its ``type`` is
``PROBLEM_BASE + code`` (the code of the library's error class, ``errors.ImrExtractError.code``,
or one of the service's own in ``SERVICE_PROBLEMS``), its ``detail`` has passed ``redact``, and
it never holds a stack trace, a path of the server's or a key: a letter's error names the letter
by the name it was uploaded under, and an unexpected exception is reported by its code alone.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ..errors import (
    ImrExtractError,
    InputError,
    InternalError,
    LimitError,
    LLMError,
    TooLargeInputError,
    WorkerCrashedError,
)
from ..redact import redact

#: Where the problem types live: ``PROBLEM_BASE + code`` (the same ``.invalid`` host as the
#: record's JSON Schema ``$id``: an identifier, not a page to fetch).
PROBLEM_BASE = "https://imr-extract.invalid/problems/"
MEDIA_TYPE = "application/problem+json"

#: The service's own problems (the library's error codes are the rest): code -> (status, title).
SERVICE_PROBLEMS: dict[str, tuple[int, str]] = {
    "bad-request": (400, "The request cannot be read"),
    "unauthorized": (401, "A valid API key is needed"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "Method not allowed here"),
    "body-too-large": (413, "The request body is larger than the service takes"),
    "unsupported-media-type": (415, "Send a PDF, text, one multipart file or JSON {text}"),
    "invalid-request": (422, "The request's parameters are not valid"),
    "rate-limited": (429, "Too many requests with this key: slow down"),
    "backend-unavailable": (409, "That backend is not configured on this server"),
    "busy": (503, "Too many letters waiting: try again later"),
    "store-unusable": (503, "The run store cannot be used"),
    "model-unreachable": (503, "The model endpoint does not answer"),
    "internal": (500, "Internal error"),
    "bad-archive": (400, "The body is not an archive that can be read"),
    "archive-too-many-members": (413, "The job holds more members than the service takes"),
    "archive-too-large": (413, "The archive inflates past what the service takes"),
    "archive-unsafe-name": (422, "An archive member's path is absolute or climbs (..)"),
    "no-letters": (422, "The job holds no letter"),
}


class Problem(BaseModel):
    """An RFC 9457 problem details object, with the letter's name where there is one."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(description="A stable URI per error code: " + PROBLEM_BASE + "<code>.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request (redacted).")
    code: str = Field(description="The error code (the last segment of type).")
    letter: str | None = Field(default=None, description="The letter's name, when one was sent.")


class ProblemError(Exception):
    """Raised anywhere in a request: becomes its problem response (see ``app``)."""

    def __init__(
        self,
        code: str,
        detail: str,
        *,
        status: int | None = None,
        title: str | None = None,
        letter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        known_status, known_title = SERVICE_PROBLEMS.get(code, (500, "Error"))
        self.problem = Problem(
            type=PROBLEM_BASE + code,
            title=title or known_title,
            status=status or known_status,
            detail=redact(detail),
            code=code,
            letter=redact(letter) if letter is not None else None,
        )
        self.headers = headers or {}
        super().__init__(self.problem.detail)


def status_of(error: ImrExtractError) -> int:
    """The HTTP status for a letter's error: the letter's fault is a 4xx, the service's a 5xx."""
    if isinstance(error, TooLargeInputError):
        return 413
    if isinstance(error, InternalError):
        return 500
    if isinstance(error, LLMError) and not isinstance(error, LimitError):
        return 502  # the model endpoint failed (hybrid keeps the rules' record instead)
    if isinstance(error, InputError | LimitError | WorkerCrashedError):
        return 422  # cannot be read, past a limit, or crashed its reader: this letter's doing
    if error.code in SERVICE_PROBLEMS:
        return SERVICE_PROBLEMS[error.code][0]
    return 422  # extraction errors: read, but not a letter the extractor can use


def _title(error: ImrExtractError) -> str:
    doc = (type(error).__doc__ or "").strip().split("\n")[0].rstrip(".")
    return doc or f"The letter cannot be extracted ({error.code})"


def from_error(error: ImrExtractError, letter: str | None) -> ProblemError:
    """The problem for a letter's ``error`` (an internal error's text is never shown)."""
    detail = error.cause
    if isinstance(error, InternalError):
        detail = "an unexpected error while extracting this letter (a bug in imr-extract)"
    return ProblemError(
        error.code, detail, status=status_of(error), title=_title(error), letter=letter
    )


def body(problem: Problem) -> bytes:
    data: dict[str, Any] = problem.model_dump(exclude_none=True)
    return json.dumps(data, ensure_ascii=False).encode("utf-8")
