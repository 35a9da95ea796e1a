"""What `extract` and `export` write, and where: a table on a terminal, JSON Lines when piped,
the format an output file's extension names, the data and compact views, the CSV's rationale,
statuses and coverage; and the notes that keep a run from surprising (skipped files, a run that
served everything from the store, a model call announced, a missing key named)."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import LETTERS, document, letter_path, rules_record
from fake_openai import Reply, serve
from imr_extract import cli
from imr_extract.cli import app
from imr_extract.output import (
    CSV_COLUMNS,
    DATA_COLUMNS,
    DATA_KEYS,
    ITEM_STATUS,
    LETTER_STATUS,
    OutputFormat,
    View,
    field_status,
    format_for,
    item_rows,
)
from imr_extract.review import render_review
from imr_extract.rows import read_csv_records
from imr_extract.schema import Status

runner = CliRunner()
TWO = [str(LETTERS / "pdf" / "CM16-0224814.pdf"), str(LETTERS / "txt" / "000_95767a46bf993051.txt")]


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """Standard output is a terminal (as rich's console would detect it)."""
    monkeypatch.setattr(cli, "stdout_is_terminal", lambda: True)


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --------------------------------------------------------------------------- the terminal


def test_on_a_terminal_extract_prints_a_table_per_letter_and_where_the_records_are(terminal):
    result = runner.invoke(app, ["extract", *TWO, "--no-summary"])
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert "{" not in out  # no JSON
    lines = out.splitlines()
    header = next(line for line in lines if line.startswith("letter"))
    assert header.split() == ["letter", "case", "items", "upheld", "overt.", "verif.", "unver.",
                              "contra."]  # fmt: skip
    record = rules_record("CM16-0224814.pdf")
    v = record.verification
    assert v is not None
    row = next(line for line in lines if line.startswith("CM16-0224814.pdf")).split()
    upheld = sum(i.decision.value == "upheld" for i in record.items)
    assert row == [
        "CM16-0224814.pdf",
        "CM16-0224814",
        str(len(record.items)),
        str(upheld),
        str(len(record.items) - upheld),
        str(v.verified),
        str(v.unverified),
        str(v.contradicted),
    ]
    assert any(line.startswith("000_95767a46bf993051.txt") for line in lines)
    run_id = out.split("imr-extract export --run ")[1].split()[0]
    # ... and the records are where it says: `export --run` gives them back in full
    back = runner.invoke(app, ["export", "--run", run_id])
    assert back.exit_code == 0
    assert [r["letter"] for r in _jsonl(back.stdout)] == [Path(p).name for p in TWO]


def test_on_a_terminal_a_failed_letter_shows_its_error_code(terminal, tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("not a letter at all\n")
    result = runner.invoke(app, ["extract", TWO[0], str(bad), "--no-summary"])
    assert result.exit_code == 1
    row = next(line for line in result.stdout.splitlines() if line.startswith("bad.txt"))
    assert row.split() == ["bad.txt", "no-decisions"]


def test_piped_or_with_a_format_extract_writes_json_lines(terminal, monkeypatch):
    on_terminal = runner.invoke(app, ["extract", TWO[0], "-f", "jsonl", "--no-summary"])
    assert _jsonl(on_terminal.stdout)[0]["case_number"] == "CM16-0224814"
    monkeypatch.setattr(cli, "stdout_is_terminal", lambda: False)
    piped = runner.invoke(app, ["extract", TWO[0], "--no-summary"])
    assert _jsonl(piped.stdout)[0]["case_number"] == "CM16-0224814"


def test_stdout_is_a_terminal_as_rich_detects_it(monkeypatch):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert cli.stdout_is_terminal() is False  # a pipe, a file
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich's way to say "this is a terminal"
    assert cli.stdout_is_terminal() is True


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize(
    ("name", "fmt", "want"),
    [
        ("out.csv", None, OutputFormat.CSV),
        ("OUT.CSV", None, OutputFormat.CSV),
        ("out.json", None, OutputFormat.JSON),
        ("out.ndjson", None, OutputFormat.JSONL),
        ("out.jsonl", None, OutputFormat.JSONL),
        ("out.txt", None, OutputFormat.JSONL),
        ("-", None, OutputFormat.JSONL),
        ("out.csv", OutputFormat.JSONL, OutputFormat.JSONL),  # -f wins
    ],
)
def test_the_format_follows_the_extension_unless_given(name, fmt, want):
    assert format_for(Path(name), fmt) is want
    assert format_for(None, None) is OutputFormat.JSONL


@pytest.mark.parametrize("command", ["extract", "export"])
def test_out_csv_writes_csv_and_out_json_an_array(tmp_path, command):
    first = runner.invoke(app, ["extract", *TWO, "-o", str(tmp_path / "all.jsonl")])
    assert first.exit_code == 0
    args = ["extract", *TWO] if command == "extract" else ["export"]
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "x.csv")]).exit_code == 0
    rows = list(csv.DictReader((tmp_path / "x.csv").open(newline="")))
    assert list(rows[0]) == CSV_COLUMNS
    assert rows[0]["letter"] == "CM16-0224814.pdf"
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "x.json")]).exit_code == 0
    array = json.loads((tmp_path / "x.json").read_text())
    assert [r["letter"] for r in array] == [Path(p).name for p in TWO]
    # -f says otherwise: it wins over the extension
    assert runner.invoke(app, [*args, "-o", str(tmp_path / "y.csv"), "-f", "jsonl"]).exit_code == 0
    assert _jsonl((tmp_path / "y.csv").read_text())[0]["letter"] == "CM16-0224814.pdf"


