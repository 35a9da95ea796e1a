"""The service app in process (no server): what no real request can make happen on purpose."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest

from imr_extract.errors import (
    InternalError,
    LLMDeadlineError,
    LLMRejectedError,
    LLMTransportError,
    NoDecisionsError,
    PdfError,
    TooLargeInputError,
    TooManyPagesError,
    WorkerCrashedError,
)
from imr_extract.service.app import create_app
from imr_extract.service.body import clean_name, letter_of, read_capped
from imr_extract.service.problems import PROBLEM_BASE, ProblemError, from_error
from imr_extract.service.server import ServeError, check
from imr_extract.service.settings import Settings, is_loopback

SECRET = "sk-" + "proj-" + "A1b2C3d4" * 4


def test_a_bug_is_a_500_problem_and_one_redacted_log_line_without_a_trace(caplog, tmp_path):
    app = create_app(Settings(store=tmp_path / "s.sqlite", letter_workers=1, auth=False))

    async def boom() -> None:
        raise RuntimeError(f"the endpoint said {SECRET} at /srv/secret/path")

    app.add_api_route("/boom", boom)
    transport = httpx.ASGITransport(app=app)  # raises what the app lets escape

    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/boom")

    with caplog.at_level(logging.ERROR, logger="imr_extract.service"):
        r = asyncio.run(call())
    assert r.status_code == 500
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "internal"
    assert SECRET not in r.text and "/srv/secret" not in r.text and "Traceback" not in r.text
    [line] = [rec.getMessage() for rec in caplog.records if rec.name == "imr_extract.service"]
    assert "RuntimeError" in line and SECRET not in line and "[redacted]" in line
    assert "Traceback" not in line and "\n" not in line


@pytest.mark.parametrize(
    ("name", "kind", "want"),
    [
        ("../../etc/passwd", "text", "passwd"),
        ("C:\\Users\\x\\letter.pdf", "pdf", "letter.pdf"),
        ("a\x00b\nc.txt", "text", "a_b_c.txt"),
        ("..", "pdf", "letter.pdf"),
        (None, "text", "letter.txt"),
        ("x" * 500 + ".pdf", "pdf", "x" * 200),
    ],
)
def test_an_uploaded_name_is_a_label_never_a_path(name, kind, want):
    assert clean_name(name, kind) == want


def test_the_cap_holds_for_a_body_that_streams_past_it():
    async def chunks():
        for _ in range(100):
            yield b"x" * 1000

    async def read(cap: int, declared: str | None) -> bytes:
        return await read_capped(chunks(), declared, cap)

    assert len(asyncio.run(read(100_000, None))) == 100_000
    with pytest.raises(ProblemError) as caught:
        asyncio.run(read(50_000, None))
    assert caught.value.problem.status == 413
    with pytest.raises(ProblemError):  # a declared length past the cap: refused unread
        asyncio.run(read(50_000, "100000"))
    assert len(asyncio.run(read(0, None))) == 100_000  # 0: no cap


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
     ("localhost", True), ("0.0.0.0", False), ("::", False), ("10.0.0.5", False),
     ("example.org", False)],
)  # fmt: skip
def test_no_auth_only_on_loopback(host, loopback):
    assert is_loopback(host) is loopback
    if loopback:
        check(Settings(host=host, auth=False))
    else:
        with pytest.raises(ServeError, match="loopback"):
            check(Settings(host=host, auth=False))
    check(Settings(host=host, auth=True))  # with keys, any host


def test_a_form_whose_headers_are_not_latin_1_is_read_and_its_utf8_name_kept():
    """Found by the schemathesis run: a part's header that is not Latin-1 was a 500."""
    body = (
        b'--c1\r\nContent-Disposition: form-data; name="\xf2\x83\x88\xb2"; '
        b'filename="\xc3\xa9t\xc3\xa9.txt"\r\n\r\nthe text\r\n--c1--\r\n'
    )
    letter = letter_of("multipart/form-data; boundary=c1", body)
    assert (letter.name, letter.data) == ("été.txt", b"the text")
    with pytest.raises(ProblemError) as caught:
        letter_of("multipart/form-data; boundary=c1", b"--c1\r\nno headers end")
    assert caught.value.problem.status == 400


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (PdfError, 422), (NoDecisionsError, 422), (TooManyPagesError, 422),
        (WorkerCrashedError, 422), (LLMDeadlineError, 422), (TooLargeInputError, 413),
        (LLMTransportError, 502), (LLMRejectedError, 502), (InternalError, 500),
    ],
)  # fmt: skip
def test_a_letters_error_is_its_own_problem_type_and_status(error, status):
    """The letter's doing is a 4xx, the model endpoint's a 502, a bug a 500 that says nothing
    of itself; the type is the code's, the detail redacted."""
    exc = error("upload.pdf", f"it failed near {SECRET} in /srv/app/x.py")
    problem = from_error(exc, "upload.pdf").problem
    assert (problem.status, problem.code, problem.type) == (
        status,
        exc.code,
        PROBLEM_BASE + exc.code,
    )
    assert SECRET not in problem.detail and problem.letter == "upload.pdf"
    if error is InternalError:
        assert "/srv/app" not in problem.detail
