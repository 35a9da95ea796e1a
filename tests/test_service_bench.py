"""bench/bench_service.py still runs and prints its table (its figures are measured, not tested)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench" / "bench_service.py"


def test_bench_service_prints_a_row_per_configuration(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--workers", "1", "--requests", "12", "--concurrency", "4",
         "--letter-workers", "1", "--seconds", "60"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[:1] == ["1"]]
    assert [(r[1], r[2], r[3]) for r in rows] == [("extract", "12", "12"), ("reused", "12", "12")]
    assert all(float(r[4]) > 0 and float(r[6]) >= float(r[5]) > 0 for r in rows)
