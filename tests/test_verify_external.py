"""Verifying anyone's record: outside records (built from the gold files, then perturbed) located
in their letters and judged by the same checks; invalid values reported on their own; the
``verify`` command; eval's verified precision, verified recall and false-alarm rate."""

from __future__ import annotations

import copy
import csv
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import GOLD, LETTERS, document, gold_files, letter_path, load_gold, rules_record
from imr_extract import verify_external
from imr_extract.cli import app
from imr_extract.evaluate import evaluate
from imr_extract.fields import data_fields
from imr_extract.llm import LLMExtractor
from imr_extract.output import CsvWriter
from imr_extract.schema import Backend, CheckResult, LetterRecord, Method, Status
from imr_extract.verify import FITS_SCHEMA, invalid_checks
from imr_extract.verify.external import VALUE_COLUMNS, LetterIndex, iter_record_file
from llm_cassettes import recorded
from test_llm_replay import FULL_LETTERS, LONG_ANSWERS, cassette_name, meta_for, replay_config
from test_verify import GOLD as VERIFY_GOLD
from test_verify import wrong_paths

runner = CliRunner()
VERIFY_HOWTO = Path(__file__).parents[1] / "docs" / "how-to" / "verify-records.md"
PARTIAL = "CM16-0231706"  # one partly authorised item, every header date, two licensure states
TWO_ITEMS = "000_95767a46bf993051"  # two items, pages in both guideline lines
GOLD_NAMES = [g.stem for g in gold_files()]


def gold(stem: str) -> dict[str, Any]:
    return copy.deepcopy(load_gold(GOLD / f"{stem}.json"))


def checked(data: dict[str, Any]) -> LetterRecord:
    return verify_external(data, letter_path(data["letter"]))


def not_verified(record: LetterRecord) -> dict[str, str]:
    return {
        p: e.status.value for p, e in record.provenance.items() if e.status is not Status.VERIFIED
    }


# --- a perfect outside record ---------------------------------------------------------------------


@pytest.mark.parametrize("stem", GOLD_NAMES)
def test_a_gold_record_from_outside_comes_out_fully_verified(stem):
    record = checked(gold(stem))
    v = record.verification
    assert v is not None
    assert not_verified(record) == {}
    assert v.verified == len(record.provenance) > 0
    assert v.coverage == 1.0 and not v.novel_layout and v.complete
    assert invalid_checks(record) == [] and record.warnings == []
    assert record.layout == rules_record(record.letter).layout  # detected, as the rules do
    assert record.extractor.backend is Backend.EXTERNAL
    assert {(e.method, e.rule) for e in record.provenance.values()} == {
        (Method.EXTERNAL, "external.located")
    }
    text = document(record.letter).text
    for path, entry in record.provenance.items():  # every value is placed in the letter
        assert entry.spans, path
        assert all(0 <= s.start < s.end <= len(text) for s in entry.spans), path


def test_eval_of_the_gold_records_from_outside_is_perfect_and_fully_verified():
    records = [checked(gold(stem)) for stem in GOLD_NAMES]
    report = evaluate(records, GOLD)
    overall = report.overall
    assert report.misses == [] and len(report.letters) == len(GOLD_NAMES)
    assert overall.verified_precision == 1.0
    assert overall.verified_recall == 1.0
    assert overall.false_alarm_rate == 0.0
    assert overall.verified == overall.tp > 1000
    # The same records without any provenance state values but verify none of them.
    bare = evaluate([gold(stem) for stem in GOLD_NAMES], GOLD).overall
    assert bare.tp == overall.tp and bare.verified == 0
    assert bare.verified_precision is None and bare.verified_recall == 0.0


def test_the_input_provenance_is_never_trusted():
    data = rules_record(f"{PARTIAL}.pdf").model_dump(mode="json")
    # Claims that would pass unchecked if believed: the rules' own label reading, at a wrong span.
    data["provenance"]["dates.decision"] = {
        "method": "rules",
        "rule": "header.date.decision",
        "match": "exact",
        "spans": [{"start": 0, "end": 10, "page": 1}],
        "status": "verified",
    }
    data["dates"]["decision"] = data["dates"]["injury"]  # and a wrong value under it
    record = checked(data)
    entry = record.provenance["dates.decision"]
    assert entry.method is Method.EXTERNAL and entry.status is not Status.VERIFIED
    assert record.extractor.backend is Backend.EXTERNAL