# --------------------------------------------------------------------------- views


@pytest.mark.parametrize("command", ["extract", "export"])
def test_view_data_drops_provenance_and_checks_and_compact_keeps_spans_and_status(
    tmp_path, command
):
    runner.invoke(app, ["extract", TWO[0], "-o", str(tmp_path / "all.jsonl")])
    full = _jsonl((tmp_path / "all.jsonl").read_text())[0]
    args = ["extract", TWO[0], "--no-summary"] if command == "extract" else ["export"]
    data = _jsonl(runner.invoke(app, [*args, "--view", "data"]).stdout)[0]
    assert list(data) == [k for k in DATA_KEYS if k in full]
    assert "provenance" not in data and "verification" not in data
    assert {k: full[k] for k in data} == data  # the values themselves are untouched
    compact = _jsonl(runner.invoke(app, [*args, "--view", "compact"]).stdout)[0]
    assert set(compact["provenance"]) == set(full["provenance"])
    for path, p in full["provenance"].items():
        assert compact["provenance"][path] == {
            "status": p["status"],
            "spans": [[s["start"], s["end"], s["page"]] for s in p["spans"]],
        }
    assert all(c["result"] != "passed" for c in compact["verification"]["checks"])
    assert compact["verification"]["verified"] == full["verification"]["verified"]
    sizes = [len(json.dumps(x)) for x in (data, compact, full)]
    assert sizes == sorted(sizes) and sizes[0] < sizes[2] / 2
    # a JSON array in a view, too
    array = json.loads(runner.invoke(app, [*args, "--view", "data", "-f", "json"]).stdout)
    assert array == [data]


def test_csv_in_the_data_view_has_the_values_alone(tmp_path):
    result = runner.invoke(app, ["extract", TWO[0], "-f", "csv", "--view", "data"])
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == DATA_COLUMNS
    assert not any(c.endswith("_status") for c in rows[0])


# --------------------------------------------------------------------------- the CSV


def test_csv_carries_the_rationale_each_fields_status_and_the_coverage():
    record = rules_record("CM16-0224814.pdf")
    assert record.verification is not None and record.items[0].rationale
    rows = list(item_rows(record))
    assert rows[0]["rationale"] == record.items[0].rationale
    assert rows[0]["coverage"] == round(record.verification.coverage, 4)
    prov = record.provenance
    assert rows[0]["case_number_status"] == prov["case_number"].status.value
    assert rows[0]["request_status"] == prov["items[0].request"].status.value
    assert rows[0]["date_decision_status"] == prov["dates.decision"].status.value
    # a field never read has no status
    assert record.reviewer.subspecialty is None and rows[0]["reviewer_subspecialty_status"] is None
    columns = {f"{c}_status" for c in (*LETTER_STATUS, *ITEM_STATUS)}
    assert columns <= set(rows[0]) and columns <= set(CSV_COLUMNS)


def test_a_field_with_parts_reports_its_worst_part():
    statuses = {
        "items[0].imr_guideline.citations[0].source": "verified",
        "items[0].imr_guideline.citations[1].pages[0]": "unverified",
        "items[0].imr_guideline.cited": "verified",
        "items[10].imr_guideline.citations[0].source": "contradicted",  # another item
    }
    assert field_status(statuses, "items[0].imr_guideline.citations") == "unverified"
    assert field_status(statuses, "items[0].imr_guideline.cited") == "verified"
    statuses["items[0].imr_guideline.citations[0].kind"] = "contradicted"
    assert field_status(statuses, "items[0].imr_guideline.citations") == "contradicted"
    assert field_status(statuses, "items[1].imr_guideline.citations") is None


