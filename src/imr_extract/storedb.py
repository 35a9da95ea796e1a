"""The run store's two databases: SQLite (embedded, the default) and PostgreSQL (a fleet).

Invariant: every difference between the two dialects lives here, grouped by concern -- how a
store is named and opened, the DDL's types, placeholders, how a write transaction begins, the
order rows were written in, the run lock, the claims on letters that keep several processes of
one run from extracting a letter twice, and which errors mean "the store is unusable".
``store.RunStore`` holds the logic once and speaks to either through a :class:`Database`, whose
``execute`` takes SQLite's ``?`` placeholders on both.

PostgreSQL is an optional extra (``pip install 'imr-extract[postgres]'``: psycopg 3); without it
a ``postgresql://`` store is refused with one line naming the extra.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: How a store given as a URL starts (anything else is a SQLite file's path).
URL_SCHEMES = ("postgresql://", "postgres://")

#: Advisory-lock namespaces (the first key of PostgreSQL's two-key locks).
_RUN_LOCKS, _LETTER_CLAIMS, _KEY_WRITES = 0x494D5231, 0x494D5232, 0x494D5233
#: Shared advisory locks: each process running a run (started, resumed or joined) holds one.
_RUN_HOLDS = 0x494D5234


def is_url(target: str | os.PathLike[str]) -> bool:
    """Whether ``--store`` names a PostgreSQL database rather than a SQLite file."""
    return isinstance(target, str) and target.startswith(URL_SCHEMES)


def shown_url(url: str) -> str:
    """The URL as errors and logs show it: no user, no password, no query (which may hold one)."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))