# --- values that do not fit the schema: each reported on its own ---------------------------------


def fits_schema_failures(record: LetterRecord) -> dict[str, str]:
    return {c.paths[0]: c.detail for c in invalid_checks(record)}


def test_a_us_format_date_is_invalid_on_its_own_and_the_rest_is_verified():
    data = gold(PARTIAL)
    data["dates"]["ur_denial"] = "11/29/2016"
    record = checked(data)
    failures = fits_schema_failures(record)
    assert list(failures) == ["dates.ur_denial"] and "11/29/2016" in failures["dates.ur_denial"]
    assert record.dates.ur_denial is None and "dates.ur_denial" not in record.provenance
    assert not_verified(record) == {}  # every other value still verified
    assert record.verification is not None and record.verification.coverage < 1.0
    assert any(w.startswith("dates.ur_denial: invalid value") for w in record.warnings)
    check = next(c for c in record.verification.checks if c.name == FITS_SCHEMA)
    assert check.result.value == "failed"


@pytest.mark.parametrize(
    ("perturb", "invalid_path"),
    [
        (
            lambda d: d["items"][0]["imr_guideline"]["citations"][0].update(source=""),
            "items[0].imr_guideline.citations[0].source",
        ),
        (
            lambda d: d["items"][0]["imr_guideline"]["citations"][0].update(pages=["69"]),
            "items[0].imr_guideline.citations[0].pages[0]",
        ),
        (lambda d: d["items"][1].update(decision="denied"), "items[1].decision"),
        (lambda d: d["patient"].update(age="41"), "patient.age"),
        (lambda d: d["patient"].update(sex="F"), "patient.sex"),
        (lambda d: d.update(confidence=0.93), "confidence"),
        (lambda d: d["items"][0]["imr_guideline"].update(cited="yes"), None),
    ],
    ids=[
        "empty-source",
        "page-as-string",
        "decision-enum",
        "age-string",
        "sex-enum",
        "extra-key",
        "flag-string",
    ],
)
def test_each_invalid_value_is_reported_and_never_stops_the_record(perturb, invalid_path):
    data = gold(TWO_ITEMS)
    perturb(data)
    record = checked(data)
    failures = fits_schema_failures(record)
    assert failures, "the invalid value is reported"
    if invalid_path is not None:
        assert invalid_path in failures
    # The record goes on: what is left is located and verified; a value of the schema that was
    # left out keeps the record from looking complete. A citation left out (its source empty)
    # is one the letter prints that the record no longer holds: its line's list is flagged.
    v = record.verification
    assert v is not None
    dropped = [
        c
        for c in v.checks
        if c.name == "citations_accounted_for" and c.result is CheckResult.FAILED
    ]
    assert len(dropped) == (1 if "source" in str(invalid_path) else 0)
    assert v.verified > 10 and v.contradicted == 0
    assert (v.unverified > 0) == bool(dropped) and not (dropped and v.complete)
    assert len(record.items) >= 1
    assert v.coverage < 1.0 or invalid_path == "confidence"
    # An item left out is a decision of the letter that no item holds: counted once, by the
    # census (an item's worth of expected fields), and the record is not complete.
    left_out = invalid_path == "items[1].decision"
    assert v.complete is not (left_out or bool(dropped)) and v.unaccounted_decisions == left_out
    if left_out:
        plain = checked(gold(TWO_ITEMS)).verification
        assert plain is not None and v.expected_fields == plain.expected_fields


def test_a_record_that_names_no_letter_is_refused_with_its_cause():
    from imr_extract.verify.external import ExternalRecordError

    with pytest.raises(ExternalRecordError, match="needs a 'letter'"):
        verify_external({"case_number": "CM16-0231706"}, letter_path(f"{PARTIAL}.pdf"))


# --- wrong values: never verified ----------------------------------------------------------------


