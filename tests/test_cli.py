"""The imr-extract command, end to end through typer's runner."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from conftest import LETTERS, letter_path
from imr_extract.cli import app
from imr_extract.schema import json_schema_text

runner = CliRunner()
EXAMPLES = Path(__file__).parents[1] / "examples" / "letters"


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_extract_directory_writes_one_jsonl_record_per_letter():
    result = run("extract", str(LETTERS), "--no-summary")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 66
    assert {r["letter"] for r in records} >= {"CM16-0231706.pdf", "000_95767a46bf993051.txt"}
    assert sum(len(r["items"]) for r in records) == 156


def test_json_and_csv_formats(tmp_path):
    out = tmp_path / "out.json"
    assert run("extract", str(EXAMPLES), "-f", "json", "-o", str(out)).exit_code == 0
    records = json.loads(out.read_text())
    assert len(records) == len(list(EXAMPLES.iterdir()))
    result = run("extract", str(letter_path("CM17-0014449.pdf")), "-f", "csv", "--no-summary")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 15  # one row per item
    assert {r["decision"] for r in rows} <= {"upheld", "overturned"}
    assert rows[0]["case_number"] == "CM17-0014449"


def test_bad_files_are_named_and_the_batch_goes_on(tmp_path):
    (tmp_path / "empty.txt").write_bytes(b"")
    (tmp_path / "blob.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 8)
    (tmp_path / "notes.txt").write_text("Dear colleague, nothing was decided here.\n")
    good = letter_path("CM16-0231706.pdf")
    (tmp_path / good.name).write_bytes(good.read_bytes())
    errors = tmp_path / "errors.jsonl"
    result = run("extract", str(tmp_path), "--errors", str(errors))
    assert result.exit_code == 1
    assert [json.loads(x)["letter"] for x in result.stdout.splitlines()] == [good.name]
    assert "empty.txt: empty file" in result.stderr
    assert "blob.pdf: truncated PDF" in result.stderr
    assert "notes.txt: no decisions found" in result.stderr
    logged = [json.loads(x) for x in errors.read_text().splitlines()]
    assert sorted(e["error"] for e in logged) == ["empty", "no-decisions", "pdf"]
    assert "failed" in result.stderr and "3" in result.stderr


def test_nothing_to_read_is_a_usage_error(tmp_path):
    result = run("extract", str(tmp_path))
    assert result.exit_code == 2
    assert "no letters" in result.stderr


def test_summary_counts_decisions():
    result = run("extract", str(EXAMPLES), "-o", "/dev/null")
    assert result.exit_code == 0
    assert "overturned" in result.stderr and "upheld" in result.stderr
    rate = re.search(r"letters/s \(extracted\)\s*│\s*([\d,.]+)", result.stderr)
    seconds = re.search(r"seconds\s*│\s*([\d.]+)", result.stderr)
    assert rate and seconds and float(rate.group(1).replace(",", "")) > 0


def test_schema_command_prints_the_exported_schema(tmp_path):
    assert run("schema").stdout == json_schema_text()
    out = tmp_path / "s.json"
    run("schema", "--out", str(out))
    assert out.read_text() == json_schema_text()


def test_layouts_command_lists_known_forms():
    result = run("layouts")
    assert "final_determination_2016" in result.stdout
    assert "notice_2013" in result.stdout


def test_a_rules_run_does_not_load_the_model_client(tmp_path):
    """openai and instructor take about a second to import and 37 MB: a rules-only run (no model
    configured) must not pay for them, in the CLI process or in its workers."""
    code = (
        "import sys\n"
        "from imr_extract.cli import main\n"
        f"sys.argv = ['imr-extract', 'extract', {str(EXAMPLES)!r}, '-o', {str(tmp_path / 'o')!r},"
        " '--no-store', '--no-summary']\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    assert not exc.code, exc.code\n"
        "print(sorted(m for m in ('openai', 'instructor', 'httpx') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMR_LLM_"))}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stderr
    assert (tmp_path / "o").read_text().count("\n") == len(list(EXAMPLES.iterdir()))
