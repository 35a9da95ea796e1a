"""Slow and lying OpenAI-compatible endpoints, on a real loopback HTTP server, for the drills.

Each ``POST .../chat/completions`` takes the next ``Hostile`` of a script (the last one repeats),
like ``fake_openai.serve``. The behaviours are the ones an attacker or a broken proxy shows:

* ``drip``: headers at once, then the body one byte every ``interval_s`` (a per-chunk read
  timeout never fires); ``drip_headers`` drips the status line and headers too;
* ``retry_after``: 429 with ``Retry-After`` far past any deadline;
* ``html``: 200 whose body is an HTML page (``text/html``);
* ``no_choices`` / ``empty_choices``: 200 JSON without ``choices`` / with ``"choices": []``;
* ``answer``: 200, a well-formed completion whose content is ``content`` (a schema-breaking
  model answer, for instance);
* ``echo_key``: an error status (401, 404, 500) whose body repeats the key sent in the
  ``Authorization`` header, as OpenAI's own 401 does and as proxies that echo headers do.

Invariant: a handler never blocks the server's shutdown: dripping stops when the client hangs up
or the server is closed, and every request (with its headers) is kept for the test to inspect.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

#: An HTML page, as a proxy or a captive portal answers in place of the API.
HTML_PAGE = b"<!doctype html><html><head><title>Gateway</title></head><body>OK</body></html>"


@dataclass(frozen=True)
class Hostile:
    """One reply of a hostile endpoint (see the module docstring for ``kind``)."""

    kind: str
    #: The assistant's text (``answer``, and the body ``drip`` sends).
    content: str = "{}"
    status: int = 200
    interval_s: float = 1.0
    retry_after: str = "100000"
    #: A drip hangs up after this many seconds (so a client without a deadline is seen to
    #: wait that long, not the whole body's length); None drips to the end.
    max_s: float | None = None


def drip(interval_s: float = 1.0, content: str = "{}", max_s: float | None = None) -> Hostile:
    return Hostile("drip", content=content, interval_s=interval_s, max_s=max_s)


def drip_headers(interval_s: float = 1.0, max_s: float | None = None) -> Hostile:
    return Hostile("drip_headers", interval_s=interval_s, max_s=max_s)


def retry_after(seconds: str = "100000") -> Hostile:
    return Hostile("retry_after", status=429, retry_after=seconds)


def html() -> Hostile:
    return Hostile("html")


def no_choices() -> Hostile:
    return Hostile("no_choices")


def empty_choices() -> Hostile:
    return Hostile("empty_choices")


def answer(payload: dict[str, Any]) -> Hostile:
    """A well-formed completion whose content is ``payload`` as a fenced JSON block."""
    return Hostile("answer", content="```json\n" + json.dumps(payload) + "\n```")


def echo_key(status: int = 401) -> Hostile:
    return Hostile("echo_key", status=status)


def completion(content: str, model: str = "fake", n: int = 1) -> bytes:
    """A chat completion body holding ``content``."""
    return json.dumps(
        {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150},
        }
    ).encode()


@dataclass
class HostileServer:
    script: list[Hostile]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    #: Seconds each request's handler ran (till the body was sent or the client hung up).
    held_s: list[float] = field(default_factory=list)
    base_url: str = ""
    closed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reply_for(self, n: int) -> Hostile:
        return self.script[min(n, len(self.script) - 1)]


def _key_of(headers: dict[str, str]) -> str:
    auth = headers.get("authorization", "")
    return auth.split(" ", 1)[1] if " " in auth else auth


def _handler(server: HostileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def _drip(self, data: bytes, interval_s: float, max_s: float | None) -> bool:
            ends = time.monotonic() + (max_s if max_s is not None else float("inf"))
            for i in range(len(data)):
                if server.closed.is_set() or time.monotonic() >= ends:
                    return False
                self.wfile.write(data[i : i + 1])
                self.wfile.flush()
                if server.closed.wait(interval_s):
                    return False
            return True

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str]) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            started = time.monotonic()
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            with server.lock:
                n = len(server.requests)
                server.requests.append(json.loads(raw or b"{}"))
                server.headers.append(headers)
            reply = server.reply_for(n)
            model = server.requests[-1].get("model", "fake")
            try:
                self._reply(reply, headers, completion(reply.content, model, n + 1))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up: what a deadline is for
            finally:
                with server.lock:
                    server.held_s.append(time.monotonic() - started)
                self.close_connection = True

        def _reply(self, reply: Hostile, headers: dict[str, str], body: bytes) -> None:
            kind = reply.kind
            if kind == "drip":
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.flush()
                self._drip(body, reply.interval_s, reply.max_s)
            elif kind == "drip_headers":
                head = (
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + b"X-Padding: "
                    + b"x" * 64
                    + b"\r\nConnection: close\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\n\r\n"
                )
                if self._drip(head, reply.interval_s, reply.max_s):
                    self.wfile.write(body)
            elif kind == "retry_after":
                error = {"error": {"message": "Rate limit reached", "type": "rate_limit"}}
                self._send(
                    429,
                    json.dumps(error).encode(),
                    "application/json",
                    {"Retry-After": reply.retry_after},
                )
            elif kind == "html":
                self._send(200, HTML_PAGE, "text/html; charset=utf-8", {})
            elif kind == "no_choices":
                doc = {"object": "error", "message": "model is loading", "code": 503}
                self._send(200, json.dumps(doc).encode(), "application/json", {})
            elif kind == "empty_choices":
                doc = {"id": "x", "object": "chat.completion", "created": 0, "choices": []}
                self._send(200, json.dumps(doc).encode(), "application/json", {})
            elif kind == "answer":
                self._send(200, body, "application/json", {})
            elif kind == "echo_key":
                key = _key_of(headers)
                message = f"Incorrect API key provided: {key}. Authorization: Bearer {key}"
                doc = {"error": {"message": message, "type": "invalid_request_error"}}
                self._send(reply.status, json.dumps(doc).encode(), "application/json", {})
            else:  # pragma: no cover - a typo in a test
                raise ValueError(f"unknown hostile reply {kind!r}")

    return Handler


@contextmanager
def serve_hostile(*script: Hostile) -> Iterator[HostileServer]:
    """Run a ``HostileServer`` on a free loopback port for the duration of the block."""
    server = HostileServer(list(script))
    http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    http.daemon_threads = True
    server.base_url = f"http://127.0.0.1:{http.server_address[1]}/v1"
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.closed.set()
        http.shutdown()
        http.server_close()