def test_a_contradicted_value_is_contradicted_in_its_status_column():
    record = rules_record("CM16-0224814.pdf")
    prov = record.provenance["items[0].decision"]
    record.provenance["items[0].decision"] = prov.model_copy(update={"status": Status.CONTRADICTED})
    assert next(iter(item_rows(record)))["decision_status"] == "contradicted"


def test_the_csv_read_back_keeps_the_rationale_and_is_not_flagged():
    record = rules_record("CM16-0224814.pdf")
    stream = io.StringIO()
    writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS)
    writer.writeheader()
    writer.writerows(item_rows(record))
    (_, back), *_ = read_csv_records(stream.getvalue(), "x.csv")
    assert "_invalid" not in back  # the status and coverage columns are known columns
    assert [i["rationale"] for i in back["items"]] == [i.rationale for i in record.items]


# --------------------------------------------------------------------------- notes


def test_export_of_a_run_that_only_reused_the_store_writes_what_it_served(tmp_path):
    assert runner.invoke(app, ["extract", TWO[0], "-o", str(tmp_path / "a.jsonl")]).exit_code == 0
    again = runner.invoke(app, ["extract", *TWO, "-o", str(tmp_path / "b.jsonl")])
    assert "from the run store (not redone)" in again.stderr
    result = runner.invoke(app, ["export", "--run", "last"])
    assert result.exit_code == 0 and "note" not in result.stderr
    # the letter it served (made by the first run) and the one it extracted, once each
    assert sorted(r["letter"] for r in _jsonl(result.stdout)) == sorted(Path(p).name for p in TWO)
    # the first run's own export is unchanged
    runs = sqlite3.connect(os.environ["IMR_STORE"]).execute(
        "SELECT id FROM runs ORDER BY started_at, rowid"
    )
    first = next(iter(runs))[0]
    only = runner.invoke(app, ["export", "--run", first])
    assert [r["letter"] for r in _jsonl(only.stdout)] == ["CM16-0224814.pdf"]


def test_export_of_a_run_with_no_record_says_why(tmp_path):
    assert runner.invoke(app, ["extract", TWO[0], "-o", str(tmp_path / "a.jsonl")]).exit_code == 0
    assert runner.invoke(app, ["extract", TWO[0], "-o", str(tmp_path / "b.jsonl")]).exit_code == 0
    with sqlite3.connect(os.environ["IMR_STORE"]) as db:  # a store from before `served`
        db.execute("DELETE FROM served")
    result = runner.invoke(app, ["export", "--run", "last"])
    assert result.exit_code == 0 and result.stdout == ""
    said = " ".join(result.stderr.split())
    assert "extracted no record: its 1 letter were served from the store" in said
    assert "`imr-extract export` without --run writes them" in said
    bad = tmp_path / "bad.txt"
    bad.write_text("not a letter at all\n")
    runner.invoke(app, ["extract", str(bad), "-o", str(tmp_path / "c.jsonl")])
    failed = runner.invoke(app, ["export", "--run", "last"])
    assert "its 1 letter failed" in " ".join(failed.stderr.split())


def test_export_of_a_run_that_extracted_records_says_nothing_more():
    runner.invoke(app, ["extract", TWO[0], "--no-summary"])
    result = runner.invoke(app, ["export", "--run", "last"])
    assert len(_jsonl(result.stdout)) == 1 and "note" not in result.stderr


def test_a_directory_names_the_files_it_skips(tmp_path):
    (tmp_path / "CM16-0224814.pdf").write_bytes(Path(TWO[0]).read_bytes())
    (tmp_path / "notes.docx").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "scan.png").write_text("x")
    (tmp_path / ".hidden").write_text("x")
    result = runner.invoke(app, ["extract", str(tmp_path), "--no-summary"])
    assert result.exit_code == 0
    assert "note: 2 files skipped (not .pdf or .txt):" in result.stderr
    assert "notes.docx" in result.stderr and "scan.png" in result.stderr
    assert ".hidden" not in result.stderr
    alone = runner.invoke(app, ["extract", TWO[0], "--no-summary"])
    assert "skipped" not in alone.stderr


def test_letters_per_second_only_when_something_was_extracted():
    first = runner.invoke(app, ["extract", TWO[0]])
    assert "letters/s (extracted)" in first.stderr
    again = runner.invoke(app, ["extract", TWO[0]])
    assert "from the run store" in again.stderr and "letters/s" not in again.stderr