def _int32(text: str) -> int:
    """A signed 32-bit lock key for ``text`` (collisions only make a claim wait: never wrong)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big", signed=True)


class NoStoreError(Exception):
    """Opened to read, and there is no run store there."""


class MissingDriverError(Exception):
    """psycopg is not installed: the ``postgres`` extra."""


class Database:
    """One connection to a run store, in autocommit mode: transactions are begun explicitly.

    Attributes:
        where: the store as messages name it (a file's path; a URL without its password).
        errors: the driver's exception classes (every one means the store cannot be used).
        order: the column that orders rows as they were written.
    """

    where: str
    errors: tuple[type[BaseException], ...]
    order = "rowid"
    #: The letters this connection holds claims on.
    claimed: frozenset[str] | set[str] = frozenset()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        raise NotImplementedError

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        raise NotImplementedError

    @property
    def in_transaction(self) -> bool:
        raise NotImplementedError

    def has_table(self, name: str) -> bool:
        raise NotImplementedError

    def begin(self) -> None:
        """Begin a write transaction."""
        raise NotImplementedError

    def lock_key(self, key: str) -> None:
        """Hold ``key`` (a letters.key) until the transaction ends: writers of one key queue."""

    def create_tables(self, ddl: str) -> None:
        """Run ``ddl`` (SQLite's ``CREATE ... IF NOT EXISTS`` statements, each ending ``;`` at a
        line's end, commented as ``store.SCHEMA_SQL`` is) in this database's dialect, inside the
        caller's transaction."""
        for statement in ddl_statements(ddl):
            self.execute(statement)

    def claim_run(self, run_id: str) -> bool:
        """Hold ``run_id`` until ``close`` (or this process's death); False: another holds it."""
        raise NotImplementedError

    def claim_letter(self, key: str, *, wait: bool = False) -> bool:
        """Hold a letter (its content key) until ``release_letter``, ``close`` or this process's
        death; False: another process holds it (``wait``: block until it lets go)."""
        return True  # SQLite: one process runs a run (``claim_run``), nobody else to exclude

    def release_letter(self, key: str) -> None:
        pass

    def hold_run(self, run_id: str) -> None:
        """Count this connection among the processes running ``run_id`` until
        ``let_go_of_run`` or ``close`` (or this process's death)."""

    def let_go_of_run(self, run_id: str) -> bool:
        """Stop holding ``run_id``: True when no other process holds it now (this one was
        the last; always on SQLite, where one process runs a run)."""
        return True

    def close(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- SQLite


class SqliteDatabase(Database):
    """A SQLite file in WAL mode; the run lock is a byte of ``<store>.lock`` (``lockf``)."""

    errors = (sqlite3.Error,)

    def __init__(self, path: Path, *, readonly: bool, schema: str) -> None:
        self.path = path
        self.where = str(path)
        self._lock_fd: int | None = None
        if readonly:
            if not path.is_file():
                raise NoStoreError(self.where)
            self.con = self._connect_readonly()
            return
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        self.con = sqlite3.connect(path, isolation_level=None, timeout=60.0)
        try:
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=NORMAL")
            self.con.execute("PRAGMA foreign_keys=ON")
            self.con.executescript(schema)
        except BaseException:
            self.con.close()
            raise

    def _connect_readonly(self) -> sqlite3.Connection:
        """A connection that never writes. A WAL store needs its ``-shm`` file, which a
        read-only directory cannot hold: then the file is read as immutable (nobody can be
        writing a store on read-only media)."""
        uri = "file:" + urllib.parse.quote(os.fsencode(self.path.absolute()))
        db = sqlite3.connect(uri + "?mode=ro", uri=True, isolation_level=None, timeout=60.0)
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return db
        except sqlite3.OperationalError:
            db.close()
        db = sqlite3.connect(uri + "?immutable=1", uri=True, isolation_level=None)
        db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return db

    @staticmethod
    def cannot_write(path: Path) -> bool:
        """The store, or the directory its journal files go in, cannot be written."""
        where = path if path.exists() else path.parent
        return not os.access(where, os.W_OK) or not os.access(path.parent, os.W_OK)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.con.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self.con.executemany(sql, rows)

    @property
    def in_transaction(self) -> bool:
        return self.con.in_transaction

    def has_table(self, name: str) -> bool:
        found = self.con.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

    def begin(self) -> None:
        self.con.execute("BEGIN IMMEDIATE")  # the write lock now: no upgrade deadlock later

    def claim_run(self, run_id: str) -> bool:
        """An advisory lock on one byte of ``<store>.lock`` per run (``OSError``: no lock file)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: the pid check stands alone
            return True
        offset = int(hashlib.sha256(run_id.encode()).hexdigest()[:8], 16)
        fd = self._lock_fd
        if fd is None:
            lock_path = self.path.with_name(self.path.name + ".lock")
            fd = self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        self.con.close()
        if self._lock_fd is not None:  # closing it releases the run's lock
            os.close(self._lock_fd)
            self._lock_fd = None


# --------------------------------------------------------------------------- PostgreSQL


def ddl_statements(ddl: str) -> list[str]:
    """The statements of a DDL script: each ends with ``;`` at the end of a line (a comment may
    follow it); parts that are only comments are not statements."""
    found = (part.strip() for part in re.split(r";[ \t]*(?:--[^\n]*)?(?:\n|$)", ddl))
    return [part for part in found if re.sub(r"--[^\n]*", "", part).strip()]


def postgres_schema(sqlite_schema: str) -> str:
    """SQLite's DDL in PostgreSQL's types: 8-byte integers and floats, JSON for the columns
    holding JSON (``json`` keeps the text as written, so a record reads back byte for byte),
    and a ``seq`` identity column where SQLite orders by its ``rowid``."""
    ddl = re.sub(r"\bINTEGER\b", "BIGINT", sqlite_schema)
    ddl = re.sub(r"\bREAL\b", "DOUBLE PRECISION", ddl)
    ddl = re.sub(r"\bBLOB\b", "BYTEA", ddl)
    for column in ("argv", "inputs", "config", "record"):
        ddl = re.sub(rf"(\n\s+{column}\s+)TEXT\b", r"\1JSON", ddl)
    ddl = re.sub(r"(\n\s+(?:ca|imr)_(?:sources|sections|pages)\s+)TEXT\b", r"\1JSON", ddl)
    for table, last in (("runs", "cost_usd"), ("letters", "finished_at")):
        ddl = re.sub(
            rf"(CREATE TABLE IF NOT EXISTS {table} \((?:.|\n)*?\n\s+{last}\s+[^\n]*?)(\n\);)",
            r"\1,\n    seq BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE\2",
            ddl,
            count=1,
        )
    return ddl


class PostgresDatabase(Database):
    """A PostgreSQL database. The run lock and the letters' claims are session advisory locks:
    the server lets them go when the connection ends, however the process ended."""

    order = "seq"

    def __init__(self, url: str, *, readonly: bool, schema: str) -> None:
        try:
            import psycopg
            from psycopg.types.string import TextLoader
        except ImportError as exc:
            raise MissingDriverError(
                "a postgresql:// store needs psycopg: pip install 'imr-extract[postgres]'"
            ) from exc
        self.where = shown_url(url)
        self.errors = (psycopg.Error,)
        self._psycopg = psycopg
        self.claimed: set[str] = set()
        self.holding: set[str] = set()  # runs this connection holds (``hold_run``)
        self.con = psycopg.connect(url, autocommit=True, connect_timeout=30)
        try:
            for name in ("json", "jsonb"):  # JSON columns read back as the text written
                self.con.adapters.register_loader(name, TextLoader)
            if readonly:
                self.con.execute("SET default_transaction_read_only = on")
                if not self.has_table("meta"):
                    raise NoStoreError(self.where)
            else:
                with self.con.transaction():  # one creator at a time; the others find it made
                    self.con.execute("SELECT pg_advisory_xact_lock(%s, 0)", (_RUN_LOCKS,))
                    self.con.execute(postgres_schema(schema).encode())
        except BaseException:
            self.con.close()
            raise

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.con.execute(self._sql(sql), tuple(args) if args else None)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        with self.con.cursor() as cur:
            cur.executemany(self._sql(sql), list(rows))

    @property
    def in_transaction(self) -> bool:
        status = self.con.info.transaction_status
        return status != self._psycopg.pq.TransactionStatus.IDLE

    def has_table(self, name: str) -> bool:
        found = self.con.execute("SELECT to_regclass(%s)", (name,)).fetchone()
        return found is not None and found[0] is not None

    def begin(self) -> None:
        self.con.execute("BEGIN")

    def lock_key(self, key: str) -> None:
        self.con.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_KEY_WRITES, _int32(key)))

    def create_tables(self, ddl: str) -> None:
        for statement in ddl_statements(postgres_schema(ddl)):
            self.con.execute(statement.encode())  # no parameters: no placeholder is read

    def _try(self, space: int, name: str, wait: bool) -> bool:
        if wait:
            self.con.execute("SELECT pg_advisory_lock(%s, %s)", (space, _int32(name)))
            return True
        got = self.con.execute(
            "SELECT pg_try_advisory_lock(%s, %s)", (space, _int32(name))
        ).fetchone()
        return bool(got and got[0])

    def claim_run(self, run_id: str) -> bool:
        return self._try(_RUN_LOCKS, run_id, wait=False)

    def hold_run(self, run_id: str) -> None:
        if run_id not in self.holding:
            self.con.execute("SELECT pg_advisory_lock_shared(%s, %s)", (_RUN_HOLDS, _int32(run_id)))
            self.holding.add(run_id)

    def let_go_of_run(self, run_id: str) -> bool:
        lock = (_RUN_HOLDS, _int32(run_id))
        if run_id in self.holding:
            self.holding.discard(run_id)
            self.con.execute("SELECT pg_advisory_unlock_shared(%s, %s)", lock)
        got = self.con.execute("SELECT pg_try_advisory_lock(%s, %s)", lock).fetchone()
        if not (got and got[0]):
            return False  # another process holds it still
        self.con.execute("SELECT pg_advisory_unlock(%s, %s)", lock)
        return True

    def claim_letter(self, key: str, *, wait: bool = False) -> bool:
        if key in self.claimed:  # the same content twice in one batch: held already
            return True
        if not self._try(_LETTER_CLAIMS, key, wait):
            return False
        self.claimed.add(key)
        return True

    def release_letter(self, key: str) -> None:
        if key in self.claimed:
            self.claimed.discard(key)
            self.con.execute("SELECT pg_advisory_unlock(%s, %s)", (_LETTER_CLAIMS, _int32(key)))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.con.close()  # the server lets the session's locks go
