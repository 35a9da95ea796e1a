"""The benchmarks still run and print their tables (their figures are measured, not tested)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def run(script: str, *args: str, cwd: Path) -> str:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_bench_batch_runs_the_cli_and_reports_every_configuration(tmp_path):
    stdout = run(
        "bench_batch.py", "--letters", "30", "--workers", "1", "2", "--keep", str(tmp_path),
        cwd=tmp_path,
    )  # fmt: skip
    rows = [line.split() for line in stdout.splitlines() if re.match(r"(text|pdf)\s+\d", line)]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("text", "1", "30"),
        ("text", "2", "30"),
        ("pdf", "1", "30"),
        ("pdf", "2", "30"),
    ]
    assert all(float(r[4].replace(",", "")) > 0 for r in rows)  # letters/s
    # every letter was extracted and written (the bench checks the output's length itself)
    assert len(list((tmp_path / "text").iterdir())) == 30
    assert sum(1 for _ in (tmp_path / "out-pdf-2.jsonl").open()) == 30


def test_bench_rules_prints_every_phase(tmp_path):
    letters = Path(__file__).parent / "data" / "letters"
    small = tmp_path / "letters"
    small.mkdir()
    for p in [*sorted(letters.rglob("*.pdf"))[:3], *sorted(letters.rglob("*.txt"))[:1]]:
        (small / p.name).write_bytes(p.read_bytes())
    stdout = run("bench_rules.py", "--rounds", "1", "--letters", str(small), cwd=tmp_path)
    phases = [line.split()[0] for line in stdout.splitlines()[1:] if line and line[0] != "("]
    assert phases == ["rules", "text", "pdf-ingest:pypdfium2", "pdf-ingest:pypdf", "pdf"]


def test_form_readers_prints_every_form_and_variant(tmp_path):
    stdout = run("form_readers.py", cwd=tmp_path)
    rows = [line.split() for line in stdout.splitlines()[1:]]
    assert {r[0] for r in rows} == {
        "notice_2013",
        "maximus_imr_decisions",
        "final_determination_prose",
    }
    assert sum(r[1] == "bundled" for r in rows) == 3 and len(rows) > 3
    # letters, items found/in gold, gold fields exact/in gold, verified/values, wrong, warnings
    assert all(len(r) == 8 and all(re.fullmatch(r"\d+/\d+", c) for c in r[3:6]) for r in rows)


def test_bench_parquet_exports_every_format_and_both_store_sizes(tmp_path):
    from test_parquet import _pq

    _pq()  # skipped without pyarrow (not in CI)
    stdout = run("bench_parquet.py", "--letters", "40", "--keep", str(tmp_path), cwd=tmp_path)
    rows = [
        line.split() for line in stdout.splitlines() if re.match(r"(jsonl|csv|parquet)\s", line)
    ]
    assert [(r[0], r[1]) for r in rows] == [
        ("jsonl", "40"), ("csv", "40"), ("parquet", "20"), ("parquet", "40"),
    ]  # fmt: skip
    assert all(float(r[3].replace(",", "")) > 0 for r in rows)  # letters/s
    assert sorted(p.name for p in (tmp_path / "parquet").iterdir()) == [
        "items.parquet",
        "letters.parquet",
    ]
