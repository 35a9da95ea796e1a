"""Recorded model calls: vcrpy configuration, cassette metadata and the stale-cassette check.

Cassettes live in ``cassettes/`` at the repository root, one YAML file per recording plus a
``.meta.json`` that says what produced it (prompt and schema hashes, model, endpoint). Replay is
the default and needs no key and no network; requests are matched on method, path and JSON body,
so a changed prompt or schema can never replay an old answer silently.

Re-record against a running endpoint (see scripts/local-model.sh)::

    scripts/local-model.sh start
    .venv/bin/pytest tests/test_llm_replay.py --record-mode=all [-k NAME]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import vcr
from vcr.errors import CannotOverwriteExistingCassetteException

CASSETTES = Path(__file__).resolve().parents[1] / "cassettes"
#: The endpoint cassettes were recorded against; replay never contacts it.
RECORD_BASE_URL = os.environ.get("IMR_RECORD_BASE_URL", "http://127.0.0.1:8080/v1")
RECORD_MODEL = os.environ.get("IMR_RECORD_MODEL", "qwen2.5-coder-1.5b-instruct")
RERECORD_HINT = (
    "re-record it against a running endpoint: `scripts/local-model.sh start && "
    ".venv/bin/pytest tests/test_llm_replay.py --record-mode=all -k {name}`"
)
SECRET_HEADERS = ["authorization", "api-key", "x-api-key", "openai-organization", "cookie"]


def load_body(body: Any) -> Any:
    """A request body as cassettes compare it: its JSON (key order and whitespace aside), or
    the text itself when it is not JSON."""
    if isinstance(body, bytes):
        body = body.decode("utf-8")
    try:
        return json.loads(body) if body else None
    except ValueError:
        return body


def _json_body(r1: Any, r2: Any) -> None:
    """Bodies match when they are the same JSON (key order and whitespace aside)."""
    assert load_body(r1.body) == load_body(r2.body), "request bodies differ"


def _scrub_response(response: dict[str, Any]) -> dict[str, Any]:
    headers = response.get("headers", {})
    for name in list(headers):
        if name.lower() in ("set-cookie", "x-request-id", "openai-organization"):
            headers.pop(name)
    return response


def make_vcr(record_mode: str) -> vcr.VCR:
    v = vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode=record_mode,
        match_on=["method", "path", "json_body"],
        filter_headers=SECRET_HEADERS,
        decode_compressed_response=True,
        before_record_response=_scrub_response,
    )
    v.register_matcher("json_body", _json_body)
    return v


def meta_path(name: str) -> Path:
    return CASSETTES / f"{name}.meta.json"


def cassette_path(name: str) -> Path:
    return CASSETTES / f"{name}.yaml"


@contextmanager
def recorded(
    request: pytest.FixtureRequest, name: str, meta: dict[str, Any], mode: str | None = None
) -> Iterator[Any]:
    """Replay (or record, with --record-mode) cassette ``name``; fail clearly when it is stale."""
    mode = mode or request.config.getoption("--record-mode")
    hint = RERECORD_HINT.format(name=name)
    if mode == "none":
        if not cassette_path(name).exists():
            pytest.fail(f"cassette {name} is missing; {hint}")
        old = json.loads(meta_path(name).read_text()) if meta_path(name).exists() else {}
        stale = {k: (old.get(k), v) for k, v in meta.items() if old.get(k) != v}
        if stale:
            changes = ", ".join(f"{k}: recorded {a!r}, now {b!r}" for k, (a, b) in stale.items())
            pytest.fail(f"cassette {name} is stale ({changes}); {hint}")
    with make_vcr(mode).use_cassette(f"{name}.yaml", allow_playback_repeats=False) as cassette:
        try:
            yield cassette
        except Exception as exc:
            if unmatched_request(exc):
                pytest.fail(f"cassette {name} has no recorded answer for a request; {hint}\n{exc}")
            raise
        finally:
            if mode != "none":  # what was recorded is kept, whatever the test then asserts
                CASSETTES.mkdir(exist_ok=True)
                meta_path(name).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    if mode == "none" and not cassette.all_played:
        pytest.fail(f"cassette {name} holds requests this test no longer makes; {hint}")


def unmatched_request(exc: BaseException) -> bool:
    """True when an error was caused by a request the cassette has no answer for."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, CannotOverwriteExistingCassetteException):
            return True
        seen = seen.__cause__ or seen.__context__
    return False
