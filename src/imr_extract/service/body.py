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

from ..runner import Letter  # one uploaded letter: its bytes and its name (no server path)
from .problems import ProblemError

#: The name a letter gets when the request gives none, by what it is.
DEFAULT_NAMES = {"pdf": "letter.pdf", "text": "letter.txt"}
#: Longest name kept from an upload (a name is a label: the rest is cut).
MAX_NAME = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


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


def path_segments(name: str) -> list[str]:
    """A sent path's segments, ``/`` and ``\\`` alike separating them."""
    return name.replace("\\", "/").split("/")


def label(segment: str) -> str:
    """A name's last segment as a label: control characters as ``_``, no surrounding space, at
    most ``MAX_NAME`` characters ('' when nothing is left)."""
    return _CONTROL.sub("_", segment).strip()[:MAX_NAME]


def clean_name(name: str | None, kind: str) -> str:
    """An uploaded file name as a label: its last path segment, no control characters, short."""
    base = label(path_segments(name)[-1]) if name else ""
    return base if base not in ("", ".", "..") else DEFAULT_NAMES[kind]


@dataclass(frozen=True)
class Part:
    """One part of a multipart form: its field name, its file name (None: a plain field)."""

    field: str
    filename: str | None
    data: bytes


def form_parts(content_type: str, body: bytes) -> list[Part]:
    """The parts of a ``multipart/form-data`` body.

    Raises:
        ProblemError: no boundary, or a malformed form (400).
    """
    try:
        _, params = parse_options_header(content_type)
    except (ValueError, UnicodeError):
        raise ProblemError("bad-request", "the Content-Type cannot be read") from None
    boundary = params.get(b"boundary")
    if not boundary:
        raise ProblemError("bad-request", "a multipart body needs a boundary")
    raw: list[tuple[dict[str, bytes], list[bytes]]] = []
    header: list[bytes] = [b"", b""]

    def on_part_begin() -> None:
        raw.append(({}, []))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header[0] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header[1] += data[start:end]

    def on_header_end() -> None:
        raw[-1][0][header[0].decode("latin-1").lower()] = header[1]  # bytes as sent
        header[0], header[1] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        raw[-1][1].append(data[start:end])

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
    parts = []
    for headers, chunks in raw:
        try:
            _, disposition = parse_options_header(headers.get("content-disposition", b""))
        except (ValueError, UnicodeError):
            why = "a part's Content-Disposition cannot be read"
            raise ProblemError("bad-request", why) from None
        filename = disposition.get(b"filename")
        parts.append(
            Part(
                disposition.get(b"name", b"").decode("utf-8", "replace"),
                filename.decode("utf-8", "replace") if filename is not None else None,
                b"".join(chunks),
            )
        )
    return parts


def _multipart(content_type: str, body: bytes) -> Letter:
    parts = form_parts(content_type, body)
    files = [p for p in parts if p.filename is not None] or (parts if len(parts) == 1 else [])
    if len(files) != 1:
        raise ProblemError(
            "bad-request",
            f"a multipart body must hold exactly one file (it holds {len(files)}): "
            "send many letters as a job",
        )
    part = files[0]
    return Letter(clean_name(part.filename, _kind(part.data, part.filename)), part.data)


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


def letter_and_record(content_type: str | None, body: bytes) -> tuple[Letter, object]:
    """A letter and a record (any JSON value: ``verify`` judges it) from a ``/v1/verify`` body:
    a form with a ``letter`` file and a ``record`` part, or JSON ``{"text", "name", "record"}``.

    Raises:
        ProblemError: 400 or 415, as ``letter_of``.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "multipart/form-data":
        assert content_type is not None
        parts = {p.field: p for p in form_parts(content_type, body)}
        if "letter" not in parts or "record" not in parts:
            raise ProblemError(
                "bad-request", "a multipart body must hold a 'letter' file and a 'record' part"
            )
        letter = parts["letter"]
        record_text = parts["record"].data
        kind = _kind(letter.data, letter.filename)
        found = Letter(clean_name(letter.filename, kind), letter.data)
    elif media == "application/json":
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ProblemError("bad-request", f"the JSON body cannot be read ({exc})") from None
        if not isinstance(data, dict) or "record" not in data:
            raise ProblemError("bad-request", 'a JSON body must be {"text", "name", "record"}')
        return letter_of("application/json", body), data["record"]
    else:
        raise ProblemError(
            "unsupported-media-type",
            "send multipart/form-data (a 'letter' file and a 'record' part) or application/json",
        )
    try:
        return found, json.loads(record_text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProblemError("bad-request", f"the record is not JSON ({exc})") from None