def test_the_review_page_says_the_model_call_failed():
    doc = document("CM16-0224814.pdf")
    record = rules_record("CM16-0224814.pdf")
    failed = record.model_copy(
        update={"extractor": record.extractor.model_copy(update={"model_error": "timeout: 300s"})}
    )
    html = render_review(doc, {"hybrid": failed})
    assert "hybrid: the model call failed (timeout: 300s)" in html
    assert "model call failed" not in render_review(doc, {"rules": record})


# --------------------------------------------------------------------------- model calls


def test_a_hosted_endpoint_without_a_key_is_refused_before_any_call(monkeypatch, tmp_path):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["extract", TWO[0], "--backend", "llm", "-o", str(out)])
    assert result.exit_code == 2
    assert "OPENAI_API_KEY is not set" in result.stderr
    assert not out.exists()  # refused before any output was opened
    compare = runner.invoke(app, ["compare", TWO[0], "--model", "gpt-4o-mini"])
    assert compare.exit_code == 2 and "OPENAI_API_KEY is not set" in compare.stderr


def test_compare_of_letters_with_no_model_named_calls_nothing(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "imr-test-placeholder-not-a-key")
    monkeypatch.delenv("IMR_LLM_MODEL", raising=False)
    result = runner.invoke(app, ["compare", TWO[0]])
    assert result.exit_code == 2
    assert (
        "name the model" in result.stderr and "a key alone starts no model calls" in result.stderr
    )


def test_a_model_call_is_announced_before_it_starts_and_a_local_server_needs_no_key(
    monkeypatch, tmp_path
):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with serve([Reply(status=400, body=b'{"error": {"message": "no"}}')]) as fake:
        result = runner.invoke(
            app,
            ["extract", TWO[0], "--backend", "llm", "--base-url", fake.base_url, "--model",
             "some-local-model", "--no-cache", "--no-store", "-o", str(tmp_path / "o.jsonl")],
        )  # fmt: skip
    assert "OPENAI_API_KEY" not in result.stderr
    line = f"model calls: some-local-model at {fake.base_url}, llm: every letter, 1 letter"
    assert line in result.stderr.replace("\n", " ")
    assert fake.requests  # the call was made after the announcement
    assert result.stderr.index("model calls:") < result.stderr.index("error:")


def test_a_known_price_is_named_when_calls_are_announced(monkeypatch, capsys):
    from imr_extract.llm import LLMConfig

    cli.announce_model(LLMConfig(model="gpt-4o-mini", api_key="x"), 3, "llm: every letter")
    said = capsys.readouterr().err.replace("\n", " ")
    assert "gpt-4o-mini" in said and "3 letters" in said and "$0.15 / $0.6 per 1M" in said


def test_the_data_view_keys_are_the_schema_data_fields():
    from imr_extract.schema import DATA_FIELDS

    assert set(DATA_KEYS) == {*DATA_FIELDS, "layout"}
    assert View.DATA.value == "data"


def test_the_eval_table_shows_where_expected_and_got_differ():
    from imr_extract.evaluate import diff_cells

    same = "Guidelines: " + "x" * 90
    expected, got = diff_cells(same + " page 12 of ODG", same + " page 21 of ODG")
    assert expected != got
    assert "12" in expected and "21" in got
    assert len(expected) <= 60 and len(got) <= 60
    assert diff_cells("short", None) == ("short", "null")


# --------------------------------------------------------------------------- help


