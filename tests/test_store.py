"""The run store: rows per letter and item, skips, resume, export, queries, transactions."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LETTERS, letter_path
from imr_extract.cli import EXIT_BUSY, EXIT_STORE, app
from imr_extract.extract import extract_document
from imr_extract.ingest import Document, read_path
from imr_extract.runner import BatchRunner
from imr_extract.schema import LetterRecord, schema_hash
from imr_extract.store import ResultKey, RunStore, StoreError, code_version

DOCS = Path(__file__).parents[1] / "docs"
QUERIES = DOCS / "how-to" / "query-store.md"
SHARDING = DOCS / "how-to" / "shard.md"
KEY = ResultKey("rules", schema_hash=schema_hash(), version=code_version())
FIVE = ["CM16-0231706.pdf", "CM16-0231745.pdf", "CM17-0014449.pdf", "CM16-0240900.pdf"]
cli = CliRunner()


class Counting:
    """extract_document, counting its calls (the runner runs it in this process: workers=1)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, doc: Document) -> LetterRecord:
        self.calls.append(doc.name)
        return extract_document(doc)


def corpus(tmp_path: Path) -> Path:
    """Four real letters, a text letter, and two bad files."""
    d = tmp_path / "letters"
    d.mkdir()
    for name in FIVE:
        (d / name).write_bytes(letter_path(name).read_bytes())
    (d / "prose.txt").write_bytes(letter_path("000_95767a46bf993051.txt").read_bytes())
    (d / "empty.txt").write_bytes(b"")
    (d / "notes.txt").write_text("Dear colleague, nothing was decided here.\n")
    return d


def run(store: RunStore, inputs: list[str], extractor=extract_document, run_id=None, **kw):
    run_id = run_id or store.start_run(KEY, argv=[], inputs=inputs, config={})
    kw.setdefault("isolate", False)  # the extractors here count their calls in this process
    runner = BatchRunner(extractor, store=store, run_id=run_id, key=KEY, **kw)
    return run_id, list(runner.run(inputs)), runner


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    with sqlite3.connect(db) as con:
        return con.execute(sql, args).fetchall()


def test_one_row_per_letter_and_per_item(tmp_path):
    d = corpus(tmp_path)
    db = tmp_path / "s.sqlite"
    with RunStore(db) as store:
        run_id, outcomes, _ = run(store, [str(d)])
    assert len(outcomes) == 7
    letters = rows(db, "SELECT letter, status, error_code, cause, item_count, run_id FROM letters")
    assert len(letters) == 7 and {r[5] for r in letters} == {run_id}
    by_name = {r[0]: r for r in letters}
    assert by_name["empty.txt"][1:4] == ("error", "empty", "empty file")
    assert by_name["notes.txt"][2] == "no-decisions"
    ok = [o.record for o in outcomes if o.record is not None]
    assert sum(r[4] or 0 for r in letters) == sum(len(r.items) for r in ok)
    items = rows(db, "SELECT letter, idx, request, decision, case_number FROM items ORDER BY 1, 2")
    assert len(items) == sum(len(r.items) for r in ok) > len(ok)
    record = next(r for r in ok if r.letter == "CM17-0014449.pdf")
    mine = [i for i in items if i[0] == "CM17-0014449.pdf"]
    assert [(i[2], i[3]) for i in mine] == [(x.request, x.decision.value) for x in record.items]
    assert {i[4] for i in mine} == {"CM17-0014449"}
    # the stored record is the record, byte for byte
    stored = rows(db, "SELECT record FROM letters WHERE letter = 'CM17-0014449.pdf'")[0][0]
    assert stored == record.model_dump_json()


def test_a_rerun_skips_finished_letters_and_retries_errors(tmp_path):
    d = corpus(tmp_path)
    with RunStore(tmp_path / "s.sqlite") as store:
        first = Counting()
        _, before, _ = run(store, [str(d)], first)
        assert len(first.calls) == 7 - 1  # the empty file never reaches the extractor
        again = Counting()
        _, after, runner = run(store, [str(d)], again)
    # the five letters are served from the store; the two failures are tried again
    assert sorted(again.calls) == ["notes.txt"]
    assert runner.reused == 5
    assert [o.reused for o in after].count(True) == 5
    assert [o.record for o in after] == [o.record for o in before]
    assert [(o.error.code if o.error else None) for o in after] == [
        (o.error.code if o.error else None) for o in before
    ]


