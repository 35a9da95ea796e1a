"""Failure drills, end to end: a batch killed with SIGKILL and resumed; 1,000 letters with 10%
broken; a model endpoint that misbehaves in every way it can; a scan for a leaked API key."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import secrets
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pypdf
import pytest

from conftest import LETTERS, document
from fake_openai import Reply, answer, serve
from imr_extract.cli import _Redact
from imr_extract.extract import extract_one
from imr_extract.hybrid import HybridExtractor
from imr_extract.llm import LLMConfig, LLMExtractor
from imr_extract.runner import BatchRunner, run_batch
from imr_extract.schema import schema_hash
from imr_extract.store import ResultKey, RunStore, code_version

ROOT = Path(__file__).parents[1]
PDFS = sorted(LETTERS.glob("pdf/*.pdf"))
TEXTS = sorted(LETTERS.glob("txt/*.txt"))


def imr_extract(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "imr-extract"
    cmd = [str(script)] if script.exists() else [sys.executable, "-m", "imr_extract.cli"]
    return [*cmd, *args]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without any model settings (the rules are the default backend)."""
    drop = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "IMR_LLM_MODEL", "OPENAI_MODEL", "IMR_LLM_MODE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, **extra}


def sql(db: Path, query: str, *args: object) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(query, args).fetchall()
    finally:
        con.close()


def pdf_copy(src: Path, k: int) -> bytes:
    """The PDF with a comment after its %%EOF: other bytes (another sha256), the same letter."""
    return src.read_bytes() + f"\n% copy {k}\n".encode()


def text_copy(k: int, i: int) -> bytes:
    """A shared letter's text, written as a text letter, harmlessly perturbed by ``k``."""
    text = document((PDFS + TEXTS)[i % len(PDFS + TEXTS)].name).text
    if k % 3 == 0:
        return text.replace("\n", "\r\n").encode()  # CRLF
    if k % 3 == 1:
        return (text + "   \n\n\t\n").encode()  # trailing whitespace
    return b"\xef\xbb\xbf" + text.replace("\n", "  \n").encode()  # BOM, trailing spaces


