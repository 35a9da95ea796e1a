"""The one redaction point: every string that came from outside passes here before it is kept.

Invariant: no configured secret (the API key given by flag, environment or config) and nothing
shaped like a bearer token or an API key survives ``redact``. Error bodies, exception text,
headers and URLs from an endpoint are redacted where the error is *made* (``errors`` does it for
every ``ImrExtractError``), and again at each sink (records, store rows, logs, stderr, pages), so
a string that skipped one pass is caught by the next. Redaction is idempotent.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from collections.abc import Callable, Iterable
from typing import TypeVar, cast

J = TypeVar("J")

#: What a redacted secret becomes.
MASK = "[redacted]"

#: Environment variables whose values are secrets wherever they appear.
SECRET_ENVIRONMENT = ("OPENAI_API_KEY", "IMR_LLM_API_KEY", "IMR_API_KEYS", "IMR_SERVICE_KEY")

#: A piece of a configured secret this long or longer is masked wherever it appears: an endpoint
#: or a library that shortens what it repeats ("input_value='I cannot help, sk-...Xy9Q'") still
#: gives away part of the key. Secrets shorter than ``2 * FRAGMENT`` are masked only whole.
FRAGMENT = 8

_KEY_CHARS = r"[A-Za-z0-9_-]"


def _looks_random(value: str) -> bool:
    """A token, not a word: a digit, an inner capital, or base64's padding and symbols."""
    return (
        any(c.isdigit() for c in value)
        or any(c.isupper() for c in value[1:])
        or any(c in "=+/" for c in value)
    )


def _mixed(value: str) -> bool:
    """Lower case, upper case and digits together, as random keys are (hex digests are not)."""
    return (
        any(c.islower() for c in value)
        and any(c.isupper() for c in value)
        and any(c.isdigit() for c in value)
    )


# Shapes of keys and tokens, whoever issued them: (pattern, test of the value). A shape with
# groups keeps its label ("Bearer ", "api_key=") and masks only the value, which is its last
# group. The tests keep ordinary words out: "token budget", "Basic Medical", "sk-" alone,
# "risk-benefit", case numbers and hex digests are not keys.
_SHAPES: tuple[tuple[re.Pattern[str], Callable[[str], bool] | None], ...] = (
    # "Authorization: Bearer xyz" (the word is rare in prose: any token after it)
    (re.compile(r"(?i)\b(bearer\s+)([A-Za-z0-9._~+/=-]{6,})"), None),
    # "Basic dXNlcjpw", "token ghx7..." (common words: the value must look random)
    (re.compile(r"(?i)\b((?:basic|token)\s+)([A-Za-z0-9._~+/=-]{8,})"), _looks_random),
    # OpenAI-style and similar prefixed keys: sk-..., sk-proj-..., pk_..., rk_...
    (re.compile(rf"\b()((?:sk|pk|rk|ak)[-_]{_KEY_CHARS}{{16,}})"), _looks_random),
    (
        re.compile(rf"\b()((?:xox[abpr]|gh[pousr]|github_pat|glpat|hf)[-_]{_KEY_CHARS}{{10,}})"),
        None,
    ),
    # key=..., api_key: "...", "x-api-key": "...", token=... in URLs, headers and JSON
    (
        re.compile(
            r"(?i)((?:api[-_]?key|access[-_]?token|auth[-_]?token|secret|password|x-api-key)"
            r"[\"']?\s*[:=]\s*[\"']?)([^\s\"'&,;}]{4,})"
        ),
        None,
    ),
    # JSON web tokens
    (
        re.compile(r"\b()([A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{10,})"),
        None,
    ),
    # a long opaque run of key characters in both cases and digits, as keys are (AIza...)
    (re.compile(rf"(?<![A-Za-z0-9_-])()({_KEY_CHARS}{{32,}})"), _mixed),
)

#: Words one of which must be in the text for the shape of the same rank to apply (None: always
#: tried); a cheap test that spares most texts most patterns.
_HINTS: tuple[tuple[str, ...] | None, ...] = (
    ("bearer",),
    ("basic", "token"),
    ("sk-", "sk_", "pk-", "pk_", "rk-", "rk_", "ak-", "ak_"),
    ("xox", "gh", "github_pat", "glpat", "hf"),
    ("key", "token", "secret", "password"),
    None,
    None,
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
    """``text`` with every known secret (whole or a piece of ``FRAGMENT`` characters or more)
    and every key- or token-shaped string masked."""
    if not text:
        return text
    known = [*secrets(), *(s.strip() for s in extra if s and len(s.strip()) >= 4)]
    for secret in sorted(set(known), key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _mask_pieces(text, tuple(sorted(s for s in set(known) if len(s) >= 2 * FRAGMENT)))
    lowered = text.lower()
    for (shape, looks_secret), hints in zip(_SHAPES, _HINTS, strict=True):
        if hints is None or any(h in lowered for h in hints):
            text = shape.sub(_masker(looks_secret), text)
    return text


def redact_json(value: J, extra: Iterable[str] = ()) -> J:
    """``value`` (parsed JSON) with every string in it redacted; keys and numbers kept."""
    extra = tuple(extra)
    if isinstance(value, str):
        return cast(J, redact(value, extra))
    if isinstance(value, dict):
        return cast(J, {k: redact_json(v, extra) for k, v in value.items()})
    if isinstance(value, list):
        return cast(J, [redact_json(v, extra) for v in value])
    return value


@functools.lru_cache(maxsize=32)
def _windows(known: tuple[str, ...]) -> tuple[re.Pattern[str], frozenset[str]] | None:
    """Runs of the secrets' own characters (``FRAGMENT`` or more), and every ``FRAGMENT``-
    character window of a secret: a piece of a secret lies inside one such run."""
    windows = frozenset(s[i : i + FRAGMENT] for s in known for i in range(len(s) - FRAGMENT + 1))
    if not windows:
        return None
    alphabet = "".join(re.escape(c) for c in sorted(set("".join(known))))
    return re.compile(f"[{alphabet}]{{{FRAGMENT},}}"), windows


def _mask_pieces(text: str, known: tuple[str, ...]) -> str:
    """Each run of ``FRAGMENT`` or more characters that is a piece of one of ``known``, masked
    (the run grown to its longest, so no tail of the piece is left behind)."""
    found = _windows(known)
    if found is None:
        return text
    runs, windows = found
    spans: list[tuple[int, int]] = []
    for m in runs.finditer(text):
        run, i = m.group(), 0
        while i <= len(run) - FRAGMENT:
            if run[i : i + FRAGMENT] not in windows:
                i += 1
                continue
            end = i + FRAGMENT
            while end < len(run) and any(run[i : end + 1] in s for s in known):
                end += 1
            spans.append((m.start() + i, m.start() + end))
            i = end
    if not spans:
        return text
    out, at = [], 0
    for start, end in spans:
        out += [text[at:start], MASK]
        at = end
    return "".join(out) + text[at:]


def _masker(looks_secret: Callable[[str], bool] | None) -> Callable[[re.Match[str]], str]:
    def mask(match: re.Match[str]) -> str:
        label, value = match.group(1) or "", match.group(2)
        if looks_secret is not None and not looks_secret(value):
            return match.group(0)
        return label + MASK

    return mask
