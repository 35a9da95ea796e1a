"""The service's log lines: uvicorn's own (startup, errors, one access line per request) and
every other logger's, each passed through ``redact`` as it is written.

Invariant: every line the service process writes through ``logging`` -- uvicorn's ``uvicorn``,
``uvicorn.error`` and ``uvicorn.access`` loggers and any other (the root logger's handler) -- is
the output of ``redact``: a key-shaped value a caller put in a URL (``?api_key=...``, a path), in
a header uvicorn repeats (``X-Forwarded-For``, shown as the client's address) or in an error's
traceback is masked before it reaches stderr, stdout or a log collector.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter, DefaultFormatter

from ..redact import redact


class RedactingFormatter(DefaultFormatter):
    """uvicorn's formatter for its own lines (and every other logger's), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingAccessFormatter(AccessFormatter):
    """uvicorn's access line (client, request line with its query string, status), redacted."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def log_config() -> dict[str, Any]:
    """uvicorn's logging configuration with its formatters redacting, and the root logger (every
    other library's lines, at WARNING and above) written by the same redacting handler."""
    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    here = __name__
    config["formatters"]["default"]["()"] = f"{here}.RedactingFormatter"
    config["formatters"]["access"]["()"] = f"{here}.RedactingAccessFormatter"
    config["root"] = {"handlers": ["default"], "level": "WARNING"}
    return config