@pytest.mark.parametrize(
    "command", [[], ["extract"], ["export"], ["review"], ["eval"], ["batch", "submit"]]
)
def test_help_at_80_columns_names_values_plainly(command, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = runner.invoke(app, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0
    text = result.stdout
    for placeholder in ("<bool>", "<list[str]>", "<str>", "<path>", "<int>", "<float>", "{"):
        assert placeholder not in text, (command, placeholder)
    assert max(len(line) for line in text.splitlines()) <= 80


def test_every_command_help_is_paragraphs_without_hard_line_breaks():
    import typer

    root = typer.main.get_command(app)
    commands = [root, *root.commands.values(), *root.commands["batch"].commands.values()]
    for command in commands:
        help_text = command.help or ""
        assert "\n" not in help_text.replace("\n\n", ""), command.name


def test_help_shows_the_usage_names_and_the_model_defaults(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    review = runner.invoke(app, ["review", "--help"]).stdout
    assert "imr-extract review [OPTIONS] LETTER" in review
    extract = " ".join(runner.invoke(app, ["extract", "--help"]).stdout.split())
    assert "imr-extract extract [OPTIONS] [PATHS]..." in extract
    assert "(default 2048)" in extract and "(default 300)" in extract


def test_on_the_bundled_letters_compact_is_about_half_and_data_about_a_quarter(tmp_path):
    """What docs/reference/inputs-outputs.md says of the views' sizes."""
    examples = Path(__file__).resolve().parents[1] / "examples" / "letters"
    assert runner.invoke(app, ["extract", str(examples), "--no-summary", "-o", "-"]).exit_code == 0
    size = {
        view: len(runner.invoke(app, ["export", "--view", view]).stdout)
        for view in ("full", "compact", "data")
    }
    assert 0.35 < size["compact"] / size["full"] < 0.6
    assert 0.15 < size["data"] / size["full"] < 0.3


def test_the_tutorials_table_is_what_a_terminal_shows(terminal, monkeypatch, tmp_path):
    """docs/tutorial.md shows `extract` on a terminal: the same lines, run id aside."""
    root = Path(__file__).resolve().parents[1]
    page = (root / "docs" / "tutorial.md").read_text()
    block = page.split("$ imr-extract extract examples/letters --no-summary\n", 1)[1]
    shown = block.split("```", 1)[0].splitlines()
    (tmp_path / "examples").symlink_to(root / "examples")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("IMR_STORE", "imr-extract.sqlite")
    result = runner.invoke(app, ["extract", "examples/letters", "--no-summary"])
    assert result.exit_code == 0
    printed = [" ".join(line.split()) for line in result.stdout.splitlines()]
    run_id = result.stdout.split("imr-extract export --run ")[1].split()[0]
    for line in shown:
        want = " ".join(line.split()).replace("20261130T152813Z-9b8dec", run_id)
        assert want in printed, want


def test_batch_submit_refuses_without_a_key_and_announces_with_one(monkeypatch, tmp_path):
    import batch_server

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "IMR_LLM_MODEL", "OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    job = tmp_path / "job.json"
    refused = runner.invoke(app, ["batch", "submit", TWO[0], "--job", str(job)])
    assert refused.exit_code == 2 and "OPENAI_API_KEY is not set" in refused.stderr
    assert not job.exists()
    monkeypatch.setenv("OPENAI_API_KEY", "imr-test-placeholder-not-a-key")
    with batch_server.serve(lambda line: None) as api:
        done = runner.invoke(
            app,
            ["batch", "submit", *TWO, "--job", str(job), "--base-url", api.base_url,
             "--model", "fake-model"],
        )  # fmt: skip
    assert done.exit_code == 0, done.output
    said = " ".join(done.stderr.split())
    assert f"model calls: fake-model at {api.base_url}, Batch API, llm, 2 letters" in said


def test_dash_o_on_a_terminal_writes_records(terminal):
    result = runner.invoke(app, ["extract", TWO[0], "-o", "-", "--no-summary"])
    assert _jsonl(result.stdout)[0]["case_number"] == "CM16-0224814"


def test_the_progress_rate_is_letters_over_the_time_since_the_start() -> None:
    """Letters come in bursts (from the store, or a worker's chunk): a rate over the last
    samples showed 31,546/s for five letters read in half a second."""
    from rich.progress import Progress

    from imr_extract.cli import _RateColumn

    now = [0.0]
    progress = Progress(get_time=lambda: now[0], disable=True)
    task_id = progress.add_task("extracting", total=10)
    progress.start_task(task_id)
    now[0] = 1.999
    progress.advance(task_id, 9)  # a burst just before the sample
    now[0] = 2.0
    progress.advance(task_id, 1)
    task = progress.tasks[0]
    assert _RateColumn().render(task).plain == "5.0/s"


def test_an_extension_that_names_no_format_is_said_and_jsonl_written(tmp_path: Path) -> None:
    """`-o records.xlsx` wrote JSON Lines into a file its name calls a spreadsheet, silently."""
    from typer.testing import CliRunner

    from imr_extract.cli import app

    out = tmp_path / "records.xlsx"
    letter = str(letter_path("CM16-0231706.pdf"))
    result = CliRunner().invoke(
        app, ["extract", letter, "--no-store", "-o", str(out), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert ".xlsx names no format; writing JSON Lines" in result.stderr
    assert json.loads(out.read_text().splitlines()[0])["case_number"] == "CM16-0231706"
    named = tmp_path / "records.csv"
    result = CliRunner().invoke(
        app, ["extract", letter, "--no-store", "-o", str(named), "--no-progress"]
    )
    assert "names no format" not in result.stderr
