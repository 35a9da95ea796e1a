"""A real local HTTP server that speaks enough of the OpenAI chat API to misbehave on cue.

Each request to ``POST /v1/chat/completions`` takes the next ``Reply`` from a script (the last one
repeats): an answer, an HTTP error with headers (429 + Retry-After), a stall past the client's
timeout, a body that is not JSON, or an answer cut off at ``max_tokens``. Every request body is
kept, so a test can assert what the client sent (which part of a letter, which headers).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int = 200
    content: str | None = None  # the assistant's text, for a 200
    finish_reason: str = "stop"
    body: bytes | None = None  # a raw body instead (malformed answers)
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # stall before answering (timeouts)
    prompt_tokens: int = 100
    completion_tokens: int = 50


def answer(payload: dict[str, Any], **kw: Any) -> Reply:
    """A 200 whose content is ``payload`` as a fenced JSON block (instructor's MD_JSON mode)."""
    return Reply(content="```json\n" + json.dumps(payload) + "\n```", **kw)


#: Answers one request from what it was sent: its JSON body and its headers (lower-cased names).
Responder = Callable[[dict[str, Any], dict[str, str]], Reply]


@dataclass
class FakeOpenAI:
    script: list[Reply]
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""
    #: Replaces the script: each request is answered by ``respond(body, headers)``.
    respond: Responder | None = None

    def next_reply(self) -> Reply:
        return self.script[min(len(self.requests) - 1, len(self.script) - 1)]


def _handler(fake: FakeOpenAI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            sent = json.loads(raw or b"{}")
            headers = {k.lower(): v for k, v in self.headers.items()}
            fake.requests.append(sent)
            fake.headers.append(headers)
            reply = fake.respond(sent, headers) if fake.respond else fake.next_reply()
            if reply.delay_s:
                time.sleep(reply.delay_s)
            if reply.body is not None:
                body = reply.body
            elif reply.status == 200:
                body = json.dumps(
                    {
                        "id": f"chatcmpl-{len(fake.requests)}",
                        "object": "chat.completion",
                        "created": 0,
                        "model": fake.requests[-1].get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": reply.finish_reason,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": reply.prompt_tokens,
                            "completion_tokens": reply.completion_tokens,
                            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
                        },
                    }
                ).encode()
            else:
                body = json.dumps({"error": {"message": f"fake error {reply.status}"}}).encode()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout drill)

    return Handler


@contextmanager
def serve(script: list[Reply], respond: Responder | None = None) -> Iterator[FakeOpenAI]:
    """Run a ``FakeOpenAI`` on a free loopback port for the duration of the block."""
    fake = FakeOpenAI(list(script), respond=respond)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    server.daemon_threads = True
    fake.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
