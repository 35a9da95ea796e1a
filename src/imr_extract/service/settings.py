"""The service's settings: what ``imr-extract serve`` was given, in one frozen value.

Invariant: settings hold no secret (API keys live hashed in the store, the model's key in the
environment), so they may be passed to uvicorn's worker processes in the environment
(``SETTINGS_ENV``) and recorded as the run's settings.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ..limits import DEFAULT_LIMITS, Limits
from ..store import DEFAULT_STORE
from ..storedb import is_url

#: The environment variable that carries the settings (JSON) to uvicorn's worker processes.
SETTINGS_ENV = "IMR_SERVICE_SETTINGS"
#: Default wall-clock seconds for one letter of a request (reading and extracting it).
LETTER_SECONDS = 60.0
#: Default seconds ``POST /v1/extract`` waits for a letter before answering 202 and a job.
WAIT_SECONDS = 10.0
#: Default seconds an ended job is kept (7 days); 0 keeps jobs forever.
KEEP_JOBS_SECONDS = 7 * 86400.0
#: Default seconds a ``GET /v1/jobs/{id}/results?follow=true`` stream lasts at most.
FOLLOW_SECONDS = 600.0
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8000
    #: uvicorn worker processes (each with its own letter workers).
    workers: int = 1
    #: The run store: a SQLite file's path, or a ``postgresql://`` URL (replicas share it).
    store: Path | str = Path(DEFAULT_STORE)
    #: Where letters' bytes are kept for their review pages (None: ``<store>.letters/`` next to
    #: a SQLite store; in the store itself, the ``letter_files`` table, on PostgreSQL).
    letters_dir: Path | None = None
    auth: bool = True
    #: Isolated processes reading and extracting letters, per service process.
    letter_workers: int = field(default_factory=_cores)
    #: Letters that may wait for a letter worker beyond those being read; past it, 503.
    max_queue: int = 64
    #: A model's extractions at once, per service process (``runner.ModelQueue``: ``max_queue``
    #: more may wait; past it, 503).
    model_concurrency: int = 4
    #: Bytes of a request body, at most (read as it streams; past it, 413).
    max_body: int = DEFAULT_LIMITS.max_stdin_bytes
    limits: Limits = field(default_factory=lambda: replace(DEFAULT_LIMITS, letter_seconds=60.0))
    pdf_engine: str | None = None
    #: Requests per minute one API key may make (None: no limit); per service process.
    rate_per_minute: float | None = None
    #: Seconds ``POST /v1/extract`` waits for its letter (``?wait=`` at most this); past it, the
    #: answer is 202 and a job of that one letter, which carries on.
    wait: float = WAIT_SECONDS
    #: Members of one job (files of a form, entries of a tar or zip), at most; past it, 413.
    max_job_letters: int = 1000
    #: Seconds a job is kept after it ended (finished or cancelled); then it is deleted with its
    #: rows in ``job_letters`` (its letters' records and bytes stay). 0: kept forever.
    keep_jobs: float = KEEP_JOBS_SECONDS
    #: Seconds a ``?follow=true`` results stream lasts at most (it ends then, job ended or not).
    follow_seconds: float = FOLLOW_SECONDS

    def to_json(self) -> str:
        data = asdict(self)
        data["store"] = str(self.store)
        data["letters_dir"] = None if self.letters_dir is None else str(self.letters_dir)
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        data: dict[str, Any] = json.loads(text)
        data["store"] = data["store"] if is_url(data["store"]) else Path(data["store"])
        if data.get("letters_dir") is not None:
            data["letters_dir"] = Path(data["letters_dir"])
        data["limits"] = Limits(**data["limits"])
        return cls(**data)

    def public(self) -> dict[str, Any]:
        """What the run records about the service."""
        data = json.loads(self.to_json())
        data.pop("store")  # a URL may hold a password
        data.pop("letters_dir")
        return data


def parse_duration(text: str) -> float:
    """Seconds of a duration: a number with an optional unit, ``s``, ``m``, ``h`` or ``d``
    (``90s``, ``12h``, ``7d``; ``30`` is seconds). ValueError for anything else."""
    raw = text.strip().lower()
    unit = _UNITS.get(raw[-1:]) if raw else None
    number = raw[:-1] if unit is not None else raw
    try:
        value = float(number)
    except ValueError:
        raise ValueError(f"not a duration: {text!r} (e.g. 90s, 30m, 12h, 7d)") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"not a duration: {text!r} (a number of seconds, minutes, hours or days)")
    return value * (unit or 1.0)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