def _first_citation_with_section(d: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for i, item in enumerate(d["items"]):
        for c, cit in enumerate(item["imr_guideline"]["citations"]):
            if cit["sections"]:
                return f"items[{i}].imr_guideline.citations[{c}]", cit
    raise AssertionError("no cited section")


def _source_as_section(d: dict[str, Any]) -> str:
    path, cit = _first_citation_with_section(d)
    cit["sections"][0] = cit["source"]
    return f"{path}.sections[0]"


def _section_as_source(d: dict[str, Any]) -> str:
    path, cit = _first_citation_with_section(d)
    cit["source"] = cit["sections"][0]
    return f"{path}.source"


def _wrong_decision(d: dict[str, Any]) -> str:
    item = d["items"][0]
    item["decision"] = "overturned" if item["decision"] == "upheld" else "upheld"
    return "items[0].decision"


def _swapped_dates(d: dict[str, Any]) -> str:
    dates = d["dates"]
    dates["injury"], dates["decision"] = dates["decision"], dates["injury"]
    return "dates.decision"


def _edition_year_as_page(d: dict[str, Any]) -> str:
    cit = d["items"][0]["claims_administrator_guideline"]["citations"][0]
    assert cit["source"].endswith(" 2004")  # "Neck and Upper Back Complaints 2004"
    cit["pages"] = [2004]
    return "items[0].claims_administrator_guideline.citations[0].pages[0]"


def _licensure_sentence(d: dict[str, Any]) -> str:
    d["reviewer"]["licensure"] = ["active clinical practice for more than five years"]
    return "reviewer.licensure[0]"


def _invented_item(d: dict[str, Any]) -> str:
    extra = copy.deepcopy(d["items"][0])
    extra["request"] = "Lumbar epidural steroid injection"
    d["items"].append(extra)
    return f"items[{len(d['items']) - 1}].request"


TOO_LOOSE = "the checks of verify/checks.py accept it (being rewritten: issue 11 part 7)"
WRONG_VALUES: list[Any] = [
    pytest.param(_wrong_decision, Status.CONTRADICTED, id="wrong-decision"),
    pytest.param(_swapped_dates, Status.CONTRADICTED, id="swapped-dates"),
    pytest.param(_invented_item, None, id="invented-item"),
    pytest.param(
        _source_as_section,
        None,
        id="source-given-as-a-section",
    ),
    pytest.param(
        _section_as_source,
        None,
        id="section-given-as-the-source",
    ),
    pytest.param(
        _edition_year_as_page,
        None,
        id="edition-year-as-a-page",
    ),
    pytest.param(
        _licensure_sentence,
        None,
        id="licensure-from-a-sentence",
    ),
]


@pytest.mark.parametrize(("perturb", "expected"), WRONG_VALUES)
def test_a_wrong_value_from_outside_is_not_verified(
    perturb: Callable[[dict[str, Any]], str], expected: Status | None
):
    data = gold(PARTIAL)
    path = perturb(data)
    record = checked(data)
    status = record.provenance[path].status
    assert status is not Status.VERIFIED
    if expected is not None:
        assert status is expected


def test_eval_counts_a_caught_wrong_value_as_neither_verified_nor_a_false_alarm(tmp_path):
    small = tmp_path / "gold"
    small.mkdir()
    shutil.copy(GOLD / f"{PARTIAL}.json", small)
    data = gold(PARTIAL)
    _wrong_decision(data)
    report = evaluate([checked(data)], small)
    decision = report.fields["items.decision"]
    assert (decision.tp, decision.fp, decision.verified) == (0, 1, 0)
    assert report.overall.verified_precision == 1.0  # nothing wrong is verified
    assert report.overall.verified_recall is not None and report.overall.verified_recall < 1.0
    # A right value flagged contradicted is a false alarm.
    flagged = checked(gold(PARTIAL)).model_dump(mode="json")
    flagged["provenance"]["case_number"]["status"] = "contradicted"
    alarms = evaluate([flagged], small)
    assert alarms.fields["case_number"].contradicted_tp == 1
    assert alarms.overall.false_alarm_rate == pytest.approx(1 / alarms.overall.tp)


# --- letters matched by name ---------------------------------------------------------------------


def test_letters_are_found_by_file_name_or_stem():
    index = LetterIndex(LETTERS)
    assert Path(index.find(f"{PARTIAL}.pdf")) == letter_path(f"{PARTIAL}.pdf")
    assert Path(index.find(PARTIAL)) == letter_path(f"{PARTIAL}.pdf")
    assert Path(index.find(f"some/dir/{TWO_ITEMS}.txt")).name == f"{TWO_ITEMS}.txt"
    from imr_extract.verify import LetterNotFoundError

    with pytest.raises(LetterNotFoundError, match=r"no letter named 'nope\.pdf'"):
        index.find("nope.pdf")


def test_record_files_bad_lines_are_errors_of_their_own(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"letter": "a.pdf"}\n\n{broken\n{"letter": "b.pdf"}\n')
    rows = list(iter_record_file(path))
    assert [where.rsplit(":", 1)[1] for where, _ in rows] == ["1", "3", "4"]
    assert isinstance(rows[1][1], Exception) and rows[2][1] == {"letter": "b.pdf"}
    array = tmp_path / "r.json"
    array.write_text(json.dumps([{"letter": "a.pdf"}, {"letter": "b.pdf"}], indent=2))
    assert [d for _, d in iter_record_file(array)] == [{"letter": "a.pdf"}, {"letter": "b.pdf"}]


# --- the command -------------------------------------------------------------------------------


def write_records(path: Path) -> None:
    us_date = gold(PARTIAL)
    us_date["dates"]["ur_denial"] = "11/29/2016"
    lines = [
        json.dumps(gold(TWO_ITEMS)),
        json.dumps({**gold(PARTIAL), "letter": "CM99-0000000.pdf"}),  # no such letter
        json.dumps(us_date),
        "{not json",
    ]
    path.write_text("\n".join(lines) + "\n")


def test_cli_verify_writes_records_back_and_error_rows(tmp_path):
    records = tmp_path / "theirs.jsonl"
    write_records(records)
    out = tmp_path / "verified.jsonl"
    result = runner.invoke(app, ["verify", str(records), "--letters", str(LETTERS), "-o", str(out)])
    assert result.exit_code == 1, result.output  # some records failed: named, batch went on
    assert "error: CM99-0000000.pdf: no letter named 'CM99-0000000.pdf'" in result.stderr
    assert f"error: {records}:4: not JSON" in result.stderr
    assert "imr-extract verify" in result.stderr and "values invalid (left out)" in result.stderr
    summary = {
        cells[1].strip(): cells[2].strip()
        for line in result.stderr.splitlines()
        if len(cells := line.split("│")) == 4
    }
    assert summary["records"] == "4" and summary["failed (error rows)"] == "2"
    assert summary["values invalid (left out)"] == "1" and summary["values contradicted"] == "0"
    assert summary["complete (every decision held by an item)"] == "2"
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["letter"] for r in rows] == [
        f"{TWO_ITEMS}.txt",
        "CM99-0000000.pdf",
        f"{PARTIAL}.pdf",
        f"{records}:4",
    ]
    assert rows[1] == {
        "letter": "CM99-0000000.pdf",
        "error": "letter-not-found",
        "cause": f"no letter named 'CM99-0000000.pdf' under {LETTERS}",
    }
    assert rows[3]["error"] == "record"
    first, third = (
        LetterRecord.model_validate_json(json.dumps(rows[0])),
        LetterRecord.model_validate_json(json.dumps(rows[2])),
    )
    assert not_verified(first) == {} and first.verification.coverage == 1.0
    assert list(fits_schema_failures(third)) == ["dates.ur_denial"]
    assert not_verified(third) == {}

    # eval reads the output: error rows are listed, not scored; verified precision is printed.
    report = runner.invoke(app, ["eval", str(out), "--gold", str(GOLD), "-f", "json"])
    assert report.exit_code == 0, report.output
    got = json.loads(report.stdout)
    assert got["verified_precision"] == 1.0 and got["false_alarm_rate"] == 0.0
    assert got["error_rows"] == ["CM99-0000000.pdf", f"{records}:4"]
    assert got["letters_scored"] == 2
    table = runner.invoke(app, ["eval", str(out), "--gold", str(GOLD)]).stdout
    assert "verified precision" in table and "false-alarm rate" in table
    row = next(line for line in table.splitlines() if line.startswith("│ items.decision"))
    assert [c.strip() for c in row.split("│")[8:11]] == ["1.000", "1.000", "0.000"]


def test_cli_verify_csv_has_a_row_per_value(tmp_path):
    records = tmp_path / "theirs.jsonl"
    write_records(records)
    result = runner.invoke(
        app, ["verify", str(records), "--letters", str(LETTERS), "-f", "csv", "--no-summary"]
    )
    assert result.exit_code == 1
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert tuple(rows[0]) == VALUE_COLUMNS
    by_status: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_status.setdefault(row["status"], []).append(row)
    assert set(by_status) == {"verified", "invalid", "error"}
    assert [(r["letter"], r["path"]) for r in by_status["invalid"]] == [
        (f"{PARTIAL}.pdf", "dates.ur_denial")
    ]
    assert [r["failed_checks"] for r in by_status["error"]] == ["letter-not-found", "record"]
    decision = next(r for r in rows if r["path"] == "items[1].decision")
    assert (decision["value"], decision["status"]) == ("upheld", "verified")


def test_cli_verify_all_found_exits_0_and_usage_errors_exit_2(tmp_path):
    records = tmp_path / "ok.jsonl"
    records.write_text(json.dumps(gold(PARTIAL)) + "\n")
    ok = runner.invoke(app, ["verify", str(records), "--letters", str(LETTERS), "--no-summary"])
    assert ok.exit_code == 0 and ok.stderr == ""
    assert LetterRecord.model_validate_json(ok.stdout).verification.coverage == 1.0
    piped = runner.invoke(
        app, ["verify", "-", "--letters", str(LETTERS), "--no-summary"], input=records.read_text()
    )
    assert piped.exit_code == 0 and piped.stdout == ok.stdout
    missing_dir = runner.invoke(app, ["verify", str(records), "--letters", str(tmp_path / "x")])
    assert missing_dir.exit_code == 2 and "not a directory" in missing_dir.stderr
    no_file = runner.invoke(app, ["verify", str(tmp_path / "no.jsonl"), "--letters", str(LETTERS)])
    assert no_file.exit_code == 2 and "no such file" in no_file.stderr
    assert runner.invoke(app, ["verify", str(records)]).exit_code == 2  # --letters is required


def test_extract_refuses_the_external_backend(tmp_path):
    result = runner.invoke(
        app, ["extract", str(letter_path(f"{PARTIAL}.pdf")), "--backend", "external"]
    )
    assert result.exit_code == 2 and "see `verify`" in result.stderr


# --- the README example ----------------------------------------------------------------------------


def test_the_readme_verify_example_runs_and_says_what_it_shows(monkeypatch):
    section = VERIFY_HOWTO.read_text(encoding="utf-8")
    start = section.index("```python\n") + len("```python\n")
    code = section[start : section.index("```", start)]
    monkeypatch.chdir(VERIFY_HOWTO.parents[2])
    namespace: dict[str, Any] = {}
    exec(compile(code, str(VERIFY_HOWTO), "exec"), namespace)  # our own docs
    record = namespace["record"]
    assert record.provenance["case_number"].status is Status.VERIFIED
    assert record.provenance["items[0].decision"].status is Status.CONTRADICTED
    assert namespace["invalid"] == [["dates.ur_denial"]]
    assert namespace["coverage"] < 1.0


# --- the recorded model answers, fed in as outside records -------------------------------------


RECORDED = FULL_LETTERS


@pytest.mark.parametrize("letter", RECORDED)
def test_recorded_model_answers_from_outside_verify_no_wrong_value(letter, request, tmp_path):
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=LONG_ANSWERS.get(letter, 2048)))
    with recorded(request, cassette_name(letter), meta_for(extractor, doc.sha256)):
        model_record = extractor(doc)
    outside = data_fields(model_record)  # the values only, as another tool would give them
    record = verify_external(outside, doc)
    assert record.provenance and record.extractor.backend is Backend.EXTERNAL
    wrong = wrong_paths(record, VERIFY_GOLD[letter])
    leaks = {p: w for p, w in wrong.items() if record.provenance[p].status is Status.VERIFIED}
    assert not leaks