def test_a_copy_under_another_name_is_served_under_its_own_name(tmp_path):
    src = letter_path("CM16-0231706.pdf")
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "first.pdf").write_bytes(src.read_bytes())
    with RunStore(tmp_path / "s.sqlite") as store:
        run(store, [str(tmp_path / "a")])
        (tmp_path / "b").mkdir()
        (tmp_path / "b" / "copy.pdf").write_bytes(src.read_bytes())
        counting = Counting()
        _, [outcome], _ = run(store, [str(tmp_path / "b" / "copy.pdf")], counting)
    assert counting.calls == [] and outcome.reused
    assert outcome.record.letter == "copy.pdf"
    assert outcome.record.source.path == str(tmp_path / "b" / "copy.pdf")
    assert outcome.record == extract_document(read_path(tmp_path / "b" / "copy.pdf"))


def test_resume_continues_an_interrupted_run_with_the_same_id(tmp_path):
    d = corpus(tmp_path)
    with RunStore(tmp_path / "s.sqlite") as store:
        run_id = store.start_run(KEY, argv=[], inputs=[str(d)], config={})
        first = Counting()
        batch = BatchRunner(first, store=store, run_id=run_id, key=KEY, isolate=False).run([str(d)])
        done = [next(batch) for _ in range(3)]  # then the process "dies"
        batch.close()
        store.finish_run(run_id, letters=3, reused=0, status="interrupted")
        assert store.run("last").status == "interrupted"

        store.resume_run(run_id)
        rest = Counting()
        runner = BatchRunner(rest, store=store, run_id=run_id, key=KEY, isolate=False)
        outcomes = list(runner.run([str(d)]))
        store.finish_run(run_id, letters=7, reused=3)
        assert store.run(run_id).status == "finished"
    # Every good letter is extracted once over both runs (letters written before the caller
    # stopped are committed too); a failed one (notes.txt) is tried again.
    calls = Counter(first.calls + rest.calls)
    assert set(calls) == {o.source.rsplit("/", 1)[-1] for o in outcomes} - {"empty.txt"}
    assert {name: n for name, n in calls.items() if n != 1} == {"notes.txt": 2}
    assert [o.source for o in outcomes[:3]] == [o.source for o in done]
    assert all(o.reused for o in outcomes[:3] if o.ok)
    db = tmp_path / "s.sqlite"
    assert rows(db, "SELECT count(*), count(DISTINCT run_id) FROM letters") == [(7, 1)]
    assert rows(db, "SELECT resumes, ok, errors FROM runs") == [(1, 5, 2)]


