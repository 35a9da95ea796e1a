"""`imr-extract export` of a large run store, as a user runs it: Parquet against JSON Lines and CSV.

The store holds the shared letters' records (tests/data/letters) repeated to ``--letters``
records, each copy under its own sha256, so nothing collapses. For each format it runs
``imr-extract export --format F -o OUT`` and prints:

  seconds      wall clock, from the command's start to its exit (start-up included)
  letters/s    records exported per second
  MiB out      the size of what was written (Parquet: both files)
  RSS MiB      the export process's peak resident memory (exact, from wait4)

and, for Parquet, its peak memory on half the store too: memory that does not grow with the
store means the tables are written in batches, never held whole.

    python bench/bench_parquet.py [--letters 20000] [--keep DIR]

Needs pyarrow (the ``parquet`` extra).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from imr_extract.extract import extract_path  # noqa: E402
from imr_extract.store import RecordRow, ResultKey, RunStore, code_version  # noqa: E402


def build_store(path: Path, letters: int) -> None:
    """A store of ``letters`` records: the shared letters' records, each copy its own sha256."""
    sources = sorted(p for p in (ROOT / "tests" / "data" / "letters").rglob("*") if p.is_file())
    records = [extract_path(p) for p in sources]
    key = ResultKey(backend="rules", schema_hash="bench", version=code_version())
    with RunStore(path) as store:
        run_id = store.start_run(key, argv=["bench"], inputs=[], config={})
        store.begin_group()
        for n in range(letters):
            base = records[n % len(records)]
            sha = hashlib.sha256(f"{n}:{base.source.sha256}".encode()).hexdigest()
            source = base.source.model_copy(update={"sha256": sha})
            record = base.model_copy(update={"source": source})
            store.write(key, run_id, f"letters/{n}-{base.letter}", sha, row=RecordRow.of(record))
            if n % 2000 == 1999:
                store.commit_group()
                store.begin_group()
        store.commit_group()
        store.finish_run(run_id, letters=letters, reused=0)


def export(store: Path, fmt: str, out: Path, *extra: str) -> tuple[float, float]:
    """Seconds and peak RSS (MiB) of one ``export``."""
    cli = Path(sys.executable).parent / "imr-extract"
    args = [str(cli), "export", "--store", str(store), "--format", fmt, "-o", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    assert proc.returncode == 0, err
    return seconds, usage.ru_maxrss / 1024


def size(path: Path) -> float:
    files = [path] if path.is_file() else list(path.iterdir())
    return sum(f.stat().st_size for f in files) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=20000)
    parser.add_argument("--keep", type=Path, help="Build the store and outputs here.")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-parquet-"))
    work.mkdir(parents=True, exist_ok=True)
    half, full = work / "half.sqlite", work / "full.sqlite"
    for path, n in ((half, args.letters // 2), (full, args.letters)):
        path.unlink(missing_ok=True)
        start = time.perf_counter()
        build_store(path, n)
        print(f"store of {n:,} records built in {time.perf_counter() - start:.1f} s: {path}")
    with RunStore(full, readonly=True) as store:
        items = store.db.execute("SELECT count(*) FROM items").fetchone()[0]
    print(f"{args.letters:,} letters, {items:,} items\n")
    head = ("format", "letters", "seconds", "letters/s", "MiB out", "RSS MiB")
    print("{:8} {:>8} {:>8} {:>10} {:>8} {:>8}".format(*head))
    rows = [
        ("jsonl", full, work / "out.jsonl"),
        ("csv", full, work / "out.csv"),
        ("parquet", half, work / "half-parquet"),
        ("parquet", full, work / "parquet"),
    ]
    for fmt, store, out in rows:
        n = args.letters if store == full else args.letters // 2
        seconds, rss = export(store, fmt, out)
        rate = n / seconds
        print(f"{fmt:8} {n:>8,} {seconds:>8.2f} {rate:>10,.0f} {size(out):>8.1f} {rss:>8.0f}")


if __name__ == "__main__":
    main()