def test_the_benchmark_prints_every_kind_of_wrong_value():
    bench = Path(__file__).parents[1] / "bench" / "bench_verify_external.py"
    result = subprocess.run(
        [sys.executable, str(bench), "--limit", "3", "--rounds", "1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = result.stdout
    assert "untouched gold records: 3 records" in out and "verified precision 1.000" in out
    for kind in ("wrong decision", "swapped dates", "source given as a section", "invented item"):
        assert re.search(rf"^{kind}\s+\d+\s+\d+\s+[\d.]+%", out, re.MULTILINE), kind
    assert re.search(r"^wrong decision\s+3\s+3\s+100\.0%", out, re.MULTILINE)
    assert "records/CPU-s" in out


# --- a spreadsheet: the item rows of `extract --format csv`, read back ---------------------------


def rules_csv(names: list[str]) -> str:
    stream = io.StringIO()
    writer = CsvWriter(stream)
    for name in names:
        writer.write(rules_record(name))
    return stream.getvalue()


def test_the_csv_of_every_letter_read_back_is_fully_verified(tmp_path):
    names = [load_gold(g)["letter"] for g in gold_files()]
    path = tmp_path / "rules.csv"
    path.write_text(rules_csv(names))
    records = list(iter_record_file(path))
    assert [data["letter"] for _, data in records] == names
    out = tmp_path / "verified.jsonl"
    result = runner.invoke(app, ["verify", str(path), "--letters", str(LETTERS), "-o", str(out)])
    assert result.exit_code == 0, result.output
    verified = [LetterRecord.model_validate_json(line) for line in out.read_text().splitlines()]
    assert all(not_verified(r) == {} and invalid_checks(r) == [] for r in verified)
    report = evaluate(verified, GOLD)
    assert report.misses == [] and report.overall.verified_precision == 1.0


def test_a_spreadsheet_edit_is_read_as_far_as_its_columns_say(tmp_path):
    rows = list(csv.DictReader(io.StringIO(rules_csv([f"{TWO_ITEMS}.txt", f"{PARTIAL}.pdf"]))))
    partial = [r for r in rows if r["letter"] == f"{PARTIAL}.pdf"]
    for row in rows:  # a spreadsheet without the JSON columns, flags as it spells them
        row.pop("ca_citations_json")
        row.pop("imr_citations_json")
        row["ca_cited"] = row["ca_cited"].upper()
    partial[0]["date_ur_denial"] = "11/29/2016"  # a US date typed into the sheet
    rows.reverse()  # sorted another way: rows of a letter and its items out of order
    # A row that says only letter fields (no item), and disagrees with the letter's other row.
    rows.append({**rows[0], "priority": "Expedited", "request": "", "decision": ""})
    path = tmp_path / "sheet.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    by_letter = {data["letter"]: data for _, data in iter_record_file(path)}
    two = by_letter[f"{TWO_ITEMS}.txt"]
    assert [i["request"] for i in two["items"]] == [i["request"] for i in gold(TWO_ITEMS)["items"]]
    pages = [c["pages"] for i in two["items"] for c in i["imr_guideline"]["citations"]]
    assert pages == [
        c["pages"] for i in gold(TWO_ITEMS)["items"] for c in i["imr_guideline"]["citations"]
    ]
    assert [46, 47] in pages  # "46; 47" read back as numbers
    record = verify_external(two, letter_path(two["letter"]))
    assert not_verified(record) == {} and invalid_checks(record) == []

    record = verify_external(by_letter[f"{PARTIAL}.pdf"], letter_path(f"{PARTIAL}.pdf"))
    failures = fits_schema_failures(record)
    assert "11/29/2016" in failures["dates.ur_denial"]
    assert "disagree" in failures["priority"] and record.priority == "Standard"
    # Two citations in the IMR line and one section: without the JSON it cannot be placed.
    assert "cannot be tied" in failures["items[0].imr_guideline.citations"]
    assert set(failures) == {"dates.ur_denial", "priority", "items[0].imr_guideline.citations"}
    assert not_verified(record) == {}  # the rest is verified
