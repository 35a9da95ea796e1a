"""bench/bench_service.py still runs and prints its table (its figures are measured, not tested):
a row per store, service processes and mode, every request answered; PostgreSQL's rows, or the
note saying why there are none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pg import _bindir

BENCH = Path(__file__).parents[1] / "bench" / "bench_service.py"


def test_bench_service_prints_a_row_per_configuration(tmp_path: Path):
    done = subprocess.run(
        [sys.executable, str(BENCH), "--stores", "sqlite", "postgresql", "--workers", "1",
         "--requests", "12", "--concurrency", "4", "--letter-workers", "1", "--seconds", "60"],
        capture_output=True, text=True, cwd=tmp_path, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines() if line.split()[1:2] == ["1"]]
    stores = ["sqlite", "postgresql"]
    try:
        import psycopg  # noqa: F401
    except ImportError:
        stores = ["sqlite"]
    if _bindir() is None or stores == ["sqlite"]:
        stores = ["sqlite"]
        assert "postgresql: skipped" in done.stdout
    assert [tuple(r[:5]) for r in rows] == [
        (store, "1", mode, "12", "12") for store in stores for mode in ("extract", "reused")
    ]
    assert all(float(r[5]) > 0 and float(r[7]) >= float(r[6]) > 0 for r in rows)