def test_cli_resume_last_reuses_the_runs_inputs(tmp_path):
    d = corpus(tmp_path)
    db = tmp_path / "s.sqlite"
    result = cli.invoke(app, ["extract", str(d), "--store", str(db), "-o", str(tmp_path / "1")])
    assert result.exit_code == 1
    [(run_id,)] = rows(db, "SELECT id FROM runs")
    dead = subprocess.Popen(["true"])
    dead.wait()
    with sqlite3.connect(db) as con:  # as a run killed before its last letters leaves it
        con.execute("UPDATE runs SET status = 'running', pid = ?", (dead.pid,))
        con.execute("PRAGMA foreign_keys = ON")
        con.execute("DELETE FROM letters WHERE letter = 'CM17-0014449.pdf'")
    out = tmp_path / "2.jsonl"
    result = cli.invoke(app, ["extract", "--resume", "last", "--store", str(db), "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert f"run {run_id} in" in result.stderr
    assert rows(db, "SELECT id, status, resumes FROM runs") == [(run_id, "finished", 1)]
    assert len(out.read_text().splitlines()) == 5
    assert rows(db, "SELECT count(*) FROM letters WHERE letter = 'CM17-0014449.pdf'") == [(1,)]
    # a run whose process is alive is not resumed twice
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET status = 'running', pid = ?", (os.getppid(),))
    result = cli.invoke(app, ["extract", "--resume", "last", "--store", str(db)])
    assert result.exit_code == EXIT_BUSY and "is still running" in result.stderr
    with sqlite3.connect(db) as con:
        con.execute("UPDATE runs SET status = 'interrupted'")
    # resuming with other settings is refused: the results would not match the run's
    result = cli.invoke(
        app, ["extract", "--resume", run_id, "--store", str(db), "--backend", "llm"]
    )
    assert result.exit_code == 2 and "backend rules (now llm)" in result.stderr


def test_export_equals_extract_output(tmp_path):
    db = tmp_path / "s.sqlite"
    out = tmp_path / "out.jsonl"
    args = ["extract", str(LETTERS), "--store", str(db), "--no-summary"]
    assert cli.invoke(app, [*args, "-o", str(out)]).exit_code == 0
    exported = cli.invoke(app, ["export", "--store", str(db)])
    assert exported.exit_code == 0
    assert exported.stdout == out.read_text()
    assert len(exported.stdout.splitlines()) == 66
    # CSV: one row per item, as extract writes it (a second store, so nothing is reused)
    db2 = tmp_path / "s2.sqlite"
    out_csv = tmp_path / "out.csv"
    result = cli.invoke(
        app, [*args[:-3], "--store", str(db2), "-f", "csv", "-o", str(out_csv), "--no-summary"]
    )
    assert result.exit_code == 0
    exported = cli.invoke(app, ["export", "--store", str(db2), "-f", "csv", "--run", "last"])
    assert exported.stdout == out_csv.read_text()
    assert len(list(csv.DictReader(io.StringIO(exported.stdout)))) == 156
    # --run: what that run extracted or served (a re-run serves everything from the store)
    assert cli.invoke(app, [*args, "-o", str(tmp_path / "again.jsonl")]).exit_code == 0
    again = cli.invoke(app, ["export", "--store", str(db), "--run", "last"])
    assert again.stdout == out.read_text()
    missing = cli.invoke(app, ["export", "--store", str(tmp_path / "nope.sqlite")])
    assert missing.exit_code == 2 and "no run store" in missing.stderr


def readme_sql(marker: str, page: Path = QUERIES) -> str:
    """The SQL block in the documentation page that follows ``marker``."""
    text = page.read_text(encoding="utf-8")
    after = text[text.index(marker) :]
    start = after.index("```sql\n") + len("```sql\n")
    return after[start : after.index("```", start)]


def is_odg(source: str) -> bool:
    return "ODG" in source or source.lower().startswith("official disability guidelines")


def test_the_readme_odg_2017_query_is_one_statement_and_right(tmp_path):
    db = tmp_path / "s.sqlite"
    with RunStore(db) as store:
        run(store, [str(LETTERS)])
    sql = readme_sql("overturned items citing ODG")
    assert sqlite3.complete_statement(sql) and sql.strip().count(";") == 1
    got = rows(db, sql)
    expected = []
    with RunStore(db) as store:
        for record in store.records():
            if record.dates.decision is None or record.dates.decision.year != 2017:
                continue
            for item in record.items:
                sources = [c.source for c in item.imr_guideline.citations]
                sources += [c.source for c in item.claims_administrator_guideline.citations]
                if item.decision.value == "overturned" and any(map(is_odg, sources)):
                    expected.append((record.case_number, record.dates.decision.isoformat()))
    assert expected, "the shared letters hold overturned ODG items decided in 2017"
    assert sorted((r[0], r[1]) for r in got) == sorted(expected)


def test_every_readme_query_runs(tmp_path):
    db = tmp_path / "s.sqlite"
    with RunStore(db) as store:
        run(store, [str(corpus(tmp_path))])
    section = QUERIES.read_text(encoding="utf-8")
    blocks = [b.split("```")[0] for b in section.split("```sql\n")[1:]]
    queries = [b for b in blocks if "ATTACH" not in b]
    assert len(queries) >= 4
    for sql in queries:
        rows(db, sql)  # each is valid against these tables


def test_stores_from_two_machines_merge_with_the_readme_sql(tmp_path):
    halves = [sorted(LETTERS.glob("pdf/*.pdf"))[:30], sorted(LETTERS.glob("pdf/*.pdf"))[30:]]
    for i, half in enumerate(halves):
        with RunStore(tmp_path / f"shard-{i}.sqlite") as store:
            run(store, [str(p) for p in half])
    with RunStore(tmp_path / "whole.sqlite") as store:
        run(store, [str(p) for p in halves[0] + halves[1]])
    merge = readme_sql("merge the shards", SHARDING).replace(
        "shard-01.sqlite", str(tmp_path / "shard-1.sqlite")
    )
    con = sqlite3.connect(tmp_path / "shard-0.sqlite", isolation_level=None)
    con.executescript(merge)
    con.close()
    count = "SELECT count(*), (SELECT count(*) FROM items) FROM letters"
    assert rows(tmp_path / "shard-0.sqlite", count) == rows(tmp_path / "whole.sqlite", count)
    assert rows(tmp_path / "shard-0.sqlite", count)[0][0] == 64
    assert rows(tmp_path / "shard-0.sqlite", "SELECT count(*) FROM runs") == [(2,)]
    records = "SELECT record FROM letters ORDER BY letter"
    assert rows(tmp_path / "shard-0.sqlite", records) == rows(tmp_path / "whole.sqlite", records)


def test_a_failure_mid_write_leaves_nothing_of_that_letter(tmp_path, monkeypatch):
    db = tmp_path / "s.sqlite"
    good, bad = letter_path("CM16-0231706.pdf"), letter_path("CM16-0231745.pdf")

    def boom(self, *args):
        raise sqlite3.OperationalError("disk I/O error (simulated, after the letter row)")

    with RunStore(db) as store:
        run(store, [str(good)])
        monkeypatch.setattr(RunStore, "_insert_items", boom)
        with pytest.raises(StoreError, match="simulated"):  # named: the store and the cause
            run(store, [str(bad)])
    assert rows(db, "SELECT letter FROM letters") == [("CM16-0231706.pdf",)]
    assert {r[0] for r in rows(db, "SELECT letter FROM items")} == {"CM16-0231706.pdf"}
    monkeypatch.undo()
    with RunStore(db) as store:  # the letter is simply extracted again next time
        _, [outcome], _ = run(store, [str(bad)])
    assert outcome.ok and not outcome.reused
    assert rows(db, "SELECT count(*) FROM items WHERE letter = 'CM16-0231745.pdf'") == [(5,)]


def test_a_store_that_cannot_be_opened_is_named_with_its_exit_code(tmp_path):
    (tmp_path / "dir.sqlite").mkdir()
    with pytest.raises(StoreError, match="cannot open the run store"):
        RunStore(tmp_path / "dir.sqlite")
    result = cli.invoke(
        app,
        ["extract", str(letter_path("CM16-0231706.pdf")), "--store", str(tmp_path / "dir.sqlite")],
    )
    assert result.exit_code == EXIT_STORE and "cannot open the run store" in result.stderr
    result = cli.invoke(app, ["extract", "--resume", "last", "--no-store"])
    assert result.exit_code == 2


def test_the_key_changes_with_what_makes_the_record():
    sha = "0" * 64
    keys = {
        KEY.key(sha, "a.pdf"),
        ResultKey("hybrid", "extract_letter@abc", "m", KEY.schema_hash, KEY.version).key(sha, "a"),
        ResultKey("rules", schema_hash="other", version=KEY.version).key(sha, "a.pdf"),
        ResultKey("rules", schema_hash=KEY.schema_hash, version="0.0.0+x").key(sha, "a.pdf"),
        KEY.key("1" * 64, "a.pdf"),
    }
    assert len(keys) == 5
    assert KEY.key(sha, "a.pdf") == KEY.key(sha, "elsewhere/b.pdf")  # content, not path
    assert KEY.key(None, "a.pdf") != KEY.key(None, "b.pdf")  # unreadable: by path
    # a failure is kept per file: two empty files are two failures
    assert KEY.error_key(sha, "a.txt") != KEY.error_key(sha, "b.txt") != KEY.key(sha, "b.txt")
    assert json.dumps(code_version()).count("+") == 1


def test_a_runs_settings_keep_no_password(tmp_path):
    db = tmp_path / "s.sqlite"
    url = "https://user:hunter2@llm.example.invalid/v1"
    with RunStore(db) as store:
        store.start_run(
            KEY, argv=["--base-url", url], inputs=["x"], config={"llm": {"base_url": url}}
        )
    [(argv, config)] = rows(db, "SELECT argv, config FROM runs")
    assert "hunter2" not in argv + config and "llm.example.invalid" in argv + config


def test_every_letter_is_committed_before_it_is_yielded(tmp_path):
    """The rules' letters are committed in groups: none may be yielded (and so written to the
    output) before its group is committed, visible to another connection."""
    d, db = corpus(tmp_path), tmp_path / "s.sqlite"
    seen = []
    with RunStore(db) as store:
        run_id = store.start_run(KEY, argv=[], inputs=[str(d)], config={})
        runner = BatchRunner(extract_document, store=store, run_id=run_id, key=KEY, commit_every=3)
        for outcome in runner.run([str(d)]):
            other = sqlite3.connect(db)
            (n,) = other.execute(
                "SELECT count(*) FROM letters WHERE path = ?", (outcome.source,)
            ).fetchone()
            other.close()
            seen.append(n)
    assert seen == [1] * 7
