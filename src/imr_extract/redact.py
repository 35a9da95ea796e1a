"""The one redaction point: every string that came from outside passes here before it is kept.

Invariant: no configured secret (the API key given by flag, environment or config) and nothing
shaped like a bearer token or an API key survives ``redact``. Error bodies, exception text,
headers and URLs from an endpoint are redacted where the error is *made* (``errors`` does it for
every ``ImrExtractError``), and again at each sink (records, store rows, logs, stderr, pages), so
a string that skipped one pass is caught by the next. Redaction is idempotent.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable

#: What a redacted secret becomes.
MASK = "[redacted]"

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENVIRONMENT = ("OPENAI_API_KEY", "IMR_LLM_API_KEY", "IMR_API_KEYS", "IMR_SERVICE_KEY")

# Shapes of keys and tokens, whoever issued them. Kept deliberately broad: a false mask in an
# error message costs nothing, a leaked key costs the key.
_SHAPES = (
    # "Authorization: Bearer xyz", "bearer xyz", "Basic xyz"
    re.compile(r"(?i)\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=-]{6,}"),
    # OpenAI-style and similar prefixed keys: sk-..., sk-proj-..., pk_..., rk_..., xoxb-..., ghp_...
    re.compile(r"\b(?:sk|pk|rk|ak)[-_](?:[A-Za-z0-9]+[-_])*[A-Za-z0-9]{8,}"),
    re.compile(r"\b(?:xox[abpr]|gh[pousr]|github_pat|glpat|hf)[-_][A-Za-z0-9_-]{10,}"),
    # key=..., api_key: "...", "x-api-key": "...", token=... in URLs, headers and JSON
    re.compile(
        r"(?i)((?:api[-_]?key|access[-_]?token|auth[-_]?token|secret|password|x-api-key)"
        r"[\"']?\s*[:=]\s*[\"']?)[^\s\"'&,;}]{4,}"
    ),
    # a long opaque run of key alphabet characters (40+), as keys and JWTs are
    re.compile(r"\b[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{10,}\b"),
)

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Add a secret to mask wherever it appears (a configured key, a service key)."""
    if value and len(value.strip()) >= 4:
        with _lock:
            _secrets.add(value.strip())


def secrets() -> list[str]:
    """The secrets masked now: registered ones and those in the environment, longest first."""
    found = set(_secrets)
    for name in SECRET_ENVIRONMENT:
        for value in os.environ.get(name, "").split(","):
            if len(value.strip()) >= 4:
                found.add(value.strip())
    return sorted(found, key=len, reverse=True)


def redact(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` with every known secret and every key- or token-shaped string masked."""
    if not text:
        return text
    for secret in [*secrets(), *(s for s in extra if s and len(s) >= 4)]:
        text = text.replace(secret, MASK)
    for shape in _SHAPES:
        text = shape.sub(_mask, text)
    return text


def _mask(match: re.Match[str]) -> str:
    # A shape with groups keeps its label ("Bearer ", "api_key=") and masks only the value.
    return "".join(g or "" for g in match.groups()) + MASK
