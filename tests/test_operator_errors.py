"""Operator errors: every store, output and path problem is one line naming the file and the
cause, with its own exit code, and no output is emptied before the run knows it can write all.

Also: a run is held by the process running it (a second ``--resume`` of it is refused), a
resumed run's letters keep the paths the run was first given, and the limit flags reach the
runner.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import letter_path
from imr_extract import cli as cli_module
from imr_extract.cli import (
    EXIT_BUSY,
    EXIT_FAILURES,
    EXIT_OK,
    EXIT_OUTPUT,
    EXIT_PENDING,
    EXIT_STORE,
    EXIT_USAGE,
    app,
)
from imr_extract.limits import DEFAULT_LIMITS, Limits
from imr_extract.store import RunStore

cli = CliRunner()
LETTERS = ["CM16-0231706.pdf", "CM16-0231745.pdf", "CM17-0014449.pdf"]
BEFORE = "records of an earlier run\n"


def corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name in LETTERS:
        (directory / name).write_bytes(letter_path(name).read_bytes())
    return directory


def one_line(stderr: str) -> str:
    """The only line on stderr (no traceback), asserted so."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def test_exit_codes_are_distinct():
    codes = [EXIT_OK, EXIT_FAILURES, EXIT_USAGE, EXIT_PENDING, EXIT_OUTPUT, EXIT_STORE, EXIT_BUSY]
    assert len(set(codes)) == len(codes)
    page = Path(__file__).parents[1] / "docs" / "reference" / "inputs-outputs.md"
    readme = " ".join(page.read_text().split())
    for code, what in (
        (EXIT_OUTPUT, "an output file"),
        (EXIT_STORE, "the run store cannot be used"),
        (EXIT_BUSY, "the run is running in another process"),
    ):
        assert f"{code} {what}" in readme


# --------------------------------------------------------------------------- output files


