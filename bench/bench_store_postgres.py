"""The run store on SQLite and on PostgreSQL: what a throwaway server costs, and writes/s.

Prints:

  server start     seconds for ``initdb`` + ``pg_ctl start`` of the tests' throwaway server
                   (tests/pg.py; what CI pays once per test session)
  (the server runs as the tests run it: fsync off, a Unix socket; a production server's
  commits cost more)

  write letters/s  ``RunStore.write`` of precomputed records (the bundled letters' rows, each
                   under its own key) in the runner's groups of 64, for each store: the store's
                   own cost, no extraction
  plan letters/s   ``RunStore.lookup`` (+ ``claim_letter``/``release_letter`` on PostgreSQL) per
                   letter, as a re-run that finds everything stored does

    python bench/bench_store_postgres.py [--letters 2000]

Needs PostgreSQL's server binaries (apt-get install postgresql) and psycopg
(pip install -e '.[postgres]').
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from imr_extract.extract import extract_document  # noqa: E402
from imr_extract.ingest import read_path  # noqa: E402
from imr_extract.schema import schema_hash  # noqa: E402
from imr_extract.store import RecordRow, ResultKey, RunStore, code_version  # noqa: E402
from pg import Server, _bindir  # noqa: E402

KEY = ResultKey("rules", schema_hash=schema_hash(), version=code_version())


def rows() -> list[RecordRow]:
    return [
        RecordRow.of(extract_document(read_path(p)))
        for p in sorted((ROOT / "tests" / "data" / "letters" / "pdf").glob("*.pdf"))
    ]


def measure(target: str, made: list[RecordRow], n: int) -> tuple[float, float]:
    with RunStore(target) as store:
        run_id = store.start_run(KEY, argv=[], inputs=[], config={})
        t0 = time.perf_counter()
        shas = []
        for i in range(n):
            row = made[i % len(made)]
            sha = f"{i:064x}"
            shas.append(sha)
            if i % 64 == 0:
                store.begin_group()
            row = dataclasses.replace(row, sha256=sha)
            store.write(KEY, run_id, f"letter-{i}.pdf", sha, row=row)
            if i % 64 == 63:
                store.commit_group()
        store.commit_group()
        write = n / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i, sha in enumerate(shas):
            key = KEY.key(sha, f"letter-{i}.pdf")
            assert store.lookup(key) is not None
            if store.shared and store.claim_letter(key):
                store.release_letter(key)
        plan = n / (time.perf_counter() - t0)
    return write, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--letters", type=int, default=2000)
    args = parser.parse_args()
    bindir = _bindir()
    if bindir is None:
        sys.exit("no PostgreSQL server binaries: apt-get install postgresql")
    made = rows()
    root = Path(tempfile.mkdtemp(prefix="imr-pg-bench-"))
    root.chmod(0o755)
    server = Server(bindir, root)
    try:
        server.start()
        print(f"server start     {server.seconds:6.2f} s  (initdb + pg_ctl start, {bindir})")
        for name, target in (
            ("sqlite", str(root / "s.sqlite")),
            ("postgresql", server.database()),
        ):
            write, plan = measure(target, made, args.letters)
            print(f"{name:<11} write {write:8,.0f} letters/s   plan {plan:8,.0f} letters/s")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
