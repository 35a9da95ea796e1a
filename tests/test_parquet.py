"""`export --format parquet`: the bundled letters through a run store into two typed tables and
back, value by value; the failure rows; what happens without pyarrow, without -o, on a bad -o.

The tests that read Parquet need pyarrow (the ``parquet`` extra): they skip without it, except in
CI (``.ci/run`` sets ``IMR_REQUIRE_PARQUET``), where its absence fails them.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import LETTERS
from imr_extract import parquet
from imr_extract.cli import app
from imr_extract.output import OutputError
from imr_extract.schema import LetterRecord, Status
from imr_extract.store import RunStore

runner = CliRunner()


def run(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def _pq() -> Any:
    if importlib.util.find_spec("pyarrow") is None:
        why = "pyarrow is not installed (pip install -e '.[parquet]')"
        if os.environ.get("IMR_REQUIRE_PARQUET"):
            pytest.fail(why)
        pytest.skip(why)
    import pyarrow.parquet as pq

    return pq


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of every bundled letter (66) and two files that give no record."""
    work = tmp_path_factory.mktemp("parquet")
    bad = work / "bad"
    bad.mkdir()
    (bad / "empty.txt").write_bytes(b"")
    (bad / "blob.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    db = work / "store.sqlite"
    done = run("extract", str(LETTERS), str(bad), "--store", str(db), "-o", os.devnull)
    assert done.exit_code == 1, done.output  # the two bad files
    return db


@pytest.fixture(scope="module")
def stored(store: Path) -> tuple[list[LetterRecord], list[Any]]:
    with RunStore(store, readonly=True) as s:
        return list(s.records()), list(s.failures())


@pytest.fixture(scope="module")
def tables(store: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    pq = _pq()
    out = tmp_path_factory.mktemp("tables") / "out"
    done = run("export", "--store", str(store), "--format", "parquet", "-o", str(out))
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in out.iterdir()) == ["items.parquet", "letters.parquet"]
    return {
        "letters": pq.read_table(out / "letters.parquet"),
        "items": pq.read_table(out / "items.parquet"),
        "stderr": done.stderr,
    }


def test_one_letters_row_per_record_and_failure_and_one_items_row_per_item(tables, stored):
    records, failures = stored
    assert len(records) == 66 and len(failures) == 2
    letters, items = tables["letters"], tables["items"]
    assert letters.num_rows == len(records) + len(failures)
    assert items.num_rows == sum(len(r.items) for r in records) == 156
    assert letters.column("letter_id").to_pylist() == list(range(letters.num_rows))
    assert "68 letters (2 failed)" in tables["stderr"] and "156 items" in tables["stderr"]


def test_the_columns_have_the_declared_types_not_all_strings(tables):
    import pyarrow as pa

    for name, columns in (("letters", parquet.LETTER_COLUMNS), ("items", parquet.ITEM_COLUMNS)):
        schema = tables[name].schema
        assert schema.names == [c[0] for c in columns]
        assert schema.equals(parquet.arrow_schema(columns), check_metadata=False), name
        assert all(schema.field(c[0]).metadata[b"description"] for c in columns)
    letters, items = tables["letters"].schema, tables["items"].schema
    for column in ("date_assigned", "date_injury", "date_decision", "date_ur_denial"):
        assert letters.field(column).type == pa.date32()
    assert items.field("date_decision").type == pa.date32()
    for column in ("item_count", "items_upheld", "fields_verified", "checks_failed"):
        assert letters.field(column).type == pa.int32()
    assert letters.field("patient_age").type == pa.int16()
    assert letters.field("coverage").type == pa.float64()
    assert letters.field("complete").type == pa.bool_()
    assert items.field("ca_cited").type == pa.bool_()
    assert items.field("imr_pages").type == pa.list_(pa.int32())
    category = pa.dictionary(pa.int32(), pa.string())
    for column in ("decision", "request_status", "imr_citations_status"):
        assert items.field(column).type == category
    assert letters.field("layout").type == category
    strings = [f for f in letters if f.type == pa.string()]
    assert len(strings) < len(letters) / 3


def _by_id(table: Any) -> dict[int, dict[str, Any]]:
    return {row["letter_id"]: row for row in table.to_pylist()}


def test_letter_rows_hold_each_records_values(tables, stored):
    records, _ = stored
    rows = tables["letters"].to_pylist()
    for record, row in zip(records, rows, strict=False):
        v = record.verification
        assert v is not None
        assert row["letter"] == record.letter and row["status"] == "ok"
        assert row["error_code"] is None and row["cause"] is None
        assert row["case_number"] == record.case_number
        assert row["date_decision"] == record.dates.decision
        assert row["date_injury"] == record.dates.injury
        assert row["date_application_received"] == record.dates.application_received
        assert row["reviewer_licensure"] == record.reviewer.licensure
        assert row["patient_age"] == record.patient.age
        assert row["layout"] == record.layout
        assert row["item_count"] == len(record.items)
        assert row["items_overturned"] == sum(i.decision == "overturned" for i in record.items)
        assert row["items_upheld"] + row["items_overturned"] == len(record.items)
        assert (row["fields_verified"], row["fields_unverified"], row["fields_contradicted"]) == (
            v.verified,
            v.unverified,
            v.contradicted,
        )
        assert row["checks_failed"] == sum(c.result == "failed" for c in v.checks)
        assert row["coverage"] == v.coverage and row["complete"] is v.complete
        assert row["backend"] == "rules" and row["sha256"] == record.source.sha256
        prov = record.provenance.get("dates.decision")
        assert row["date_decision_status"] == (prov.status.value if prov else None)
    # The dates are real dates, and some letters hold each of them.
    assert all(isinstance(r["date_decision"], dt.date) for r in rows[:66] if r["date_decision"])
    assert sum(r["date_decision"] is not None for r in rows) > 60


def test_item_rows_hold_each_items_values_and_statuses(tables, stored):
    records, _ = stored
    items = tables["items"].to_pylist()
    expected = [(n, i, r, item) for n, r in enumerate(records) for i, item in enumerate(r.items)]
    assert len(items) == len(expected)
    decisions = set()
    for row, (n, i, record, item) in zip(items, expected, strict=True):
        assert (row["letter_id"], row["item_index"]) == (n, i)
        assert row["letter"] == record.letter and row["case_number"] == record.case_number
        assert row["date_decision"] == record.dates.decision
        assert row["request"] == item.request
        assert row["decision"] == item.decision.value
        assert row["rationale"] == item.rationale
        assert row["original_request"] == item.original_request
        g = item.imr_guideline
        assert row["imr_cited"] is g.cited and row["imr_outside_mtus"] is g.outside_mtus
        assert row["imr_sources"] == [c.source for c in g.citations]
        assert row["imr_pages"] == [p for c in g.citations for p in c.pages]
        assert row["imr_citations"] == [c.model_dump(mode="json") for c in g.citations]
        assert row["ca_sections"] == [
            s for c in item.claims_administrator_guideline.citations for s in c.sections
        ]
        for column, path in (("request_status", "request"), ("decision_status", "decision")):
            assert row[column] == record.provenance[f"items[{i}].{path}"].status.value
        decisions.add(row["decision"])
    assert decisions == {"upheld", "overturned"}


def test_failed_letters_are_rows_with_their_code_and_cause_and_no_items(tables, stored):
    records, failures = stored
    rows = tables["letters"].to_pylist()[len(records) :]
    assert [(r["letter"], r["status"], r["error_code"], r["cause"]) for r in rows] == [
        (f.letter, "error", f.error_code, f.cause) for f in failures
    ]
    assert {r["letter"] for r in rows} == {"empty.txt", "blob.pdf"}
    assert all(r["case_number"] is None and r["item_count"] is None for r in rows)
    failed_ids = {r["letter_id"] for r in rows}
    assert not failed_ids & set(tables["items"].column("letter_id").to_pylist())


def test_a_citation_status_is_the_worst_of_its_entries(tmp_path, stored):
    pq = _pq()
    records, _ = stored
    record = next(
        r
        for r in records
        if r.items
        and r.items[0].imr_guideline.citations
        and r.provenance.get("items[0].imr_guideline.cited")
        and r.provenance["items[0].imr_guideline.cited"].status is Status.VERIFIED
    )
    provenance = dict(record.provenance)
    key = next(k for k in provenance if k.startswith("items[0].imr_guideline.citations["))
    provenance[key] = provenance[key].model_copy(update={"status": Status.CONTRADICTED})
    changed = record.model_copy(update={"provenance": provenance})
    parquet.write_tables([record, changed], tmp_path)
    rows = pq.read_table(tmp_path / "items.parquet").to_pylist()
    first = [r for r in rows if r["item_index"] == 0]
    assert [r["imr_citations_status"] for r in first] == ["verified", "contradicted"]
    assert [r["imr_cited_status"] for r in first] == ["verified", "verified"]


def test_batches_keep_ids_and_rows_the_same(tmp_path, stored, tables, monkeypatch):
    pq = _pq()
    records, failures = stored
    monkeypatch.setattr(parquet, "BATCH_LETTERS", 5)
    written = parquet.write_tables(records, tmp_path, failures)
    assert (written.letters, written.failures, written.items) == (68, 2, 156)
    letters = pq.read_table(tmp_path / "letters.parquet")
    assert pq.ParquetFile(tmp_path / "letters.parquet").num_row_groups == 14
    assert letters.to_pylist() == tables["letters"].to_pylist()
    assert pq.read_table(tmp_path / "items.parquet").to_pylist() == tables["items"].to_pylist()


def test_export_run_holds_only_the_letters_that_run_extracted_or_served(tmp_path):
    pq = _pq()
    db = tmp_path / "two.sqlite"
    one = sorted((LETTERS / "pdf").iterdir())[:3]

    def export_run(ref: str) -> list[str]:
        out = tmp_path / f"run-{ref}"
        done = run("export", "--store", str(db), "-f", "parquet", "--run", ref, "-o", str(out))
        assert done.exit_code == 0, done.output
        return pq.read_table(out / "letters.parquet").column("letter").to_pylist()

    assert run("extract", str(one[0]), "--store", str(db), "-o", os.devnull).exit_code == 0
    with RunStore(db, readonly=True) as s:
        first = s.run("last").id
    assert run("extract", *map(str, one[1:]), "--store", str(db), "-o", os.devnull).exit_code == 0
    assert export_run("last") == [p.name for p in one[1:]]
    assert export_run(first) == [one[0].name]
    # A run that only served a letter from the store exports it too.
    assert run("extract", str(one[0]), "--store", str(db), "-o", os.devnull).exit_code == 0
    assert export_run("last") == [one[0].name]
    everything = tmp_path / "all"
    assert run("export", "--store", str(db), "-f", "parquet", "-o", str(everything)).exit_code == 0
    assert pq.read_table(everything / "letters.parquet").num_rows == 3


def test_a_failed_export_leaves_the_earlier_tables_and_no_temporary_file(tmp_path, stored):
    _pq()
    records, _ = stored
    parquet.write_tables(records[:2], tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def broken():
        yield from records[:3]
        raise OutputError("elsewhere", "disk full")

    with pytest.raises(OutputError):
        parquet.write_tables(broken(), tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_an_empty_store_gives_empty_tables_with_every_column(tmp_path):
    pq = _pq()
    db = tmp_path / "empty.sqlite"
    RunStore(db).close()
    assert (
        run("export", "--store", str(db), "-f", "parquet", "-o", str(tmp_path / "t")).exit_code == 0
    )
    table = pq.read_table(tmp_path / "t" / "items.parquet")
    assert table.num_rows == 0 and table.schema.names == [c[0] for c in parquet.ITEM_COLUMNS]


def test_parquet_needs_a_directory(tmp_path, store):
    _pq()
    done = run("export", "--store", str(store), "-f", "parquet")
    assert done.exit_code == 2
    assert done.stderr.strip() == (
        "error: --format parquet writes two files: name their directory with -o DIR"
    )
    a_file = tmp_path / "taken"
    a_file.write_text("mine")
    done = run("export", "--store", str(store), "-f", "parquet", "-o", str(a_file))
    assert done.exit_code == 4
    assert done.stderr.strip().splitlines() == [f"error: {a_file}: not a directory (--format "
                                                "parquet writes two files into one)"]  # fmt: skip
    assert a_file.read_text() == "mine"


def test_without_pyarrow_one_line_names_the_extra(tmp_path, store, monkeypatch):
    """Runs with or without pyarrow installed: its absence is simulated."""
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow: ImportError
    out = tmp_path / "t"
    done = run("export", "--store", str(store), "-f", "parquet", "-o", str(out))
    assert done.exit_code == 2
    assert done.stderr.splitlines() == [
        "error: --format parquet needs pyarrow, which is not installed: "
        "pip install 'imr-extract[parquet]'"
    ]
    assert not out.exists()


def test_the_reference_page_lists_every_column_with_its_type_and_meaning():
    """docs/reference/parquet.md: a row per column of each table, in order, as the code says."""
    import re

    page = (Path(__file__).parents[1] / "docs" / "reference" / "parquet.md").read_text()
    row = re.compile(r"^\| `(\w+)` \| `([^`]+)` \| (.+?) \|$", re.M)
    sections = dict(re.findall(r"^## (\w+)\.parquet\n(.*?)(?=^## |\Z)", page, re.M | re.S))
    assert set(sections) == {"letters", "items"}
    for name, columns in (("letters", parquet.LETTER_COLUMNS), ("items", parquet.ITEM_COLUMNS)):
        assert row.findall(sections[name]) == columns, f"docs/reference/parquet.md, {name}"


def test_names_that_are_not_utf8_are_written_as_the_records_write_them(tmp_path):
    pq = _pq()
    from test_file_names import BAD, BAD_WRITTEN, CAFE, CAFE_WRITTEN, make

    if os.fsencode("\udce9") != b"\xe9":
        pytest.skip("a file name that is not UTF-8 needs POSIX bytes names")
    d = tmp_path / "in"
    d.mkdir()
    make(d, BAD, b"\x00\x01binary\x00" * 8)  # fails
    make(d, CAFE, (LETTERS / "pdf" / "CM16-0231706.pdf").read_bytes())
    db = tmp_path / "s.sqlite"
    assert run("extract", str(d), "--store", str(db), "-o", os.devnull).exit_code == 1
    out = tmp_path / "t"
    assert run("export", "--store", str(db), "-f", "parquet", "-o", str(out)).exit_code == 0
    rows = pq.read_table(out / "letters.parquet").to_pylist()
    assert [(r["letter"], r["status"]) for r in rows] == [
        (CAFE_WRITTEN, "ok"),
        (BAD_WRITTEN, "error"),
    ]
    assert rows[0]["path"].endswith(CAFE_WRITTEN) and rows[1]["path"].endswith(BAD_WRITTEN)
    assert pq.read_table(out / "items.parquet").column("letter").to_pylist()[0] == CAFE_WRITTEN


def test_a_full_disk_is_one_line_naming_the_file_and_exit_4(tmp_path, store, monkeypatch):
    pq = _pq()
    import errno

    out = tmp_path / "t"
    assert run("export", "--store", str(store), "-f", "parquet", "-o", str(out)).exit_code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pq.ParquetWriter, "write_batch", full)
    done = run("export", "--store", str(store), "-f", "parquet", "-o", str(out))
    assert done.exit_code == 4
    assert done.stderr.splitlines() == [
        f"error: {out / 'letters.parquet'}: cannot write (No space left on device)"
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no temporary file left


def test_a_parquet_name_without_the_format_and_a_view_are_refused(tmp_path, store):
    _pq()
    named = tmp_path / "out.parquet"
    done = run("export", "--store", str(store), "-o", str(named))
    assert done.exit_code == 2 and not named.exists()  # never JSON Lines in a .parquet file
    assert done.stderr.splitlines() == [
        f"error: {named}: Parquet is two tables: --format parquet -o DIRECTORY"
    ]
    done = run("export", "--store", str(store), "-f", "parquet", "--view", "data", "-o", str(named))
    assert done.exit_code == 2 and not named.exists()
    assert "--view is for JSON, JSON Lines and CSV" in done.stderr
