"""The store reference (docs/reference/store.md) names every table a store of the CLI and the
service holds, and every column of each; and ``ddl_statements`` splits a commented script."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from imr_extract.service import jobs
from imr_extract.service.engine import _make_letter_files
from imr_extract.service.keys import KeyStore
from imr_extract.store import RunStore
from imr_extract.storedb import ddl_statements

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reference" / "store.md"


def _documented() -> dict[str, set[str]]:
    tables: dict[str, set[str]] = {}
    table = None
    for line in PAGE.read_text(encoding="utf-8").splitlines():
        heading = re.match(r"^#{2,3} `(\w+)`$", line)
        if heading:
            table = heading.group(1)
            tables[table] = set()
            continue
        column = re.match(r"^\| `(\w+)` \|", line)
        if column and table is not None:
            tables[table].add(column.group(1))
    return tables


def test_every_table_and_column_of_a_serving_store_is_in_the_reference(tmp_path: Path):
    path = tmp_path / "s.sqlite"
    with RunStore(path) as store:
        jobs.make_tables(store)
        _make_letter_files(store)
    KeyStore(path).create("docs")
    con = sqlite3.connect(path)
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    held = {n: {c[1] for c in con.execute(f"PRAGMA table_info({n})")} for n in names}
    documented = _documented()
    assert {"jobs", "job_letters", "api_keys", "letter_files", "letters", "runs"} <= set(held)
    assert held == {n: documented.get(n) for n in held}


def test_ddl_statements_splits_at_a_semicolon_ending_a_line_and_drops_comment_only_parts():
    ddl = """
    -- a comment; not a statement
    CREATE TABLE IF NOT EXISTS a (x TEXT);  -- trailing
    CREATE INDEX IF NOT EXISTS a_x ON a (x);
    -- the end
    """
    assert ddl_statements(ddl) == [
        "-- a comment; not a statement\n    CREATE TABLE IF NOT EXISTS a (x TEXT)",
        "CREATE INDEX IF NOT EXISTS a_x ON a (x)",
    ]