@pytest.mark.parametrize("flag", ["--errors", "--log-file"])
def test_an_output_that_cannot_be_made_empties_nothing(tmp_path, flag):
    letters = corpus(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    out.write_text(BEFORE)
    (tmp_path / "file").write_text("a file, not a directory\n")
    target = tmp_path / "file" / "x.log"
    result = cli.invoke(
        app, ["extract", str(letters), "-o", str(out), flag, str(target), "--no-store"]
    )
    assert result.exit_code == EXIT_OUTPUT
    assert (
        one_line(result.stderr) == f"error: {target}: cannot create its directory (Not a directory)"
    )
    assert out.read_text() == BEFORE  # not emptied


def test_outputs_in_a_missing_directory_are_made(tmp_path):
    letters = corpus(tmp_path / "in")
    errors, log = tmp_path / "new" / "errors.jsonl", tmp_path / "logs" / "run.log"
    result = cli.invoke(
        app,
        [
            "extract",
            str(letters),
            "-o",
            str(tmp_path / "o.jsonl"),
            "--errors",
            str(errors),
            "--log-file",
            str(log),
            "--no-store",
            "--no-summary",
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    assert errors.read_text() == "" and log.is_file()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_under_an_output_is_one_line(tmp_path):
    letters = corpus(tmp_path / "in")
    out = tmp_path / "out.jsonl"
    out.write_text(BEFORE)
    # --errors on a full disk: the run stops at the first failure, named, and -o was not
    # emptied before the errors file was known to open
    (letters / "bad.txt").write_bytes(b"\x00binary")
    result = cli.invoke(
        app,
        ["extract", str(letters), "-o", "/dev/full", "--no-store", "--no-summary"],
    )
    assert result.exit_code == EXIT_OUTPUT
    assert one_line(result.stderr) == "error: /dev/full: cannot write (No space left on device)"
    result = cli.invoke(
        app,
        [
            "extract",
            str(letters / "bad.txt"),
            "--errors",
            "/dev/full",
            "-o",
            str(out),
            "--no-store",
            "--no-summary",
        ],
    )
    assert result.exit_code == EXIT_OUTPUT
    assert result.stderr.strip().splitlines()[-1] == (
        "error: /dev/full: cannot write (No space left on device)"
    )
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_standard_output_on_a_full_disk_is_one_line(tmp_path):
    db = tmp_path / "s.sqlite"
    letters = corpus(tmp_path / "in")
    assert cli.invoke(app, ["extract", str(letters), "--store", str(db), "-o", "-"]).exit_code == 0
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "imr_extract.cli", "export", "--store", str(db)],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
        )
    assert done.returncode == EXIT_OUTPUT
    assert one_line(done.stderr) == "error: <stdout>: cannot write (No space left on device)"


def test_a_review_page_that_cannot_be_written(tmp_path):
    (tmp_path / "file").write_text("")
    page = tmp_path / "file" / "page.html"
    letter = str(letter_path(LETTERS[0]))
    result = cli.invoke(app, ["review", letter, "-o", str(page), "--no-llm"])
    assert result.exit_code == EXIT_OUTPUT
    assert one_line(result.stderr).startswith(f"error: {page}: cannot write")


def test_every_commands_output_that_cannot_be_made_is_one_line(store, tmp_path):
    (tmp_path / "file").write_text("")
    target = tmp_path / "file" / "out"
    records = tmp_path / "records.jsonl"
    assert cli.invoke(app, ["export", "--store", str(store), "-o", str(records)]).exit_code == 0
    gold = Path(__file__).parent / "data" / "gold"
    for args in (
        ["schema"],
        ["export", "--store", str(store)],
        ["eval", str(records), "--gold", str(gold)],
        ["verify", str(records), "--letters", str(tmp_path / "in")],
        ["compare", str(records), str(records)],
    ):
        result = cli.invoke(app, [*args, "-o", str(target)])
        assert result.exit_code == EXIT_OUTPUT, (args, result.output)
        assert one_line(result.stderr) == (
            f"error: {target}: cannot create its directory (Not a directory)"
        )


# --------------------------------------------------------------------------- the run store


def test_a_full_store_is_one_line_and_resumes_once_there_is_room(tmp_path, monkeypatch):
    letters = corpus(tmp_path / "in")
    db, out = tmp_path / "s.sqlite", tmp_path / "out.jsonl"
    opened = RunStore.__init__

    def tiny(self: RunStore, *args, **kw) -> None:  # SQLite's own "disk full": no page to add
        opened(self, *args, **kw)
        pages = self.db.execute("PRAGMA page_count").fetchone()[0]
        self.db.execute(f"PRAGMA max_page_count = {pages + 2}")

    monkeypatch.setattr(RunStore, "__init__", tiny)
    result = cli.invoke(app, ["extract", str(letters), "--store", str(db), "-o", str(out)])
    assert result.exit_code == EXIT_STORE
    assert one_line(result.stderr) == (
        f"error: {db}: cannot write the run store: the disk is full (database or disk is full)"
    )
    written = out.read_text().splitlines()
    assert len(written) < len(LETTERS)  # what was not stored was not reported either
    monkeypatch.undo()  # room again: the run resumes, nothing lost or doubled
    result = cli.invoke(app, ["extract", "--resume", "last", "--store", str(db), "-o", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT count(*) FROM letters").fetchone() == (len(LETTERS),)
        assert con.execute("SELECT ok, errors FROM runs").fetchone() == (len(LETTERS), 0)


@pytest.fixture
def store(tmp_path: Path) -> Path:
    db = tmp_path / "s.sqlite"
    letters = corpus(tmp_path / "in")
    result = cli.invoke(app, ["extract", str(letters), "--store", str(db), "-o", os.devnull])
    assert result.exit_code == EXIT_OK
    return db


def damage_tables(db: Path, *tables: str) -> None:
    """Junk over the first page of each of ``tables`` (and its indexes), as a bad disk or a
    stray write leaves a file: the store still opens; reading those rows fails."""
    with sqlite3.connect(db) as con:
        size = con.execute("PRAGMA page_size").fetchone()[0]
        marks = ",".join("?" * len(tables))
        pages = con.execute(
            f"SELECT rootpage FROM sqlite_master WHERE tbl_name IN ({marks})", tables
        ).fetchall()
    with open(db, "r+b") as f:
        for (page,) in pages:
            f.seek((page - 1) * size)
            f.write(b"\xde\xad\xbe\xef" * (size // 4))


@pytest.mark.parametrize("damage", ["mid-file", "truncated"])
def test_a_corrupt_store_is_one_line(store, tmp_path, damage):
    if damage == "truncated":
        with open(store, "r+b") as f:
            f.truncate(store.stat().st_size // 2)
    else:
        damage_tables(store, "letters", "items")
    out = tmp_path / "out.jsonl"
    out.write_text(BEFORE)
    for args in (
        ["extract", str(tmp_path / "in"), "--store", str(store), "-o", str(out)],
        ["export", "--store", str(store), "-o", str(out)],
    ):
        result = cli.invoke(app, args)
        assert result.exit_code == EXIT_STORE, (args, result.output)
        line = one_line(result.stderr)
        assert line.startswith(f"error: {store}: cannot ") and "corrupt" in line
        if damage == "truncated":  # found as it opens: nothing emptied
            assert out.read_text() == BEFORE


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """``directory`` made read-only media: a read-only bind mount when the tests run as root
    (root writes through any permission bits), else its and its files' write bits removed."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in (directory, *directory.iterdir())}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    bind = ["mount", "--bind", str(directory), str(directory)]
    if subprocess.run(bind, capture_output=True).returncode != 0:
        pytest.skip("running as root, and no read-only mount can be made here")
    try:
        remount = ["mount", "-o", "remount,bind,ro", str(directory)]
        if subprocess.run(remount, capture_output=True).returncode != 0:
            pytest.skip("running as root, and no read-only mount can be made here")
        yield
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions")
def test_a_read_only_store_is_exported_and_refused_for_writing(store, tmp_path):
    media = tmp_path / "media"
    media.mkdir()
    shutil.copy(store, media / "s.sqlite")
    db, out = media / "s.sqlite", tmp_path / "out.jsonl"
    out.write_text(BEFORE)
    with read_only(media):  # not even a -shm file can be made next to it
        exported = cli.invoke(app, ["export", "--store", str(db)])
        assert exported.exit_code == EXIT_OK, exported.output
        assert [json.loads(line)["letter"] for line in exported.stdout.splitlines()] == LETTERS
        args = ["extract", str(tmp_path / "in"), "--store", str(db), "-o", str(out)]
        refused = cli.invoke(app, args)
        assert refused.exit_code == EXIT_STORE
        line = one_line(refused.stderr)
        assert line.startswith(f"error: {db}: cannot ") and "read-only" in line
        assert out.read_text() == BEFORE  # emptied only once the store is usable


# --------------------------------------------------------------------------- resume


def test_a_run_resumed_twice_at_once_is_refused(store, tmp_path):
    """The first resume holds the run (here: blocked reading its standard input); the second is
    refused, even in the moment before the first has marked the run as its own."""
    stdin_db = tmp_path / "stdin.sqlite"
    letter = letter_path(LETTERS[0]).read_bytes()
    first = subprocess.run(
        [sys.executable, "-m", "imr_extract.cli", "extract", "-", "--store", str(stdin_db)],
        input=letter,
        capture_output=True,
        timeout=60,
    )
    assert first.returncode == EXIT_OK, first.stderr
    with sqlite3.connect(stdin_db) as con:
        con.execute("DELETE FROM letters")  # the letter is read again when resumed
        con.execute("UPDATE runs SET status = 'interrupted'")
        [(run_id,)] = con.execute("SELECT id FROM runs").fetchall()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "imr_extract.cli",
            "extract",
            "--resume",
            "last",
            "--store",
            str(stdin_db),
            "-o",
            os.devnull,
            "--no-summary",
        ],
        stdin=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until it has taken the run
            with sqlite3.connect(stdin_db) as con:
                if con.execute("SELECT pid FROM runs").fetchone() == (holder.pid,):
                    break
            time.sleep(0.05)
        else:
            pytest.fail("the first resume never started")
        args = ["extract", "--resume", "last", "--store", str(stdin_db), "-o", os.devnull]
        second = cli.invoke(app, args)
        assert second.exit_code == EXIT_BUSY
        assert run_id in one_line(second.stderr)
        with sqlite3.connect(stdin_db) as con:  # the first has not marked the run yet
            con.execute("UPDATE runs SET status = 'interrupted', pid = NULL")
        second = cli.invoke(app, args)
        assert second.exit_code == EXIT_BUSY
        assert one_line(second.stderr) == (
            f"error: {stdin_db}: run {run_id} is running in another process now: wait for it "
            "to end, or stop it"
        )
        assert holder.stdin is not None
        holder.stdin.write(letter)
        holder.stdin.close()
        assert holder.wait(timeout=60) == EXIT_OK
    finally:
        holder.kill()
        holder.wait()
    with sqlite3.connect(stdin_db) as con:
        assert con.execute("SELECT resumes, ok, status FROM runs").fetchone() == (1, 1, "finished")


@pytest.mark.parametrize("from_elsewhere", [False, True])
def test_resumed_letters_keep_the_runs_relative_paths(tmp_path, monkeypatch, from_elsewhere):
    corpus(tmp_path / "in")
    db = tmp_path / "s.sqlite"
    monkeypatch.chdir(tmp_path)
    assert cli.invoke(app, ["extract", "in", "--store", str(db), "-o", os.devnull]).exit_code == 0
    with sqlite3.connect(db) as con:  # as a run killed after its first letter
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM letters WHERE letter != ?", (LETTERS[0],))
        con.execute("UPDATE runs SET status = 'interrupted'")
    if from_elsewhere:
        (tmp_path / "elsewhere").mkdir()
        monkeypatch.chdir(tmp_path / "elsewhere")
    out = Path("resumed.jsonl")
    result = cli.invoke(app, ["extract", "--resume", "last", "--store", str(db), "-o", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    assert Path.cwd() == (tmp_path / "elsewhere" if from_elsewhere else tmp_path)  # restored
    with sqlite3.connect(db) as con:
        paths = [p for (p,) in con.execute("SELECT path FROM letters ORDER BY path")]
    assert paths == [f"in/{name}" for name in LETTERS]
    sources = [json.loads(line)["source"]["path"] for line in out.read_text().splitlines()]
    assert sources == [f"in/{name}" for name in LETTERS]


# --------------------------------------------------------------------------- limit flags


def test_limit_flags_reach_the_runner(tmp_path, monkeypatch):
    from imr_extract.runner import BatchRunner

    seen: list[Limits] = []
    real_run = BatchRunner.run

    def spy(self: BatchRunner, *args, **kw):
        seen.append(self.limits)
        return real_run(self, *args, **kw)

    monkeypatch.setattr(BatchRunner, "run", spy)
    db = tmp_path / "s.sqlite"
    letter = str(letter_path(LETTERS[0]))
    result = cli.invoke(
        app,
        [
            "extract",
            letter,
            "--store",
            str(db),
            "-o",
            os.devnull,
            "--max-pages",
            "40",
            "--max-chars",
            "100000",
            "--max-items",
            "12",
            "--letter-timeout",
            "30",
            "--worker-memory",
            "512M",
            "--max-stdin",
            "1.5G",
        ],
    )
    assert result.exit_code == EXIT_OK, result.output
    assert seen == [
        Limits(
            max_pages=40,
            max_chars=100_000,
            max_items=12,
            letter_seconds=30.0,
            worker_memory=512 * 2**20,
            max_stdin_bytes=int(1.5 * 2**30),
        )
    ]
    with sqlite3.connect(db) as con:
        [(config,)] = con.execute("SELECT config FROM runs").fetchall()
    assert json.loads(config)["limits"]["max_items"] == 12
    seen.clear()
    result = cli.invoke(app, ["extract", letter, "--no-store", "-o", os.devnull])
    assert seen == [DEFAULT_LIMITS]
    for bad in ("lots", "-1G", "2X"):
        result = cli.invoke(app, ["extract", letter, "--worker-memory", bad, "--no-store"])
        assert result.exit_code == EXIT_USAGE
        assert one_line(result.stderr).startswith("error: --worker-memory: not a size")
    assert cli_module.parse_size("0") == 0 and cli_module.parse_size("2g") == 2 * 2**30
