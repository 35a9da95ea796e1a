"""The run store on PostgreSQL: the store's key behaviours on both databases (the same rows, the
same records, resume after a kill, reuse, export), and several processes sharing one run on one
PostgreSQL store: every letter extracted and stored once, none lost when a process dies."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import pg
from conftest import LETTERS
from imr_extract.cli import EXIT_BUSY, EXIT_OK, EXIT_STORE, app
from imr_extract.extract import extract_document
from imr_extract.store import RunStore, now_iso
from imr_extract.storedb import is_url, postgres_schema, shown_url
from test_store import KEY, Counting, corpus, run

pg_server, pg_url = pg.pg_server, pg.pg_url  # the throwaway server's fixtures

cli = CliRunner()
TESTS = Path(__file__).parent
PDFS = sorted(str(p) for p in LETTERS.glob("pdf/*.pdf"))


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh store: a SQLite file, or a database on the throwaway PostgreSQL server."""
    if request.param == "sqlite":
        return str(tmp_path / "s.sqlite")
    return str(request.getfixturevalue("pg_url"))


def rows(target: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """``sql`` (``?`` placeholders) run on the store by the database's own client."""
    if is_url(target):
        import psycopg

        with psycopg.connect(target) as con:
            return [tuple(r) for r in con.execute(sql.replace("?", "%s"), args or None).fetchall()]
    with sqlite3.connect(target) as con:
        return con.execute(sql, args).fetchall()


def test_a_batch_makes_the_same_rows_and_records_in_either_store(target, tmp_path):
    d = corpus(tmp_path)
    with RunStore(target) as store:
        run_id, outcomes, _ = run(store, [str(d)])
        texts = list(store.record_texts(run_id))
    assert len(outcomes) == 7
    letters = rows(target, "SELECT letter, status, error_code, item_count, run_id FROM letters")
    assert len(letters) == 7 and {r[4] for r in letters} == {run_id}
    by_name = {r[0]: r for r in letters}
    assert by_name["empty.txt"][1:3] == ("error", "empty")
    assert by_name["notes.txt"][2] == "no-decisions"
    ok = [o.record for o in outcomes if o.record is not None]
    assert len(ok) == 5
    # the records read back byte for byte, in the order written (JSON columns on PostgreSQL)
    assert texts == [r.model_dump_json() for r in ok]
    [(items,)] = rows(target, "SELECT count(*) FROM items")
    assert items == sum(len(r.items) for r in ok) == sum(r[3] or 0 for r in letters)
    sources = rows(target, "SELECT ca_sources, imr_sources FROM items ORDER BY letter_key, idx")
    # JSON arrays: text in SQLite, JSON (which psycopg parses) in PostgreSQL
    assert sources and all(
        isinstance(json.loads(v) if isinstance(v, str) else v, list) for r in sources for v in r
    )
    assert rows(target, "SELECT ok, errors FROM runs") == [(0, 0)]  # counted by finish_run
    with RunStore(target) as store:
        store.finish_run(run_id, letters=7, reused=0)
        assert store.run("last").id == run_id
    assert rows(target, "SELECT ok, errors, items, status FROM runs") == [(5, 2, items, "finished")]


def test_a_second_run_is_served_from_either_store(target, tmp_path):
    d = corpus(tmp_path)
    with RunStore(target) as store:
        first = Counting()
        _, before, _ = run(store, [str(d)], first)
        again = Counting()
        _, after, runner = run(store, [str(d)], again)
    assert len(first.calls) == 6  # the empty file never reaches the extractor
    assert again.calls == ["notes.txt"] and runner.reused == 5  # failures are tried again
    assert [o.record for o in after] == [o.record for o in before]


def test_the_cli_extracts_into_either_store_and_export_reads_it(target, tmp_path):
    out, out2 = tmp_path / "out.jsonl", tmp_path / "again.jsonl"
    args = ["extract", *PDFS[:12], "--store", target, "--workers", "2", "--no-summary"]
    result = cli.invoke(app, [*args, "-o", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    exported = cli.invoke(app, ["export", "--store", target])
    assert exported.exit_code == EXIT_OK, exported.output
    assert exported.stdout == out.read_text() and len(out.read_text().splitlines()) == 12
    csv = cli.invoke(app, ["export", "--store", target, "-f", "csv", "--run", "last"])
    assert csv.exit_code == EXIT_OK and len(csv.stdout.splitlines()) > 12
    # a second run reuses all of them: the same output, nothing extracted, nothing exported
    result = cli.invoke(app, [*args[:-1], "-o", str(out2)])
    assert result.exit_code == EXIT_OK, result.output
    assert rows(target, "SELECT ok, reused FROM runs ORDER BY started_at") == [(12, 0), (0, 12)]
    assert out2.read_text() == out.read_text()
    # export --run of the reuse-only run writes what it served (the served table)
    served = cli.invoke(app, ["export", "--store", target, "--run", "last"])
    assert served.exit_code == EXIT_OK and served.stdout == out.read_text()
    assert rows(target, "SELECT count(*) FROM served") == [(12,)]
    assert rows(target, "SELECT count(*), count(DISTINCT run_id) FROM letters") == [(12, 1)]


def _wait_for(predicate: Any, seconds: float = 120.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _count(target: str) -> int:
    try:
        return int(rows(target, "SELECT count(*) FROM letters")[0][0])
    except Exception:  # not made yet
        return 0


def test_a_run_killed_midway_resumes_with_every_letter_once(target, tmp_path):
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "imr_extract.cli", "extract", *PDFS, "--store", target]
    killed = subprocess.Popen(
        [*cmd, "--workers", "1", "-o", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_for(lambda: _count(target) >= 5 or killed.poll() is not None)
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.wait()
    stored = _count(target)
    assert 5 <= stored < len(PDFS), "killed midway"
    [(run_id, status)] = rows(target, "SELECT id, status FROM runs")
    assert status == "running"  # as a killed process leaves it
    result = cli.invoke(app, ["extract", "--resume", "last", "--store", target, "-o", str(out)])
    assert result.exit_code == EXIT_OK, result.output
    assert len(out.read_text().splitlines()) == len(PDFS)
    assert rows(
        target, "SELECT count(*), count(DISTINCT key), count(DISTINCT run_id) FROM letters"
    )[0] == (len(PDFS), len(PDFS), 1)
    assert rows(target, "SELECT id, status, resumes, ok, reused FROM runs") == [
        (run_id, "finished", 1, len(PDFS), stored)  # what was stored before the kill: reused
    ]


def test_a_run_held_by_another_process_is_busy_on_postgres(pg_url, tmp_path):
    with RunStore(pg_url) as holder:
        run_id = holder.start_run(KEY, argv=[], inputs=[PDFS[0]], config={})
        holder.claim_run(run_id)
        result = cli.invoke(app, ["extract", "--resume", run_id, "--store", pg_url])
        assert result.exit_code == EXIT_BUSY
        assert result.stderr.strip().splitlines() == [
            f"error: {shown_url(pg_url)}: run {run_id} is running in another process now:"
            " wait for it to end, or stop it"
        ]
    # let go when the holder's connection ends
    result = cli.invoke(app, ["extract", "--resume", run_id, "--store", pg_url, "-o", os.devnull])
    assert result.exit_code == EXIT_OK, result.output


def test_without_psycopg_a_postgres_store_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg fails
    url = "postgresql://someone:hunter2-secret@db.example:5433/imr?sslmode=require"
    result = cli.invoke(app, ["extract", PDFS[0], "--store", url])
    assert result.exit_code == EXIT_STORE
    assert result.stderr.strip().splitlines() == [
        "error: postgresql://db.example:5433/imr: a postgresql:// store needs psycopg:"
        " pip install 'imr-extract[postgres]'"
    ]
    exported = cli.invoke(app, ["export", "--store", url])
    assert exported.exit_code == EXIT_STORE and "imr-extract[postgres]" in exported.stderr
    assert "hunter2" not in result.output + exported.output


def test_an_unreachable_postgres_store_is_one_line_with_the_store_exit_code(tmp_path):
    pytest.importorskip("psycopg")
    url = f"postgresql://u:hunter2-secret@{str(tmp_path / 'nowhere').replace('/', '%2F')}/db"
    result = cli.invoke(app, ["extract", PDFS[0], "--store", url])
    assert result.exit_code == EXIT_STORE
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: postgresql://") and "cannot open the run store" in line
    assert "hunter2" not in result.output


def test_the_postgres_schema_is_sqlites_with_wider_types():
    from imr_extract.store import SCHEMA_SQL

    ddl = postgres_schema(SCHEMA_SQL)
    assert "REAL" not in ddl and " INTEGER" not in ddl
    json_columns = re.findall(r"^\s+(\w+)\s+JSON\b", ddl, re.MULTILINE)
    assert json_columns == ["argv", "inputs", "config", "record"] + [
        f"{who}_{what}" for who in ("ca", "imr") for what in ("sources", "sections", "pages")
    ]
    assert ddl.count("seq BIGINT GENERATED ALWAYS AS IDENTITY") == 2  # runs, letters
    assert ddl.count("CREATE TABLE") == SCHEMA_SQL.count("CREATE TABLE")


# --------------------------------------------------------------------------- a fleet

#: One process of a shared run: waits for the start signal, runs the letters, writes one JSON
#: line per outcome (source, reused, ok). ``hang``: sleep forever on extracting that letter.
WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from imr_extract.extract import extract_document
    from imr_extract.runner import BatchRunner
    from imr_extract.store import RunStore
    from test_store import KEY


    def main(url, run_id, go, out, hang, paths, since, workers):
        def extractor(doc):  # in this process only
            if doc.name == hang:
                Path(out + ".hanging").touch()
                time.sleep(3600)
            time.sleep(0.03)  # the other process's pool has started before this one is done
            return extract_document(doc)

        with RunStore(url) as store, open(out, "w") as f:
            while not Path(go).exists():
                time.sleep(0.01)
            runner = BatchRunner(
                extractor if workers == 0 else extract_document,
                store=store, run_id=run_id, key=KEY, isolate=workers > 0,
                workers=max(1, workers), min_pool_letters=0, failures_since=since,
            )
            for o in runner.run(json.loads(paths)):
                f.write(json.dumps([o.source, o.reused, o.ok]) + "\\n")
                f.flush()


    if __name__ == "__main__":  # worker processes import this file
        main(*sys.argv[1:8], workers=int(sys.argv[8]))  # workers 0: all in this process
    """
).format(tests=str(TESTS))


def _start(
    url: str, run_id: str, go: Path, out: Path, paths: list[str], hang: str = "-", workers: int = 0
):
    since = now_iso()  # this pass of the run began (a failure recorded since is final)
    argv = [url, run_id, str(go), str(out), hang, json.dumps(paths), since, str(workers)]
    script = out.with_suffix(".py")
    script.write_text(WORKER)
    return subprocess.Popen(
        [sys.executable, str(script), *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _outcomes(out: Path) -> list[tuple[str, bool, bool]]:
    return [tuple(json.loads(line)) for line in out.read_text().splitlines()]  # type: ignore[misc]


def test_two_processes_share_one_run_and_store_every_letter_once(pg_url, tmp_path):
    bad = []  # letters that fail (no decisions), each its own content, among the good ones
    for i in range(5):
        bad.append(tmp_path / f"notes-{i}.txt")
        bad[-1].write_text(f"Dear colleague {i}, nothing was decided here.\n")
    inputs = list(PDFS)
    for i, path in enumerate(bad):
        inputs.insert(i * 14, str(path))
    with RunStore(pg_url) as store:
        run_id = store.start_run(KEY, argv=[], inputs=inputs, config={})
    go, outs = tmp_path / "go", [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    # one extracts in its own process, the other in two worker processes (claims run ahead)
    procs = [
        _start(pg_url, run_id, go, out, inputs, workers=n)
        for out, n in zip(outs, (0, 2), strict=True)
    ]
    time.sleep(1.0)  # both have opened the store
    go.touch()
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
    got = [_outcomes(out) for out in outs]
    failing = {str(b) for b in bad}
    for outcomes in got:  # each process answers every letter: a record, or its failure
        assert sorted(o[0] for o in outcomes) == sorted(inputs)
        assert {o[0] for o in outcomes if not o[2]} == failing
    extracted = Counter(o[0] for outcomes in got for o in outcomes if not o[1])
    twice = sorted(k for k, n in extracted.items() if n > 1)
    assert sorted(extracted) == sorted(inputs) and not twice, twice  # once each
    assert all(any(not o[1] for o in outcomes) for outcomes in got)  # both did work
    assert rows(pg_url, "SELECT count(*), count(DISTINCT sha256), min(run_id), max(run_id)"
                " FROM letters") == [(len(inputs), len(inputs), run_id, run_id)]  # fmt: skip
    assert rows(pg_url, "SELECT count(*) FROM letters WHERE status = 'error'") == [(len(bad),)]
    with RunStore(pg_url) as store:
        stored = sorted(r.source.path for r in store.records())
    assert stored == PDFS


def test_a_letter_held_by_a_process_that_dies_is_extracted_by_the_other(pg_url, tmp_path):
    with RunStore(pg_url) as store:
        run_id = store.start_run(KEY, argv=[], inputs=PDFS[:8], config={})
    go, a, b = tmp_path / "go", tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    stuck = Path(PDFS[0]).name
    dying = _start(pg_url, run_id, go, a, PDFS[:8], hang=stuck)  # claims it, then hangs
    go.touch()
    _wait_for(lambda: Path(str(a) + ".hanging").exists())
    other = _start(pg_url, run_id, go, b, PDFS[:8])
    _wait_for(lambda: _count(pg_url) == 7)  # all but the held one: it waits for that one
    time.sleep(0.5)
    assert other.poll() is None, "it waits for the held letter"
    dying.send_signal(signal.SIGKILL)
    dying.wait()
    _, err = other.communicate(timeout=120)
    assert other.returncode == 0, err
    outcomes = _outcomes(b)
    assert sorted(o[0] for o in outcomes) == PDFS[:8] and all(o[2] for o in outcomes)
    assert outcomes[-1] == (PDFS[0], False, True)  # extracted here, after the others
    assert rows(pg_url, "SELECT count(*), count(DISTINCT sha256) FROM letters") == [(8, 8)]
    [(stored,)] = rows(pg_url, "SELECT record FROM letters WHERE path = ?", PDFS[0])
    assert stored["case_number"] == extract_document_case(PDFS[0])  # psycopg parses JSON


def extract_document_case(path: str) -> str | None:
    from imr_extract.ingest import read_path

    return extract_document(read_path(path)).case_number


# --------------------------------------------------------------------------- the docs' SQL

DOC_PAGES = [
    TESTS.parent / "docs" / "how-to" / "query-store.md",
    TESTS.parent / "docs" / "tutorial.md",
]
SQL_FENCE = re.compile(r"^```sql([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def docs_queries() -> list[tuple[str, str, str]]:
    """(where, SQLite form, PostgreSQL form) of every query on the pages: a block fenced
    ``sql title="PostgreSQL"`` is the PostgreSQL form of the block before it; a block without
    one runs as it is on both."""
    pairs: list[tuple[str, str, str]] = []
    for page in DOC_PAGES:
        for match in SQL_FENCE.finditer(page.read_text(encoding="utf-8")):
            info, code = match.group(1), match.group(2)
            where = f"{page.name}:{page.read_text()[: match.start()].count(chr(10)) + 1}"
            if 'title="PostgreSQL"' in info:
                assert pairs and pairs[-1][1] == pairs[-1][2], f"{where}: a twin of what?"
                pairs[-1] = (pairs[-1][0], pairs[-1][1], code)
            else:
                pairs.append((where, code, code))
    return pairs


def _same(rows_: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows as both databases' answers compare: numbers as rounded floats, in one order."""
    from decimal import Decimal

    def norm(v: Any) -> Any:
        if isinstance(v, Decimal | float):
            return round(float(v), 6)
        return v

    return sorted((tuple(norm(v) for v in r) for r in rows_), key=repr)


def test_every_docs_query_gives_the_same_rows_on_postgresql(pg_url, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "notes.txt").write_text("Dear colleague, nothing was decided here.\n")
    inputs = [str(LETTERS), str(bad)]
    made: dict[str | None, Any] = {}

    def once(doc: Any) -> Any:  # each letter extracted once for both stores
        if doc.path not in made:
            try:
                made[doc.path] = extract_document(doc)
            except Exception as exc:
                made[doc.path] = exc
        if isinstance(made[doc.path], Exception):
            raise made[doc.path]
        return made[doc.path]

    sqlite_db = str(tmp_path / "s.sqlite")
    for target in (sqlite_db, pg_url):
        with RunStore(target) as store:
            run_id = store.start_run(KEY, argv=[], inputs=inputs, config={}, run_id="r-docs")
            _, outcomes, _ = run(store, inputs, once, run_id=run_id)
            store.finish_run(run_id, letters=len(outcomes), reused=0)
        # every bundled value verifies: one is marked otherwise, so that query answers a row
        [(key, text)] = rows(
            sqlite_db, "SELECT key, record FROM letters WHERE status = 'ok' ORDER BY key LIMIT 1"
        )
        record = json.loads(text)
        record["provenance"][sorted(record["provenance"])[0]]["status"] = "contradicted"
        with RunStore(target) as store, store.transaction() as db:
            db.execute("UPDATE letters SET record = ? WHERE key = ?", (json.dumps(record), key))
    queries = docs_queries()
    assert len(queries) >= 6 and sum(a != b for _, a, b in queries) == 3
    for where, on_sqlite, on_postgres in queries:
        want = _same(rows(sqlite_db, on_sqlite))
        assert want, f"{where}: the bundled letters answer it"
        got = _same(rows(pg_url, on_postgres))
        # psycopg reads a json value as Python's: the text SQLite answers, parsed
        assert got == want, where


def test_a_postgres_urls_password_is_kept_nowhere(pg_url, tmp_path, monkeypatch):
    secret = "hunter2-" + "not-a-real-one"
    url = pg_url.replace("postgres@", f"postgres:{secret}@") + f"?password={secret}&sslmode=prefer"
    out = tmp_path / "out.jsonl"
    args = ["extract", PDFS[0], "--store", url, "-o", str(out)]
    monkeypatch.setattr(sys, "argv", ["imr-extract", *args])  # what the run records
    result = cli.invoke(app, args)
    assert result.exit_code == EXIT_OK, result.output
    assert f"in {shown_url(pg_url)}" in result.stderr and secret not in result.output
    [(argv, config)] = rows(pg_url, "SELECT argv::text, config::text FROM runs")
    assert "--store" in argv and secret not in argv + config
    missing = cli.invoke(app, ["export", "--store", url.replace("/t", "/nosuchdb")])
    assert missing.exit_code == EXIT_STORE and secret not in missing.output
    assert "nosuchdb" in missing.stderr


def test_export_of_a_database_that_holds_no_store_says_so(pg_url):
    result = cli.invoke(app, ["export", "--store", pg_url])
    assert result.exit_code == EXIT_STORE
    assert result.stderr.strip() == f"error: {shown_url(pg_url)}: no run store here (see --store)"
    assert rows(pg_url, "SELECT count(*) FROM pg_tables WHERE tablename = 'meta'") == [(0,)]


def test_two_cli_runs_on_one_postgres_store_share_the_letters(pg_url, tmp_path):
    """Two machines given the same letters and one store: two runs, each letter extracted by
    one of them, each run's output every letter (the other's served from the store)."""
    imr = str(Path(sys.executable).with_name("imr-extract"))
    outs = [tmp_path / "a.jsonl", tmp_path / "b.jsonl"]
    procs = [
        subprocess.Popen(
            [
                imr,
                "extract",
                str(LETTERS / "pdf"),
                "--store",
                pg_url,
                "-o",
                str(out),
                "--workers",
                "2",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for out in outs
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == EXIT_OK, err
    for out in outs:
        paths = sorted(json.loads(line)["source"]["path"] for line in out.read_text().splitlines())
        assert paths == PDFS
    runs = rows(pg_url, "SELECT ok, reused, errors FROM runs")
    assert len(runs) == 2 and sum(r[0] for r in runs) == len(PDFS)  # each extracted once
    assert sum(r[1] for r in runs) == len(PDFS)  # and served to the other run
    assert rows(pg_url, "SELECT count(*), count(DISTINCT sha256) FROM letters") == [
        (len(PDFS), len(PDFS))
    ]


def test_a_lost_connection_is_one_store_error_and_loses_nothing_committed(pg_url):
    from imr_extract.ingest import read_path
    from imr_extract.store import RecordRow, StoreUnusableError

    row = RecordRow.of(extract_document(read_path(PDFS[0])))
    with RunStore(pg_url) as store:
        run_id = store.start_run(KEY, argv=[], inputs=[], config={})
        assert store.write(KEY, run_id, PDFS[0], row.sha256, row=row)
        [(pid,)] = rows(pg_url, "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                        " AND pid <> pg_backend_pid()")  # fmt: skip
        rows(pg_url, "SELECT pg_terminate_backend(?)", pid)  # the server drops the store's session
        with pytest.raises(StoreUnusableError) as caught:
            store.write(KEY, run_id, PDFS[1], "0" * 64, row=row)
    assert str(caught.value).startswith(f"{shown_url(pg_url)}: cannot write the run store (")
    assert rows(pg_url, "SELECT path FROM letters") == [(PDFS[0],)]


def test_imr_store_names_a_postgres_store_for_extract_and_export(pg_url, tmp_path):
    out = tmp_path / "out.jsonl"
    env = {"IMR_STORE": pg_url}
    result = cli.invoke(app, ["extract", *PDFS[:2], "-o", str(out)], env=env)
    assert result.exit_code == EXIT_OK, result.output
    exported = cli.invoke(app, ["export"], env=env)
    assert exported.exit_code == EXIT_OK and exported.stdout == out.read_text()
    assert rows(pg_url, "SELECT count(*) FROM letters") == [(2,)]
