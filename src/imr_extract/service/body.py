"""Request bodies: read to a cap while they stream, then turned into one letter's bytes.

Invariant: no request body is held past ``cap`` bytes. A declared ``Content-Length`` past it is
refused before a byte is read; a body that streams past it (chunked, or lying about its length)
is refused at the first chunk that crosses it. Either way the answer is 413 (``body-too-large``)
and nothing has been parsed. Only then is the body read as a letter: raw PDF or text, a
multipart form with exactly one file, or JSON ``{"text": ...}``.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from python_multipart.multipart import MultipartParser, parse_options_header

from .problems import ProblemError

#: The name a letter gets when the request gives none, by what it is.
DEFAULT_NAMES = {"pdf": "letter.pdf", "text": "letter.txt"}
#: Longest name kept from an upload (a name is a label: the rest is cut).
MAX_NAME = 200
_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\]")


@dataclass(frozen=True)
class Letter:
    """One uploaded letter: its bytes and the name it goes by (never a path of the server)."""

    name: str
    data: bytes


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def too_large(cap: int, seen: str) -> ProblemError:
    return ProblemError(
        "body-too-large",
        f"the request body is {seen}, more than the {_size(cap)} this service takes "
        "(a letter is 5-100 KB; see --max-body)",
    )


async def read_capped(chunks: AsyncIterator[bytes], declared: str | None, cap: int) -> bytes:
    """The whole body, or ``ProblemError`` (413) as soon as it is known to pass ``cap``."""
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise ProblemError("bad-request", "Content-Length is not a number") from None
        if cap and length > cap:
            raise too_large(cap, _size(length))
    blocks: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if cap and size > cap:
            raise too_large(cap, f"more than {_size(cap)}")
        blocks.append(chunk)
    return b"".join(blocks)


def clean_name(name: str | None, kind: str) -> str:
    """An uploaded file name as a label: its last path segment, no control characters, short."""
    if name:
        base = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).strip()
        if base and base not in (".", ".."):
            return base[:MAX_NAME]
    return DEFAULT_NAMES[kind]


def _multipart(content_type: str, body: bytes) -> Letter:
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ProblemError("bad-request", "a multipart body needs a boundary")
    parts: list[dict[str, object]] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": []})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        headers = parts[-1]["headers"]
        assert isinstance(headers, dict)
        headers[header[0].decode("latin-1").lower()] = header[1].decode("utf-8", "replace")
        header[0], header[1] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        chunks = parts[-1]["data"]
        assert isinstance(chunks, list)
        chunks.append(data[start:end])

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
        },
        max_header_count=16,
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # the parser's own errors: a malformed form
        raise ProblemError("bad-request", f"the multipart body cannot be read ({exc})") from None
    files: list[tuple[str | None, object]] = []
    for part in parts:
        headers = part["headers"]
        assert isinstance(headers, dict)
        _, disposition = parse_options_header(headers.get("content-disposition", ""))
        if b"filename" in disposition or (not files and len(parts) == 1):
            raw = disposition.get(b"filename", b"")
            files.append((raw.decode("utf-8", "replace") or None, part["data"]))
    if len(files) != 1:
        raise ProblemError(
            "bad-request",
            f"a multipart body must hold exactly one file (it holds {len(files)}): "
            "send many letters as a job",
        )
    name, data = files[0]
    assert isinstance(data, list)
    payload = b"".join(data)
    return Letter(clean_name(name, _kind(payload, name)), payload)


def _kind(data: bytes, name: str | None = None) -> str:
    if data.lstrip()[:5] == b"%PDF-" or (name or "").lower().endswith(".pdf"):
        return "pdf"
    return "text"


def letter_of(content_type: str | None, body: bytes, filename: str | None = None) -> Letter:
    """The letter a request body carries, by its Content-Type.

    Raises:
        ProblemError: an unsupported media type (415) or a body that cannot be read (400).
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/pdf":
        return Letter(clean_name(filename, "pdf"), body)
    if media in ("text/plain", "application/octet-stream"):
        return Letter(clean_name(filename, _kind(body, filename)), body)
    if media == "multipart/form-data":
        assert content_type is not None
        return _multipart(content_type, body)
    if media == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProblemError("bad-request", f"the JSON body cannot be read ({exc})") from None
        if not isinstance(data, dict) or not isinstance(data.get("text"), str):
            raise ProblemError("bad-request", 'a JSON body must be an object {"text": "..."}')
        name = data.get("name") if isinstance(data.get("name"), str) else filename
        return Letter(clean_name(name, "text"), data["text"].encode("utf-8", "surrogatepass"))
    raise ProblemError(
        "unsupported-media-type",
        f"Content-Type {media or '(none)'!r} is not a letter: send application/pdf, text/plain, "
        'multipart/form-data with one file, or application/json {"text": ...}',
    )
