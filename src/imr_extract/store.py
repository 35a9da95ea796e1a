"""The run store: a database of runs, letter results and items, on SQLite or PostgreSQL.

One file (``imr-extract.sqlite`` by default), stdlib ``sqlite3`` in WAL mode, written only by the
process that runs the batch (workers compute; the parent writes); or, for a fleet, a PostgreSQL
database (``--store postgresql://...``) shared by several processes, with the same tables (the
dialects differ only in ``storedb``). Tables:

``runs``
    One row per ``extract`` invocation: id, start/finish, status, host, argv and the settings
    that matter (never a key or a URL's password), backend/model/prompt/schema, counts.
``letters``
    One row per *result*, keyed by :class:`ResultKey`: the letter's content sha256, backend,
    prompt ref, model, schema hash and the extractor code's fingerprint. The row holds the
    status (``ok``/``error``), the error code and cause, the whole record as JSON (provenance,
    verification and alternatives stay inside it: ``json_each(record, '$.provenance')``
    reads them), and denormalised columns for queries (case number, decision date, layout,
    coverage, usage, model error).
``served``
    One row per result a run served from the store instead of extracting it again (its
    ``letters`` row keeps the run that made it): ``export --run`` writes both.
``items``
    One row per item of an ``ok`` letter: request, decision, the partial-authorisation parts,
    each guideline line's flags and its sources, sections and pages as JSON arrays, the rationale,
    and the letter's case number and decision date again, so most questions are one ``SELECT``.

Keys are content-derived text (``letters.key``, ``items.letter_key``) and run ids are unique
across machines, so stores built on several machines merge with plain ``INSERT OR IGNORE``
(see README, "Batch runs").

A letter's rows are written in one transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): a process
killed at any point leaves either all of a letter's rows or none, and never loses a committed
one (WAL with ``synchronous=NORMAL`` survives a killed process; a power cut may lose the last
few commits, never corrupt the file).

Exactly once: a run is held by one process (``claim_run``) on SQLite; on PostgreSQL several
processes may run one run, and a letter is extracted only by the process that holds its claim
(``claim_letter``, released once its result is committed), so none is extracted twice and none
is lost when a process dies (its claims die with its connection).
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
import hashlib
import json
import os
import re
import secrets
import socket
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .errors import ImrExtractError
from .names import escape_name, has_surrogates, unescape_name
from .redact import redact, redact_json
from .schema import LetterRecord
from .storedb import (
    Database,
    MissingDriverError,
    NoStoreError,
    PostgresDatabase,
    SqliteDatabase,
    is_url,
    shown_url,
)

DEFAULT_STORE = "imr-extract.sqlite"
STORE_VERSION = "1"

#: Modules that cannot change what a record holds: editing them keeps stored results valid.
_NOT_RECORD_CODE = frozenset(
    {
        "cli.py", "store.py", "storedb.py", "runner.py", "runs.py", "output.py", "review.py",
        "reporting.py",
        "compare.py", "evaluate.py", "fields.py", "parquet.py",
    }
)  # fmt: skip
#: Packages whose modules cannot change what a record holds (the service answers records).
_NOT_RECORD_PACKAGES = ("service/",)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id                TEXT PRIMARY KEY,       -- 20261123T034501Z-1a2b3c: unique across machines
    started_at        TEXT NOT NULL,          -- ISO 8601, UTC
    finished_at       TEXT,
    status            TEXT NOT NULL,          -- running | finished | interrupted
    host              TEXT,
    pid               INTEGER,
    cwd               TEXT,
    argv              TEXT NOT NULL,          -- JSON array, secrets removed
    inputs            TEXT NOT NULL,          -- JSON array of the inputs as given
    version           TEXT NOT NULL,          -- imr-extract version + code fingerprint
    backend           TEXT NOT NULL,
    model             TEXT NOT NULL,          -- '' for the rules
    prompt            TEXT NOT NULL,          -- prompt name@hash, '' for the rules
    schema_hash       TEXT NOT NULL,
    config            TEXT NOT NULL,          -- JSON: workers, concurrency, limits, LLM settings
    resumes           INTEGER NOT NULL DEFAULT 0,
    letters           INTEGER NOT NULL DEFAULT 0,  -- inputs seen (all invocations)
    ok                INTEGER NOT NULL DEFAULT 0,  -- letters rows written by this run, by status
    errors            INTEGER NOT NULL DEFAULT 0,
    reused            INTEGER NOT NULL DEFAULT 0,  -- inputs already in the store, not redone
    items             INTEGER NOT NULL DEFAULT 0,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL
);
CREATE TABLE IF NOT EXISTS letters (
    key               TEXT PRIMARY KEY,       -- hash of the six columns below (and, for an
                                              -- error, the path: every failed file is named)
    sha256            TEXT,                   -- of the file's bytes; NULL if it could not be read
    backend           TEXT NOT NULL,
    prompt            TEXT NOT NULL,
    model             TEXT NOT NULL,
    schema_hash       TEXT NOT NULL,
    version           TEXT NOT NULL,
    run_id            TEXT NOT NULL REFERENCES runs (id),
    path              TEXT NOT NULL,
    letter            TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('ok', 'error')),
    error_code        TEXT,
    cause             TEXT,
    record            TEXT,                   -- the LetterRecord as JSON (ok rows)
    case_number       TEXT,
    decision_date     TEXT,
    layout            TEXT,
    coverage          REAL,
    novel_layout      INTEGER,
    item_count        INTEGER,
    warnings          INTEGER,
    routed            TEXT,
    model_error       TEXT,
    requests          INTEGER NOT NULL DEFAULT 0,
    prompt_tokens     INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    total_tokens      INTEGER NOT NULL DEFAULT 0,
    cost_usd          REAL,
    cached            INTEGER,
    finished_at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS letters_run ON letters (run_id);
CREATE INDEX IF NOT EXISTS letters_sha256 ON letters (sha256);
CREATE INDEX IF NOT EXISTS letters_case ON letters (case_number);
CREATE TABLE IF NOT EXISTS items (
    letter_key        TEXT NOT NULL REFERENCES letters (key) ON DELETE CASCADE,
    idx               INTEGER NOT NULL,
    letter            TEXT NOT NULL,
    case_number       TEXT,
    decision_date     TEXT,
    request           TEXT NOT NULL,
    decision          TEXT NOT NULL,          -- upheld | overturned
    original_request  TEXT,
    authorized        TEXT,
    ca_cited          INTEGER NOT NULL,       -- claims administrator's guideline line
    ca_outside_mtus   INTEGER NOT NULL,
    ca_sources        TEXT NOT NULL,          -- JSON arrays
    ca_sections       TEXT NOT NULL,
    ca_pages          TEXT NOT NULL,
    imr_cited         INTEGER NOT NULL,       -- the IMR reviewer's guideline line
    imr_outside_mtus  INTEGER NOT NULL,
    imr_sources       TEXT NOT NULL,
    imr_sections      TEXT NOT NULL,
    imr_pages         TEXT NOT NULL,
    rationale         TEXT,
    PRIMARY KEY (letter_key, idx)
);
CREATE INDEX IF NOT EXISTS items_decision ON items (decision, decision_date);
CREATE TABLE IF NOT EXISTS served (
    run_id            TEXT NOT NULL,          -- a run that served this result from the store
    letter_key        TEXT NOT NULL,          -- letters.key (made by an earlier run)
    PRIMARY KEY (run_id, letter_key)
);
"""


