"""A real local HTTP server implementing the OpenAI Batch API endpoints imr-extract uses.

``POST /v1/files`` (multipart upload, kept in memory), ``GET /v1/files/{id}``,
``GET /v1/files/{id}/content``, ``POST /v1/batches``, ``GET /v1/batches`` (list),
``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``, shaped as the API reference
documents them. A batch is ``validating`` when created and moves one step per retrieve:
``in_progress``, then ``completed`` (or ``final``: ``expired``, ``failed``). When it completes,
each request line is answered by the test's ``responder(line) -> BatchReply``: a chat
completion (status 200), another status with an error body, a line in the error file, or no
answer at all (left out, as an expired batch leaves requests). Every call is logged with its
headers, so a test can count submissions and check what was sent.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CREATED_AT = 1_700_000_000


@dataclass(frozen=True)
class BatchReply:
    content: str | None = None  # the assistant's text (or the tool call's arguments)
    status: int = 200
    finish_reason: str = "stop"
    as_tool_call: bool = False  # content as the arguments of a tool call (tools mode)
    error: tuple[str, str] | None = None  # (code, message): a line in the error file
    body: dict[str, Any] | None = None  # a raw response body instead
    prompt_tokens: int = 100
    completion_tokens: int = 50


def fenced(payload: dict[str, Any], **kw: Any) -> BatchReply:
    """A 200 whose content is ``payload`` in a ```json fence (what md_json asks for)."""
    return BatchReply(content="```json\n" + json.dumps(payload) + "\n```", **kw)


Responder = Callable[[dict[str, Any]], BatchReply | None]
#: Refuses a call before it is served: (method, path, headers) -> (status, body) or None.
Refuser = Callable[[str, str, dict[str, str]], tuple[int, dict[str, Any]] | None]


@dataclass
class FakeBatchAPI:
    responder: Responder
    #: What a batch becomes after in_progress ("completed", "expired" or "failed").
    final: str = "completed"
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    refuse: Refuser | None = None

    def count(self, method: str, pattern: str) -> int:
        return sum(1 for m, p in self.calls if m == method and re.fullmatch(pattern, p))

    def uploaded(self, file_id: str) -> bytes:
        return self.files[file_id]["data"]

    # --- state changes ------------------------------------------------------------------------

    def add_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = {
            "id": file_id,
            "object": "file",
            "bytes": len(data),
            "created_at": CREATED_AT,
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
            "data": data,
        }
        return self.files[file_id]

    def create_batch(self, params: dict[str, Any]) -> dict[str, Any]:
        batch_id = f"batch_{len(self.batches) + 1}"
        lines = self.uploaded(params["input_file_id"]).decode().splitlines()
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "endpoint": params["endpoint"],
            "errors": None,
            "input_file_id": params["input_file_id"],
            "completion_window": params["completion_window"],
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": CREATED_AT,
            "in_progress_at": None,
            "expires_at": CREATED_AT + 86_400,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": params.get("metadata"),
        }
        return self.batches[batch_id]

    def advance(self, batch: dict[str, Any]) -> None:
        status = batch["status"]
        if status == "validating":
            batch["status"], batch["in_progress_at"] = "in_progress", CREATED_AT + 1
        elif status == "in_progress":
            if self.final == "failed":
                batch["status"], batch["failed_at"] = "failed", CREATED_AT + 2
                batch["errors"] = {
                    "object": "list",
                    "data": [{"code": "invalid_request", "message": "bad line", "line": 1}],
                }
                return
            self.run(batch)
        elif status == "cancelling":
            batch["status"], batch["cancelled_at"] = "cancelled", CREATED_AT + 2

    def run(self, batch: dict[str, Any]) -> None:
        """Answer every request line; write the output and error files."""
        out: list[str] = []
        errors: list[str] = []
        for n, raw in enumerate(self.uploaded(batch["input_file_id"]).decode().splitlines()):
            line = json.loads(raw)
            reply = self.responder(line)
            if reply is None:
                continue  # never answered
            rid = f"batch_req_{n + 1}"
            if reply.error is not None:
                code, message = reply.error
                errors.append(
                    json.dumps(
                        {
                            "id": rid,
                            "custom_id": line["custom_id"],
                            "response": None,
                            "error": {"code": code, "message": message},
                        }
                    )
                )
                continue
            body = reply.body if reply.body is not None else _body(line, reply, n)
            result = {
                "id": rid,
                "custom_id": line["custom_id"],
                "response": {"status_code": reply.status, "request_id": f"req_{n}", "body": body},
                "error": None,
            }
            (out if reply.status == 200 else errors).append(json.dumps(result))
        counts = batch["request_counts"]
        counts["completed"], counts["failed"] = (
            len(out),
            len(errors),
        )
        if out:
            f = self.add_file("".join(x + "\n" for x in out).encode(), "out.jsonl", "batch_output")
            batch["output_file_id"] = f["id"]
        if errors:
            f = self.add_file(
                "".join(x + "\n" for x in errors).encode(), "errors.jsonl", "batch_output"
            )
            batch["error_file_id"] = f["id"]
        if self.final == "expired":
            batch["status"], batch["expired_at"] = "expired", CREATED_AT + 2
        else:
            batch["status"], batch["completed_at"] = "completed", CREATED_AT + 2


def _body(line: dict[str, Any], reply: BatchReply, n: int) -> dict[str, Any]:
    if reply.status != 200:
        return {"error": {"message": f"fake error {reply.status}", "type": "server_error"}}
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.as_tool_call:
        tool = line["body"]["tool_choice"]["function"]["name"]
        message = {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": f"call_{n}",
                    "type": "function",
                    "function": {"name": tool, "arguments": reply.content},
                }
            ],
        }
    return {
        "id": f"chatcmpl-{n}",
        "object": "chat.completion",
        "created": CREATED_AT,
        "model": line["body"]["model"],
        "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k != "data"}


def _multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """Form fields of a multipart/form-data body: name -> (filename, bytes)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return fields


def _handler(api: FakeBatchAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _send(self, status: int, payload: Any, raw: bytes | None = None) -> None:
            body = raw if raw is not None else json.dumps(payload).encode()
            self.send_response(status)
            ctype = "application/octet-stream" if raw is not None else "application/json"
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _not_found(self) -> None:
            self._send(404, {"error": {"message": f"no such path {self.path}", "type": "invalid"}})

        def _log(self, method: str) -> str:
            path = self.path.split("?")[0]
            api.calls.append((method, path))
            api.headers.append({k.lower(): v for k, v in self.headers.items()})
            return path

        def _refused(self, method: str, path: str) -> bool:
            headers = {k.lower(): v for k, v in self.headers.items()}
            refusal = api.refuse(method, path, headers) if api.refuse else None
            if refusal is not None:
                self._send(*refusal)
            return refusal is not None

        def do_GET(self) -> None:
            path = self._log("GET")
            if self._refused("GET", path):
                return
            with api.lock:
                if m := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                    f = api.files.get(m.group(1))
                    return self._send(200, None, f["data"]) if f else self._not_found()
                if m := re.fullmatch(r"/v1/files/([\w-]+)", path):
                    f = api.files.get(m.group(1))
                    return self._send(200, _public(f)) if f else self._not_found()
                if path == "/v1/batches":
                    data = list(reversed(api.batches.values()))
                    return self._send(
                        200,
                        {
                            "object": "list",
                            "data": data,
                            "first_id": data[0]["id"] if data else None,
                            "last_id": data[-1]["id"] if data else None,
                            "has_more": False,
                        },
                    )
                if m := re.fullmatch(r"/v1/batches/([\w-]+)", path):
                    batch = api.batches.get(m.group(1))
                    if batch is None:
                        return self._not_found()
                    api.advance(batch)
                    return self._send(200, batch)
            return self._not_found()

        def do_POST(self) -> None:
            path = self._log("POST")
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self._refused("POST", path):
                return
            with api.lock:
                if path == "/v1/files":
                    fields = _multipart(self.headers["Content-Type"], raw)
                    filename, data = fields["file"]
                    purpose = fields["purpose"][1].decode()
                    return self._send(200, _public(api.add_file(data, filename or "", purpose)))
                if path == "/v1/batches":
                    params = json.loads(raw)
                    if params.get("input_file_id") not in api.files:
                        return self._send(400, {"error": {"message": "no such input file"}})
                    return self._send(200, api.create_batch(params))
                if m := re.fullmatch(r"/v1/batches/([\w-]+)/cancel", path):
                    batch = api.batches.get(m.group(1))
                    if batch is None:
                        return self._not_found()
                    if batch["status"] in ("validating", "in_progress"):
                        batch["status"], batch["cancelling_at"] = "cancelling", CREATED_AT + 1
                    return self._send(200, batch)
            return self._not_found()

    return Handler


@contextmanager
def serve(
    responder: Responder, final: str = "completed", refuse: Refuser | None = None
) -> Iterator[FakeBatchAPI]:
    """Run a ``FakeBatchAPI`` on a free loopback port for the duration of the block."""
    api = FakeBatchAPI(responder, final=final, refuse=refuse)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    server.daemon_threads = True
    api.base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
