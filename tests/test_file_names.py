"""File names that are not valid UTF-8: carried without loss, written as ``\\xNN``, never fatal.

Real files with such names are made with ``os.open`` on a bytes path (Linux file names are
bytes); each goes through extract (JSON Lines, JSON, CSV, the run store), export, review, resume
and verify.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import letter_path
from imr_extract.cli import EXIT_FAILURES, EXIT_OK, app
from imr_extract.names import escape_name, unescape_name
from imr_extract.rows import read_csv_records
from imr_extract.schema import LetterRecord
from test_review import embedded_data

pytestmark = pytest.mark.skipif(
    sys.platform == "win32" or os.fsencode("\udce9") != b"\xe9",
    reason="a file name that is not UTF-8 needs POSIX bytes names",
)

cli = CliRunner()
#: Bytes names: a Latin-1 e-acute and a lone 0xff, neither valid UTF-8.
CAFE, BAD = b"caf\xe9.pdf", b"bad\xff.txt"
CAFE_WRITTEN, BAD_WRITTEN = "caf\\xe9.pdf", "bad\\xff.txt"


def make(directory: Path, name: bytes, data: bytes) -> str:
    """A real file named ``name`` (bytes) in ``directory``; its path as Python reads it."""
    path = os.fsencode(directory) + b"/" + name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    return os.fsdecode(path)


@pytest.fixture
def letters(tmp_path: Path) -> Path:
    """A letter under a name that is not UTF-8 (first in the batch), a good one after it, and a
    file that fails, also under such a name."""
    d = tmp_path / "in"
    d.mkdir()
    make(d, BAD, b"\x00\x01binary\x00" * 8)  # sorted first: fails before the others
    make(d, CAFE, letter_path("CM16-0231706.pdf").read_bytes())
    make(d, b"good.pdf", letter_path("CM16-0231745.pdf").read_bytes())
    return d


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_escape_and_unescape_are_exact():
    name = os.fsdecode(b"dir/caf\xe9 \xff\x80.pdf")
    written = escape_name(name)
    assert written == "dir/caf\\xe9 \\xff\\x80.pdf"
    written.encode("utf-8")  # writable anywhere
    assert unescape_name(written) == name and os.fsencode(unescape_name(written)).endswith(
        b"caf\xe9 \xff\x80.pdf"
    )
    for valid in ("café.pdf", "plain.txt", "C:\\letters\\a.pdf", "tab\\t.pdf", ""):
        assert escape_name(valid) == valid and unescape_name(valid) == valid
    # what was written reads back and writes out again unchanged
    for text in ("x\\xe9", "x\\xE9y", "\\x7f", "a\\\\xe9"):
        assert escape_name(unescape_name(text)) == text.replace("\\xE9", "\\xe9")


def test_extract_jsonl_store_errors_and_export(letters, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    db, out, errors = tmp_path / "s.sqlite", tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    args = ["extract", "in", "--store", str(db), "--no-summary"]
    result = cli.invoke(app, [*args, "-o", str(out), "--errors", str(errors)])
    # the batch is not stopped: the failed file is named, both letters are extracted
    assert result.exit_code == EXIT_FAILURES, result.output
    assert f"error: in/{BAD_WRITTEN}: binary" in result.stderr
    records = lines(out)
    assert [r["letter"] for r in records] == [CAFE_WRITTEN, "good.pdf"]
    assert records[0]["source"]["path"] == f"in/{CAFE_WRITTEN}"
    assert lines(errors) == [
        {"letter": f"in/{BAD_WRITTEN}", "error": "binary", "cause": lines(errors)[0]["cause"]}
    ]
    # lossless: the record read back names the very file it was made from
    record = LetterRecord.model_validate_json(out.read_text(encoding="utf-8").splitlines()[0])
    assert record.letter == os.fsdecode(CAFE)
    assert record.source.path is not None
    with open(record.source.path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == record.source.sha256
    assert record.model_dump_json() == out.read_text(encoding="utf-8").splitlines()[0]
    # the store: escaped text in its columns, the same records as the output
    with sqlite3.connect(db) as con:
        stored = con.execute("SELECT path, letter, status FROM letters ORDER BY path").fetchall()
        items = con.execute("SELECT DISTINCT letter FROM items ORDER BY letter").fetchall()
    assert stored == [
        (f"in/{BAD_WRITTEN}", BAD_WRITTEN, "error"),
        (f"in/{CAFE_WRITTEN}", CAFE_WRITTEN, "ok"),
        ("in/good.pdf", "good.pdf", "ok"),
    ]
    assert items == [(CAFE_WRITTEN,), ("good.pdf",)]
    exported = cli.invoke(app, ["export", "--store", str(db)])
    assert exported.exit_code == EXIT_OK and exported.stdout == out.read_text(encoding="utf-8")
    # a re-run is served from the store, and writes the same
    again = tmp_path / "again.jsonl"
    assert cli.invoke(app, [*args, "-o", str(again)]).exit_code == EXIT_FAILURES
    assert again.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")


def test_extract_csv_and_json_and_csv_reads_back(letters, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.csv"
    result = cli.invoke(app, ["extract", "in", "--no-store", "-f", "csv", "-o", str(out)])
    assert result.exit_code == EXIT_FAILURES, result.output
    text = out.read_text(encoding="utf-8")
    assert {row["letter"] for row in csv.DictReader(io.StringIO(text))} == {
        CAFE_WRITTEN,
        "good.pdf",
    }
    back = {data["letter"] for _, data in read_csv_records(text, "out.csv")}
    assert back == {os.fsdecode(CAFE), "good.pdf"}  # the name that opens the file
    exported = tmp_path / "out.json"
    result = cli.invoke(app, ["extract", "in", "--no-store", "-f", "json", "-o", str(exported)])
    assert result.exit_code == EXIT_FAILURES
    assert [r["letter"] for r in json.loads(exported.read_text())] == [CAFE_WRITTEN, "good.pdf"]


def test_verify_finds_the_letter_by_its_written_name(letters, tmp_path):
    out = tmp_path / "out.jsonl"
    cli.invoke(app, ["extract", str(letters), "--no-store", "-o", str(out)])
    result = cli.invoke(app, ["verify", str(out), "--letters", str(letters), "--no-summary"])
    assert result.exit_code == EXIT_OK, result.output
    assert [json.loads(line)["letter"] for line in result.stdout.splitlines()] == [
        CAFE_WRITTEN,
        "good.pdf",
    ]


def test_review_of_a_letter_so_named(letters, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cafe = os.fsdecode(os.fsencode(letters) + b"/" + CAFE)
    out = tmp_path / "out.jsonl"
    cli.invoke(app, ["extract", str(letters), "--no-store", "-o", str(out)])
    result = cli.invoke(app, ["review", cafe, "--results", str(out), "--no-llm"])
    assert result.exit_code == EXIT_OK, result.output
    page = Path(os.fsdecode(b"caf\xe9.review.html"))  # named after its letter, bytes and all
    assert result.stdout.strip() == str(tmp_path / "caf\\xe9.review.html")
    html = (tmp_path / page).read_text(encoding="utf-8")
    assert f"<title>Review: {CAFE_WRITTEN}</title>" in html
    data = embedded_data(html)  # the page's data: the name and each record as written
    assert data["letter"] == CAFE_WRITTEN
    assert {r["letter"] for r in data["records"].values()} == {CAFE_WRITTEN}
    assert len(data["records"]) == 2  # the rules' record, and the one from --results


def test_resume_finds_a_file_so_named_given_on_the_command_line(letters, tmp_path):
    db, out = tmp_path / "s.sqlite", tmp_path / "out.jsonl"
    cafe = os.fsdecode(os.fsencode(letters) + b"/" + CAFE)
    good = str(letters / "good.pdf")
    result = cli.invoke(app, ["extract", cafe, good, "--store", str(db), "-o", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    with sqlite3.connect(db) as con:  # as a run killed before its first letter was stored
        [(inputs,)] = con.execute("SELECT inputs FROM runs").fetchall()
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM letters WHERE letter = ?", (CAFE_WRITTEN,))
        con.execute("UPDATE runs SET status = 'interrupted'")
    assert json.loads(inputs) == [cafe, good]  # exactly as given
    resumed = tmp_path / "resumed.jsonl"
    result = cli.invoke(
        app, ["extract", "--resume", "last", "--store", str(db), "-o", str(resumed)]
    )
    assert result.exit_code == EXIT_OK, result.output
    assert resumed.read_text(encoding="utf-8") == out.read_text(encoding="utf-8")
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM letters WHERE status = 'ok'").fetchone() == (2,)