class StoreError(ImrExtractError):
    """The store does not hold what was asked for (no such run, another version's store)."""

    code = "store"


class StoreUnusableError(StoreError):
    """The store cannot be opened, read or written: corrupt, not a store, read-only, disk full.

    Raised for every database error of a store method, naming the store and the cause.
    """

    code = "store-unusable"


class RunBusyError(StoreError):
    """The run is held by another live process (``claim_run``)."""

    code = "busy"


def _is_db_error(exc: BaseException) -> bool:
    """A PostgreSQL driver error (psycopg may not be installed: then nothing is one)."""
    return any(c.__module__.startswith("psycopg") for c in type(exc).__mro__)


def _cause(exc: BaseException, doing: str) -> str:
    """What an operator reads for a SQLite or OS error met while ``doing`` something."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    low = text.lower()
    if "disk is full" in low or "no space" in low:
        why = "the disk is full"
    elif "readonly" in low or "read-only" in low or "permission denied" in low:
        why = "it is read-only"
    elif "malformed" in low or "not a database" in low or "corrupt" in low:
        why = "it is corrupt or not a run store"
    else:
        return f"cannot {doing} the run store ({text})"
    return f"cannot {doing} the run store: {why} ({text})"


_F = TypeVar("_F", bound=Callable[..., Any])


def _guarded(doing: str) -> Callable[[_F], _F]:
    """Turn a store method's database error into a ``StoreUnusableError`` naming the store."""

    def wrap(method: _F) -> _F:
        @functools.wraps(method)
        def guarded(self: RunStore, *args: Any, **kw: Any) -> Any:
            try:
                return method(self, *args, **kw)
            except self.db.errors as exc:
                raise StoreUnusableError(self.where, _cause(exc, doing)) from exc

        return guarded  # type: ignore[return-value]

    return wrap