# --- SIGKILL mid-batch, then --resume ------------------------------------------------------------


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (Linux /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its exit status is left to collect


def test_a_batch_killed_with_sigkill_resumes_to_the_clean_result(tmp_path):
    letters = tmp_path / "letters"
    letters.mkdir()
    for k in range(4):  # 256 PDFs, every one other bytes, and 44 text letters
        for src in PDFS:
            (letters / f"{src.stem}-{k}.pdf").write_bytes(pdf_copy(src, k))
    for i in range(44):
        (letters / f"t{i:02d}.txt").write_bytes(text_copy(i, i))
    total = 300
    db = tmp_path / "run.sqlite"
    args = ["--store", str(db), "--workers", "2", "--no-progress", "--no-summary"]

    proc = subprocess.Popen(
        imr_extract("extract", str(letters), *args, "-o", str(tmp_path / "killed.jsonl")),
        env=clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    done = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if db.exists():
            try:
                done = sql(db, "SELECT count(*) FROM letters")[0][0]
            except sqlite3.OperationalError:  # the schema is being created
                done = 0
        if done >= 20:
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the batch ended before it could be killed: {proc.stderr.read()}"
    family = descendants(proc.pid)  # the forkserver, its resource tracker, the workers
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    # The killed batch's helpers go with it (workers watch the batch's process).
    deadline = time.monotonic() + 20
    while any(map(alive, family)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [pid for pid in family if alive(pid)], "processes outlived the killed batch"

    # What the kill left: whole letters only, an unfinished run, an intact database.
    assert sql(db, "PRAGMA integrity_check") == [("ok",)]
    killed = sql(db, "SELECT count(*) FROM letters")[0][0]
    assert 20 <= killed < total, "not killed mid-batch"
    assert sql(db, "SELECT status, finished_at FROM runs") == [("running", None)]
    half_written = """SELECT l.letter FROM letters AS l
                      WHERE l.item_count <> (SELECT count(*) FROM items WHERE letter_key = l.key)"""
    assert sql(db, half_written) == []

    out = tmp_path / "resumed.jsonl"
    result = subprocess.run(
        imr_extract("extract", "--resume", "last", *args, "-o", str(out)),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr

    # Every letter exactly once, one run, finished, resumed once.
    assert sql(db, "SELECT count(*), count(DISTINCT path), count(DISTINCT key) FROM letters") == [
        (total, total, total)
    ]
    assert sql(db, "SELECT status, resumes, ok, errors FROM runs") == [("finished", 1, total, 0)]
    assert sql(db, half_written) == []
    # The records equal a clean run's, and so does the resumed run's output, in order.
    clean = [o.record.model_dump_json() for o in run_batch([str(letters)])]
    stored = dict(sql(db, "SELECT path, record FROM letters"))
    assert [stored[json.loads(r)["source"]["path"]] for r in clean] == clean
    assert out.read_text().splitlines() == clean
    assert sql(db, "SELECT count(*) FROM letters WHERE run_id <> (SELECT id FROM runs)") == [(0,)]


# --- 1,000 letters, 10% of them broken -----------------------------------------------------------


def _pdf(writer: pypdf.PdfWriter) -> bytes:
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def broken_files(d: Path) -> dict[str, tuple[str, str]]:
    """100 bad files: name -> (error code, a piece of the cause)."""
    bad: dict[str, tuple[str, str]] = {}
    locked = pypdf.PdfWriter(clone_from=pypdf.PdfReader(PDFS[0]))
    locked.encrypt(user_password="correct horse battery staple", algorithm="AES-128")
    locked_bytes = _pdf(locked)
    blank = pypdf.PdfWriter()
    blank.add_blank_page(612, 792)
    scan = _pdf(blank)
    for i in range(15):
        (d / f"bad-empty-{i:02d}.txt").write_bytes(b"" if i % 2 else b" \n\t\n")
        bad[f"bad-empty-{i:02d}.txt"] = ("empty", "empty file")
        (d / f"bad-binary-{i:02d}.txt").write_bytes(bytes(range(256)) * (i + 1))
        bad[f"bad-binary-{i:02d}.txt"] = ("binary", "binary data")
        cut = PDFS[i].read_bytes()
        (d / f"bad-truncated-{i:02d}.pdf").write_bytes(cut[: len(cut) // 2])
        bad[f"bad-truncated-{i:02d}.pdf"] = ("pdf", "truncated PDF")
        (d / f"bad-locked-{i:02d}.pdf").write_bytes(locked_bytes + f"% {i}\n".encode())
        bad[f"bad-locked-{i:02d}.pdf"] = ("pdf", "password-protected PDF")
        (d / f"bad-scan-{i:02d}.pdf").write_bytes(scan + f"% {i}\n".encode())
        bad[f"bad-scan-{i:02d}.pdf"] = ("no-text", "no text layer (scanned?); run OCR first")
    for i in range(14):
        (d / f"bad-undecodable-{i:02d}.txt").write_bytes(
            b"Case Number: CM16-02\x81\x8d\x8f\x90\x9d" + b"x" * i
        )
        bad[f"bad-undecodable-{i:02d}.txt"] = ("encoding", "neither UTF-8")
    for i in range(10):
        (d / f"bad-notes-{i:02d}.txt").write_text(f"Dear colleague, nothing was decided. {i}\n")
        bad[f"bad-notes-{i:02d}.txt"] = ("no-decisions", "no decisions found")
    one_line = document(TEXTS[0].name).text.encode()
    with (d / "bad-huge.txt").open("wb") as f:
        for _ in range(50_000_000 // len(one_line) + 1):
            f.write(one_line)
    bad["bad-huge.txt"] = ("too-large", "file too large for a letter")
    assert len(bad) == 100
    return bad


def test_a_thousand_letters_with_a_hundred_broken(tmp_path):
    d = tmp_path / "letters"
    d.mkdir()
    good: list[str] = []
    for k in range(7):  # 448 PDFs; copies 0 and 1 have the same bytes (served from the store)
        for src in PDFS:
            name = f"{'z-dup-' if k == 1 else ''}pdf-{src.stem}-{k}.pdf"
            (d / name).write_bytes(src.read_bytes() if k < 2 else pdf_copy(src, k))
            good.append(name)
    for i in range(452):
        name = f"txt-{i:03d}.txt"
        (d / name).write_bytes(text_copy(i // 66, i))
        good.append(name)
    bad = broken_files(d)
    assert len(good) + len(bad) == 1000

    db, out, errors = tmp_path / "s.sqlite", tmp_path / "out.jsonl", tmp_path / "errors.jsonl"
    start = time.monotonic()
    result = subprocess.run(
        imr_extract(
            "extract",
            str(d),
            "--workers",
            "2",
            "--store",
            str(db),
            "-o",
            str(out),
            "--errors",
            str(errors),
            "--no-progress",
        ),
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    elapsed = time.monotonic() - start
    assert result.returncode == 1, result.stderr
    print(f"\n1,000-letter drill: {elapsed:.1f} s with --workers 2")

    # Every good letter is extracted, exactly as it is alone.
    records = {json.loads(line)["source"]["path"]: line for line in out.read_text().splitlines()}
    assert len(records) == len(good) == 900
    for name in good:
        alone = extract_one(str(d / name))
        assert alone.ok, name
        assert records[str(d / name)] == alone.record.model_dump_json(), name
    # Every bad one is named, with the right code and cause: on stderr, in --errors, in the store.
    failures = {Path(e["letter"]).name: e for e in map(json.loads, errors.read_text().splitlines())}
    assert set(failures) == set(bad)
    stored = {
        Path(p).name: (code, cause)
        for p, code, cause in sql(
            db, "SELECT path, error_code, cause FROM letters WHERE status = 'error'"
        )
    }
    for name, (code, cause) in bad.items():
        assert failures[name]["error"] == code and cause in failures[name]["cause"], name
        assert stored[name] == (code, failures[name]["cause"])
        assert f"error: {d / name}: {failures[name]['cause']}" in result.stderr
    # One row per distinct content (byte-identical copies are one letter), one per failed file.
    contents = {hashlib.sha256((d / name).read_bytes()).hexdigest() for name in good}
    assert len(contents) < len(good)
    assert sql(db, "SELECT count(*) FROM letters WHERE status = 'ok'") == [(len(contents),)]
    assert sql(db, "SELECT count(*) FROM letters WHERE status = 'error'") == [(100,)]
    assert "failed" in result.stderr and "from the run store" in result.stderr


# --- a model endpoint that misbehaves ------------------------------------------------------------

HEADER = "CM16-0231706.pdf"  # every header date; the rules miss the injury date once relabelled
INJURY = {"date_of_injury": "10/23/2016", "items": []}


def needs_the_model(d: Path, n: int) -> list[Path]:
    """Letters the rules cannot complete (the injury date's label changed), each other bytes."""
    text = document(HEADER).text.replace("Date of Injury:", "Injury Dt:", 1)
    paths = []
    for i in range(n):
        p = d / f"relabelled-{i}.txt"
        p.write_text(text + "\n" * (i + 1))
        paths.append(p)
    return paths


def hybrid(tmp_path: Path, base_url: str, **changes: object) -> HybridExtractor:
    config = LLMConfig(
        base_url=base_url,
        model="fake-model",
        api_key="imr-test-placeholder-not-a-key",
        transport_retries=2,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
        timeout_s=5.0,
        max_reasks=0,
        use_cache=False,
        cache_dir=tmp_path / "cache",
    )
    return HybridExtractor(LLMExtractor(config.with_(**changes)))


MISBEHAVIOURS = {
    "429-retry-after": ([Reply(status=429, headers={"Retry-After": "0.3"})], "llm-transport", 3),
    "500": ([Reply(status=500)], "llm-transport", 3),
    "stall": ([Reply(delay_s=1.0, content="{}")], "llm-transport", 3),
    "not-json": ([Reply(body=b"<html>502 bad gateway</html>")], "llm-bad-response", 3),
    "cut-off": ([answer(INJURY, finish_reason="length")], "llm-truncated", 1),
}


@pytest.mark.parametrize("how", list(MISBEHAVIOURS))
def test_a_misbehaving_endpoint_costs_the_letter_only_its_model_values(how, tmp_path):
    script, code, tries = MISBEHAVIOURS[how]
    d = tmp_path / "letters"
    d.mkdir()
    paths = needs_the_model(d, 2)
    (d / HEADER).write_bytes((LETTERS / "pdf" / HEADER).read_bytes())  # needs no model
    db = tmp_path / "s.sqlite"
    with serve(script) as fake, RunStore(db) as store:
        extractor = hybrid(tmp_path, fake.base_url, timeout_s=0.2 if how == "stall" else 5.0)
        key = ResultKey(
            "hybrid", extractor.llm.prompt_ref, "fake-model", schema_hash(), code_version()
        )
        run_id = store.start_run(key, argv=[], inputs=[str(d)], config={})
        start = time.monotonic()
        runner = BatchRunner(extractor, concurrency=2, store=store, run_id=run_id, key=key)
        outcomes = list(runner.run([str(d)]))
        elapsed = time.monotonic() - start
    # retried within the budget (transient failures: 1 + 2 retries; a cut-off answer: once)
    assert len(fake.requests) == tries * len(paths)
    if how == "429-retry-after":
        assert elapsed >= 2 * 0.3  # waited as long as Retry-After said, twice per letter
    assert all(o.ok for o in outcomes)  # the rules' record stands for every letter
    rows = sql(db, "SELECT letter, status, model_error, record, requests FROM letters")
    by_letter = {r[0]: r for r in rows}
    assert by_letter[HEADER][2] is None and by_letter[HEADER][4] == 0
    for p in paths:
        _, status, model_error, record, requests = by_letter[p.name]
        assert status == "ok" and model_error.startswith(code)
        extractor_info = json.loads(record)["extractor"]
        assert (
            extractor_info["model_error"] == model_error and extractor_info["routed"] == "sections"
        )
        # usage counts every request the endpoint received, failed ones too (for --rpm)
        assert requests == tries
        assert json.loads(record)["dates"]["injury"] is None  # not made up
        assert any("model failed" in w for w in json.loads(record)["warnings"])

    # --retry-model-errors, once the endpoint is healthy again, completes them.
    with serve([answer(INJURY)]) as fake, RunStore(db) as store:
        extractor = hybrid(tmp_path, fake.base_url)
        runner = BatchRunner(
            extractor, concurrency=2, store=store, run_id=run_id, key=key, retry_model_errors=True
        )
        again = list(runner.run([str(d)]))
    assert len(fake.requests) == len(paths) and runner.reused == 1
    assert all(o.record.dates.injury.isoformat() == "2016-10-23" for o in again[: len(paths)])
    assert sql(db, "SELECT count(*) FROM letters WHERE model_error IS NOT NULL") == [(0,)]
    assert sql(db, "SELECT count(*) FROM letters") == [(3,)]


# --- the API key never lands anywhere ------------------------------------------------------------


def test_the_api_key_is_in_no_log_row_output_or_cassette(tmp_path):
    key = "sk-" + "imrdrill-" + secrets.token_hex(16)  # built here: no literal for scanners
    d = tmp_path / "letters"
    d.mkdir()
    needs_the_model(d, 3)
    (d / "empty.txt").write_bytes(b"")
    (d / HEADER).write_bytes((LETTERS / "pdf" / HEADER).read_bytes())
    db, out, errors, log = (tmp_path / n for n in ("s.sqlite", "o.jsonl", "e.jsonl", "run.log"))
    with serve([Reply(status=500), Reply(status=400), answer(INJURY)]) as fake:
        env = clean_env(
            OPENAI_API_KEY=key,
            OPENAI_BASE_URL=fake.base_url,
            IMR_LLM_MODEL="fake-model",
            IMR_CACHE_DIR=str(tmp_path / "cache"),
        )
        result = subprocess.run(
            imr_extract(
                "extract",
                str(d),
                "--store",
                str(db),
                "-o",
                str(out),
                "--errors",
                str(errors),
                "--log-file",
                str(log),
                "--log-level",
                "DEBUG",
                "--concurrency",
                "2",
                "--rpm",
                "600",
                "--tpm",
                "1000000",
                "--no-progress",
            ),
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 1, result.stderr  # the empty file
    # the key was in play: the endpoint received it
    assert any(key in h.get("authorization", "") for h in fake.headers), result.stderr
    assert len(out.read_text().splitlines()) == 4
    logged = log.read_text()
    assert "DEBUG" in logged and "httpx" in logged and "openai" in logged
    places = {"stdout": result.stdout, "stderr": result.stderr, "log": logged}
    for path in (out, errors):
        places[path.name] = path.read_text()
    for path in (tmp_path / "cache").rglob("*"):
        if path.is_file():
            places[str(path)] = path.read_text(errors="replace")
    con = sqlite3.connect(db)
    for (table,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
        places[f"table {table}"] = "\n".join(map(repr, con.execute(f"SELECT * FROM {table}")))
    con.close()
    places.update(
        (str(p), p.read_text(errors="replace"))
        for p in (ROOT / "cassettes").glob("*")
        if p.is_file()
    )
    assert "table runs" in places and "table letters" in places and "table items" in places
    leaks = [where for where, text in places.items() if key in text or key[3:] in text]
    assert leaks == []


def test_the_log_filter_masks_the_key_and_bearer_tokens(tmp_path):
    key = "sk-" + "imrdrill-" + secrets.token_hex(8)
    handler = logging.FileHandler(tmp_path / "x.log")
    handler.addFilter(_Redact([key]))
    log = logging.getLogger("imr-extract-drill")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.error("headers %s", {"Authorization": f"Bearer {key}"})
        log.error("token Bearer abc.def-ghi and %s", key)
        try:
            raise RuntimeError(f"failed with {key}")
        except RuntimeError:
            log.exception("boom")
    finally:
        handler.close()
        log.removeHandler(handler)
    text = (tmp_path / "x.log").read_text()
    assert key not in text and "abc.def-ghi" not in text
    assert text.count("[redacted]") == 4 and "RuntimeError" in text
