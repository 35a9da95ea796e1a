"""Recorded model calls served over HTTP: an OpenAI-compatible endpoint on 127.0.0.1 that answers
from cassettes (``cassettes/*.yaml``), for processes vcrpy cannot reach (the service's uvicorn).

Invariant: a request is answered only by the recorded response of a recorded request with the
same method, path and JSON body (``llm_cassettes``' matching: key order and whitespace aside),
each recording at most once (vcrpy's ``allow_playback_repeats=False``). Any other request is
answered ``400`` with a body that says so -- a 400 is not retried by the client, so the failure
is immediate -- and is kept in ``unmatched``: a test asserts that list is empty and that every
recording was played (``unplayed``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import yaml

from llm_cassettes import cassette_path
from llm_cassettes import load_body as _load

#: Response headers worth passing on (the rest are the recorded server's own).
_KEEP = {"content-type", "retry-after"}


@dataclass
class Recording:
    cassette: str
    index: int
    method: str
    path: str
    body: Any
    status: int
    headers: dict[str, str]
    response: bytes
    played: bool = False


@dataclass
class Unmatched:
    method: str
    path: str
    body: Any

    def describe(self, recordings: list[Recording]) -> str:
        """What this request was, and where it first differs from the nearest recording."""
        where = f"{self.method} {self.path}"
        same_path = [r for r in recordings if (r.method, r.path) == (self.method, self.path)]
        if not same_path or not isinstance(self.body, dict):
            return f"{where}: no recording of that method and path"
        for r in same_path:
            if not isinstance(r.body, dict):
                continue
            keys = sorted(set(r.body) | set(self.body))
            differ = [k for k in keys if r.body.get(k) != self.body.get(k)]
            return f"{where}: differs from {r.cassette}#{r.index} in {differ}"
        return f"{where}: no JSON recording to compare"


@dataclass
class ReplayEndpoint:
    recordings: list[Recording]
    unmatched: list[Unmatched] = field(default_factory=list)
    #: The Authorization header of every request (a test checks the placeholder key was sent).
    authorizations: list[str] = field(default_factory=list)
    base_url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_cassettes(cls, names: list[str]) -> ReplayEndpoint:
        recordings: list[Recording] = []
        for name in names:
            data = yaml.safe_load(cassette_path(name).read_text(encoding="utf-8"))
            for i, interaction in enumerate(data["interactions"]):
                req, resp = interaction["request"], interaction["response"]
                body = resp["body"]["string"]
                headers = {
                    k: v[0] if isinstance(v, list) else str(v)
                    for k, v in (resp.get("headers") or {}).items()
                    if k.lower() in _KEEP
                }
                recordings.append(
                    Recording(
                        cassette=name,
                        index=i,
                        method=req["method"],
                        path=urlsplit(req["uri"]).path,
                        body=_load(req["body"]),
                        status=int(resp["status"]["code"]),
                        headers=headers,
                        response=body.encode("utf-8") if isinstance(body, str) else body,
                    )
                )
        return cls(recordings)

    def answer(self, method: str, path: str, body: bytes) -> Recording | None:
        """The first unplayed recording this request matches (now played), else None (kept)."""
        got = _load(body)
        with self._lock:
            for r in self.recordings:
                if not r.played and (r.method, r.path, r.body) == (method, path, got):
                    r.played = True
                    return r
            self.unmatched.append(Unmatched(method, path, got))
            return None

    def unplayed(self, cassette: str | None = None) -> list[str]:
        return [
            f"{r.cassette}#{r.index}"
            for r in self.recordings
            if not r.played and (cassette is None or r.cassette == cassette)
        ]

    def played(self, cassette: str) -> int:
        return sum(r.played for r in self.recordings if r.cassette == cassette)

    def problems(self) -> list[str]:
        """Every request that had no recording (each with how it differs from one)."""
        return [u.describe(self.recordings) for u in self.unmatched]


def _handler(endpoint: ReplayEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            endpoint.authorizations.append(self.headers.get("Authorization", ""))
            found = endpoint.answer(method, urlsplit(self.path).path, body)
            if found is None:
                status = 400
                payload = json.dumps(
                    {
                        "error": {
                            "message": "REPLAY ENDPOINT: no recorded answer for this request "
                            "(the prompt, schema or options differ from the recording)",
                            "type": "unrecorded_request",
                        }
                    }
                ).encode()
                headers = {"Content-Type": "application/json"}
            else:
                status, payload, headers = found.status, found.response, found.headers
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_POST(self) -> None:
            self._serve("POST")

        def do_GET(self) -> None:
            self._serve("GET")

    return Handler


@contextmanager
def replaying(names: list[str]) -> Iterator[ReplayEndpoint]:
    """An endpoint answering from cassettes ``names`` on a free loopback port, for the block."""
    endpoint = ReplayEndpoint.from_cassettes(names)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(endpoint))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    endpoint.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