@functools.cache
def code_version() -> str:
    """The package version plus a fingerprint of the code that makes records.

    Part of every result key: a stored result is reused only by the same extractor code, so a
    change to a rule or a layout re-extracts instead of serving stale records.
    """
    from . import __version__

    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel in _NOT_RECORD_CODE or rel.startswith(_NOT_RECORD_PACKAGES):
            continue
        digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{__version__}+{digest.hexdigest()[:10]}"


@dataclass(frozen=True)
class ResultKey:
    """What a result depends on besides the letter's bytes."""

    backend: str
    prompt: str = ""
    model: str = ""
    schema_hash: str = ""
    version: str = ""

    def _hash(self, *ident: str) -> str:
        parts = [*ident, self.backend, self.prompt, self.model, self.schema_hash, self.version]
        return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]

    def key(self, sha256: str | None, path: str) -> str:
        """The letters.key of a record: by content (the same bytes anywhere are one letter)."""
        return self._hash(sha256) if sha256 is not None else self.error_key(None, path)

    def error_key(self, sha256: str | None, path: str) -> str:
        """The letters.key of a failure: by content *and* path, so every failed file is named
        (failures are never reused; they are tried again on every run)."""
        return self._hash("error", sha256 or "-", path)


@dataclass(frozen=True)
class StoredLetter:
    """A letters row, as the runner needs it."""

    key: str
    path: str
    status: str
    record: str | None
    model_error: str | None
    error_code: str | None
    cause: str | None
    run_id: str | None = None
    finished_at: str | None = None


@dataclass(frozen=True)
class FailedLetter:
    """An ``error`` letters row: a file that gave no record, and why (``export``'s tables)."""

    path: str  # as the store writes it (a name that is not UTF-8 with \\xNN escapes)
    letter: str
    sha256: str | None
    backend: str
    error_code: str | None
    cause: str | None
    run_id: str


@dataclass(frozen=True)
class RunRow:
    id: str
    status: str
    backend: str
    model: str
    prompt: str
    schema_hash: str
    version: str
    inputs: list[str]
    cwd: str | None
    host: str | None = None
    pid: int | None = None

    def still_running(self) -> bool:
        """Marked running and its process is alive on this machine (not killed or crashed)."""
        if self.status != "running" or self.pid is None or self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            return True
        return self.pid != os.getpid()


def finished(row: StoredLetter | None, retry_model_errors: bool = False) -> bool:
    """Whether a stored result stands (a re-run skips it): ok, and the model did not fail
    (or model failures are not to be retried). Error rows are always tried again."""
    if row is None or row.status != "ok":
        return False
    return not (retry_model_errors and row.model_error is not None)


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


_USERINFO = re.compile(r"(://)[^/@\s]+@")
#: A password given as a URL's query parameter (``postgresql://host/db?password=...``).
_PASSWORD_PARAM = re.compile(r"([?&]password=)[^&\s]*", re.IGNORECASE)


def scrub(text: str) -> str:
    """Drop the user:password part of any URL, and a password in its query (the only places a
    flag could carry a secret)."""
    return _PASSWORD_PARAM.sub(r"\1", _USERINFO.sub(r"\1", text))


#: One encoder for every row: ``json.dumps`` with options builds a new encoder on each call.
_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_json_ascii = json.JSONEncoder(separators=(",", ":")).encode


def _json_names(value: Any) -> str:
    """JSON of ``value`` (argv, inputs), exact for names that are not UTF-8: their surrogate
    escapes are written as JSON ``\\udcNN`` escapes, which ``json.loads`` reads back as is."""
    text = _json(value)
    return _json_ascii(value) if has_surrogates(text) else text


def _guideline_columns(g: Any) -> tuple[Any, ...]:
    return (
        int(g.cited),
        int(g.outside_mtus),
        _json([c.source for c in g.citations]),
        _json([s for c in g.citations for s in c.sections]),
        _json([p for c in g.citations for p in c.pages]),
    )


@dataclass(frozen=True, slots=True)
class RecordRow:
    """A record as the store's columns and the batch summary's counts.

    Made where the record is made (a worker process, for the rules), so that the process that
    owns the store and the output only runs SQL and writes text: parsing the record back there
    cost that process as much as a worker spent extracting it.
    """

    letter: str
    record_json: str
    sha256: str  # of the bytes the record was made from
    case_number: str | None
    decision_date: str | None
    layout: str
    coverage: float | None
    novel_layout: bool | None
    warnings: int
    routed: str | None
    model_error: str | None
    usage: tuple[int, int, int, int]  # requests, prompt, completion, total tokens
    attempts: int
    cost_usd: float | None
    cached: bool
    statuses: tuple[int, int, int]  # values verified, unverified, contradicted
    #: items-table columns after (letter_key, idx)
    items: tuple[tuple[Any, ...], ...]

    @classmethod
    def of(cls, record: LetterRecord, record_json: str | None = None) -> RecordRow:
        x, v = record.extractor, record.verification
        decided = record.dates.decision.isoformat() if record.dates.decision else None
        u = x.usage
        letter = escape_name(record.letter)  # a column and CSV text: no surrogates
        return cls(
            letter=letter,
            record_json=record_json if record_json is not None else record.model_dump_json(),
            sha256=record.source.sha256,
            case_number=record.case_number,
            decision_date=decided,
            layout=record.layout,
            coverage=v.coverage if v is not None else None,
            novel_layout=v.novel_layout if v is not None else None,
            warnings=len(record.warnings),
            routed=x.routed,
            model_error=x.model_error,
            usage=(u.requests, u.prompt_tokens, u.completion_tokens, u.total_tokens),
            attempts=x.attempts,
            cost_usd=x.cost_usd,
            cached=x.cached,
            statuses=(v.verified, v.unverified, v.contradicted) if v is not None else (0, 0, 0),
            items=tuple(
                (
                    letter,
                    record.case_number,
                    decided,
                    item.request,
                    item.decision.value,
                    item.original_request,
                    item.authorized,
                    *_guideline_columns(item.claims_administrator_guideline),
                    *_guideline_columns(item.imr_guideline),
                    item.rationale,
                )
                for item in record.items
            ),
        )

    @property
    def decisions(self) -> list[str]:
        return [row[4] for row in self.items]


class RunStore:
    """A run store: a SQLite file, or a PostgreSQL database when given a ``postgresql://`` URL.
    Not thread-safe: use it from the thread that opened it."""

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        """Open (or create) the store at ``path`` (a file, or a ``postgresql://`` URL);
        ``readonly``: open an existing store only to read it, never writing to it (``export``:
        a store on read-only media or another user's).

        Raises:
            StoreUnusableError: it cannot be opened, or is not a run store (or, for a URL,
                psycopg is not installed: the ``postgres`` extra).
            StoreError: it is another version's store.
        """
        self.db: Database
        if is_url(path):
            self.path: Path | None = None
            self.where = shown_url(str(path))
        else:
            self.path = Path(path)
            self.where = str(self.path)
        try:
            if self.path is None:
                self.db = PostgresDatabase(str(path), readonly=readonly, schema=SCHEMA_SQL)
            else:
                self.db = SqliteDatabase(self.path, readonly=readonly, schema=SCHEMA_SQL)
            found = self.db.execute("SELECT value FROM meta WHERE key = 'store_version'").fetchone()
            if found is None and not readonly:
                self.db.execute(
                    "INSERT INTO meta VALUES ('store_version', ?) ON CONFLICT DO NOTHING",
                    (STORE_VERSION,),
                )
            elif found is None or found[0] != STORE_VERSION:
                version = "no" if found is None else found[0]
                raise StoreError(
                    self.where,
                    f"store version {version}, this imr-extract writes "
                    f"{STORE_VERSION}: use another --store",
                )
        except MissingDriverError as exc:
            raise StoreUnusableError(self.where, str(exc)) from None
        except NoStoreError:
            raise StoreUnusableError(self.where, "no run store here (see --store)") from None
        except Exception as exc:
            if hasattr(self, "db"):
                self.db.close()
            if isinstance(exc, StoreError):
                raise
            if not isinstance(exc, sqlite3.Error | OSError) and not _is_db_error(exc):
                raise
            if not readonly and self.path is not None and SqliteDatabase.cannot_write(self.path):
                exc = sqlite3.OperationalError(f"read-only: {exc}")
            raise StoreUnusableError(self.where, _cause(exc, "open")) from exc
        #: Letters claimed by this process, written in the open transaction: released when it
        #: is committed (``claim_letter``).
        self._written: list[str] = []

    @property
    def shared(self) -> bool:
        """Several processes may run one run on this store (PostgreSQL): letters are claimed."""
        return isinstance(self.db, PostgresDatabase)

    @_guarded("lock")
    def claim_run(self, run_id: str) -> None:
        """Hold ``run_id`` for this process until the store is closed (or the process dies,
        even by SIGKILL): on SQLite an advisory lock on one byte of ``<store>.lock`` per run,
        on PostgreSQL a session advisory lock.

        Raises:
            RunBusyError: another process holds it (the same run resumed twice at once).
        """
        try:
            held = self.db.claim_run(run_id)
        except OSError as exc:
            lock = self.where + ".lock"
            raise StoreUnusableError(lock, _cause(exc, "lock")) from exc
        if not held:
            raise RunBusyError(
                self.where,
                f"run {run_id} is running in another process now: wait for it to end, or stop it",
            )

    @_guarded("lock")
    def claim_letter(self, key: str, *, wait: bool = False) -> bool:
        """Hold the letter whose content key is ``key`` while this process extracts it: True
        if held (always, on SQLite), False if another process holds it now (``wait``: wait for
        it to let go). A claim is let go when the letter's result is committed (``write``), or
        when the store is closed or the process dies."""
        return self.db.claim_letter(key, wait=wait)

    @_guarded("lock")
    def release_letter(self, key: str) -> None:
        """Let go of a claim without writing (the letter turned out to be stored already)."""
        self.db.release_letter(key)

    @_guarded("lock")
    def release_letters(self) -> None:
        """Let go of every claim this process holds on letters it has not written (a run
        stopped early, or refused a letter)."""
        for key in list(self.db.claimed):
            if key not in self._written:
                self.db.release_letter(key)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """One write transaction: everything in the block is committed together, or nothing.

        Inside a group (``begin_group``) it is a savepoint of the group's transaction: the block
        is still all or nothing, and it is committed with the group.
        """
        if self.db.in_transaction:
            self.db.execute("SAVEPOINT one")
            try:
                yield self.db
            except BaseException:
                self._undo("ROLLBACK TO one", "RELEASE one")
                raise
            self.db.execute("RELEASE one")
            return
        self.db.begin()
        try:
            yield self.db
        except BaseException:
            self._undo("ROLLBACK")
            raise
        self._commit()

    def _commit(self) -> None:
        self.db.execute("COMMIT")
        written, self._written = self._written, []
        for key in written:  # committed: another process finds it stored now
            self.db.release_letter(key)

    def _undo(self, *statements: str) -> None:
        """Roll back after a failure, keeping that failure the one reported: on a full disk or
        an I/O error SQLite may have rolled the whole transaction back already."""
        if not self.db.in_transaction:
            return
        with contextlib.suppress(*self.db.errors):
            for statement in statements:
                self.db.execute(statement)

    @_guarded("write")
    def begin_group(self) -> None:
        """Open a transaction that ``commit_group`` commits: the ``write`` calls in between
        share one commit.

        A commit is three quarters of the cost of writing a letter (0.18 of 0.25 ms, most of it
        the write-ahead log's page writes), so the runner commits the rules' letters in groups;
        it yields a letter only once its group is committed, so a killed process still loses no
        letter it reported.
        """
        if not self.db.in_transaction:
            self.db.begin()

    @_guarded("write")
    def commit_group(self) -> None:
        if self.db.in_transaction:
            self._commit()

    # ------------------------------------------------------------------ runs

    @_guarded("write")
    def start_run(
        self,
        key: ResultKey,
        *,
        argv: list[str],
        inputs: list[str],
        config: dict[str, Any],
        run_id: str | None = None,
    ) -> str:
        """Record a new run (``run_id``: one made by ``new_run_id``, perhaps claimed already),
        held by this process until ``finish_run``."""
        run_id = run_id or new_run_id()
        self.db.hold_run(run_id)
        with self.transaction() as db:
            db.execute(
                "INSERT INTO runs (id, started_at, status, host, pid, cwd, argv, inputs, version,"
                " backend, model, prompt, schema_hash, config)"
                " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id,
                    now_iso(),
                    socket.gethostname(),
                    os.getpid(),
                    escape_name(os.getcwd()),
                    _json_names([redact(scrub(a)) for a in argv]),  # a key in a URL, a flag
                    _json_names([scrub(a) for a in inputs]),
                    key.version,
                    key.backend,
                    key.model,
                    key.prompt,
                    key.schema_hash,
                    scrub(_json(redact_json(config))),
                ),
            )
        return run_id

    @_guarded("read")
    def run(self, ref: str) -> RunRow:
        """The run named ``ref`` (an id, or ``last`` for the latest started)."""
        args: tuple[str, ...]
        if ref == "last":
            query, args = (
                (f"SELECT * FROM runs ORDER BY started_at DESC, {self.db.order} DESC LIMIT 1"),
                (),
            )
        else:
            query, args = "SELECT * FROM runs WHERE id = ?", (ref,)
        cur = self.db.execute(query, args)
        row = cur.fetchone()
        if row is None:
            what = "no runs" if ref == "last" else f"no run {ref!r}"
            raise StoreError(self.where, f"{what} in this store")
        r = dict(zip([c[0] for c in cur.description], row, strict=True))
        return RunRow(
            id=r["id"],
            status=r["status"],
            backend=r["backend"],
            model=r["model"],
            prompt=r["prompt"],
            schema_hash=r["schema_hash"],
            version=r["version"],
            inputs=json.loads(r["inputs"]),
            cwd=unescape_name(r["cwd"]) if r["cwd"] is not None else None,
            host=r["host"],
            pid=r["pid"],
        )

    @_guarded("write")
    def resume_run(self, run_id: str) -> None:
        """Mark ``run_id`` running again (resumed), held by this process until ``finish_run``."""
        self.db.hold_run(run_id)
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'running', resumes = resumes + 1, finished_at = NULL,"
                " pid = ?, host = ? WHERE id = ?",
                (os.getpid(), socket.gethostname(), run_id),
            )

    @_guarded("write")
    def join_run(self, run_id: str) -> None:
        """Run ``run_id`` with the processes already at it (a shared store: each letter is
        claimed), held by this process until ``finish_run``: the run is marked running."""
        self.db.hold_run(run_id)
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status = 'running', finished_at = NULL WHERE id = ?", (run_id,)
            )

    @_guarded("write")
    def finish_run(
        self, run_id: str, *, letters: int, reused: int, status: str = "finished"
    ) -> bool:
        """This process is done with ``run_id``: its ``letters`` and ``reused`` are added to
        the run's, and the counts of rows are recomputed from the rows the run wrote.

        On a store shared by several processes of one run (PostgreSQL: started, resumed or
        joined by each), the run takes ``status`` (and its finish time) only from the last
        process to let go of it; the others leave it ``running``. Every process of a shared run
        goes through all of its inputs, so the last one to finish has seen every letter done.

        Returns:
            Whether this process was the last (the run is closed with ``status``).
        """
        last = self.db.let_go_of_run(run_id)
        closing = "status = ?, finished_at = ?," if last else ""
        closed = (status, now_iso()) if last else ()
        with self.transaction() as db:
            db.execute(
                f"""
                UPDATE runs SET
                    {closing}
                    letters = letters + ?, reused = reused + ?,
                    ok = (SELECT count(*) FROM letters WHERE run_id = runs.id AND status = 'ok'),
                    errors = (SELECT count(*) FROM letters
                              WHERE run_id = runs.id AND status = 'error'),
                    items = (SELECT coalesce(sum(item_count), 0) FROM letters
                             WHERE run_id = runs.id),
                    requests = (SELECT coalesce(sum(requests), 0) FROM letters
                                WHERE run_id = runs.id),
                    prompt_tokens = (SELECT coalesce(sum(prompt_tokens), 0) FROM letters
                                     WHERE run_id = runs.id),
                    completion_tokens = (SELECT coalesce(sum(completion_tokens), 0) FROM letters
                                         WHERE run_id = runs.id),
                    cost_usd = (SELECT sum(cost_usd) FROM letters WHERE run_id = runs.id)
                WHERE id = ?
                """,
                (*closed, letters, reused, run_id),
            )
        return last

    # ------------------------------------------------------------------ letters

    @_guarded("read")
    def lookup(self, key: str) -> StoredLetter | None:
        row = self.db.execute(
            "SELECT key, path, status, record, model_error, error_code, cause, run_id,"
            " finished_at FROM letters WHERE key = ?",
            (key,),
        ).fetchone()
        return StoredLetter(*row) if row is not None else None

    @_guarded("write")
    def write(
        self,
        key: ResultKey,
        run_id: str,
        path: str,
        sha256: str | None,
        *,
        row: RecordRow | None = None,
        error: ImrExtractError | None = None,
        retry_model_errors: bool = False,
    ) -> bool:
        """Write one letter's result, its record's ``row`` or its ``error``, in one transaction.

        A record replaces an earlier failure under the same key and clears the failures of the
        same content under other paths. Returns False, writing nothing, when a record that
        stands is already stored for this content (the same bytes met twice in a batch, one of
        them perhaps failing in the model while the other succeeded).
        """
        path = escape_name(path)  # the path column (and an error's key) as written text
        if error is not None and has_surrogates(error.cause):
            error = copy.copy(error)
            error.cause = escape_name(error.cause)
        content_key = key.key(sha256, path)
        with self.transaction() as db:
            db.lock_key(content_key)  # writers of one letter queue (PostgreSQL)
            if content_key in self.db.claimed:
                self._written.append(content_key)
            existing = self.lookup(content_key) if sha256 is not None else None
            if row is None:
                if existing is not None and existing.status == "ok":
                    return False
                letter_key = key.error_key(sha256, path)
            else:
                if finished(existing, retry_model_errors):
                    return False
                letter_key = content_key
                if sha256 is not None:  # this content's failures are stale now
                    db.execute(
                        "DELETE FROM letters WHERE status = 'error' AND sha256 = ? AND backend = ?"
                        " AND prompt = ? AND model = ? AND schema_hash = ? AND version = ?",
                        (sha256, key.backend, key.prompt, key.model, key.schema_hash, key.version),
                    )
            db.execute("DELETE FROM letters WHERE key = ?", (letter_key,))
            # also without the cascade (a store edited by hand with foreign keys off)
            db.execute("DELETE FROM items WHERE letter_key = ?", (letter_key,))
            self._insert_letter(db, key, letter_key, run_id, path, sha256, row, error)
            if row is not None:
                self._insert_items(db, letter_key, row)
        return True

    def _insert_letter(
        self,
        db: Database,
        key: ResultKey,
        letter_key: str,
        run_id: str,
        path: str,
        sha256: str | None,
        row: RecordRow | None,
        error: ImrExtractError | None,
    ) -> None:
        common = (
            letter_key, sha256, key.backend, key.prompt, key.model, key.schema_hash,
            key.version, run_id, path,
        )  # fmt: skip
        if row is None:
            assert error is not None, "a result is a record or an error"
            db.execute(
                "INSERT INTO letters (key, sha256, backend, prompt, model, schema_hash, version,"
                " run_id, path, letter, status, error_code, cause, finished_at"
                ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'error', ?, ?, ?)",
                (*common, Path(path).name, error.code, redact(error.cause), now_iso()),
            )
            return
        db.execute(
            "INSERT INTO letters (key, sha256, backend, prompt, model, schema_hash, version,"
            " run_id, path, letter, status, record, case_number, decision_date, layout,"
            " coverage, novel_layout, item_count, warnings, routed, model_error, requests,"
            " prompt_tokens, completion_tokens, total_tokens, cost_usd, cached, finished_at"
            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'ok', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?,"
            " ?, ?, ?, ?, ?)",
            (
                *common,
                row.letter,
                row.record_json,
                row.case_number,
                row.decision_date,
                row.layout,
                row.coverage,
                None if row.novel_layout is None else int(row.novel_layout),
                len(row.items),
                row.warnings,
                row.routed,
                redact(row.model_error) if row.model_error else None,
                *row.usage,
                row.cost_usd,
                int(row.cached),
                now_iso(),
            ),
        )

    def _insert_items(self, db: Database, letter_key: str, row: RecordRow) -> None:
        db.executemany(
            "INSERT INTO items VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(letter_key, i, *item) for i, item in enumerate(row.items)],
        )

    @_guarded("write")
    def mark_served(self, run_id: str, keys: list[str]) -> None:
        """Record that ``run_id`` served these results (``letters.key``) from the store."""
        with self.transaction() as db:
            db.executemany(
                "INSERT INTO served (run_id, letter_key) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(run_id, key) for key in keys],
            )

    # ------------------------------------------------------------------ reading

    def record_texts(self, run_id: str | None = None) -> Iterator[str]:
        """The stored records (JSON text, as ``extract`` writes them), in the order written."""
        try:
            yield from self._record_texts(run_id)
        except self.db.errors as exc:
            raise StoreUnusableError(self.where, _cause(exc, "read")) from exc

    def _record_texts(self, run_id: str | None) -> Iterator[str]:
        query = "SELECT record FROM letters WHERE status = 'ok'"
        args: tuple[str, ...] = ()
        if run_id is not None:
            query, args = query + " AND run_id = ?", (run_id,)
            if self.db.has_table("served"):  # (a store made before it, opened read-only, has none)
                query = (
                    "SELECT record FROM letters WHERE status = 'ok' AND (run_id = ? OR key IN"
                    " (SELECT letter_key FROM served WHERE run_id = ?))"
                )
                args = (run_id, run_id)
        for (text,) in self.db.execute(query + f" ORDER BY {self.db.order}", args):
            yield text

    def records(self, run_id: str | None = None) -> Iterator[LetterRecord]:
        """The stored records (``run_id``: those it extracted or served from the store)."""
        for text in self.record_texts(run_id):
            yield LetterRecord.model_validate_json(text)

    def failures(self, run_id: str | None = None) -> Iterator[FailedLetter]:
        """The letters that gave no record (``error`` rows), in the order written."""
        query = (
            "SELECT path, letter, sha256, backend, error_code, cause, run_id FROM letters"
            " WHERE status = 'error'"
        )
        args: tuple[str, ...] = ()
        if run_id is not None:
            query, args = query + " AND run_id = ?", (run_id,)
        try:
            for row in self.db.execute(query + " ORDER BY rowid", args):
                yield FailedLetter(*row)
        except sqlite3.Error as exc:
            raise StoreUnusableError(str(self.path), _cause(exc, "read")) from exc
