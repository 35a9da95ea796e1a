"""API keys for the service's callers, kept hashed in the run store (its ``api_keys`` table, in
the SQLite file or the PostgreSQL database every replica of the service shares).

Invariant: a key's text exists only in the answer to ``create`` (shown once); the store holds its
SHA-256 digest, its id, a name and when it was made or revoked. A request's key is checked by
its digest, so no key is ever written, logged or compared as text. Keys look like
``imr-sk-<43 random URL-safe characters>``: the ``sk-`` shape ``redact`` masks wherever one
might appear.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..store import StoreUnusableError, now_iso
from ..storedb import PostgresDatabase, is_url, shown_url

KEY_PREFIX = "imr-sk-"

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id          TEXT PRIMARY KEY,         -- key_1a2b3c4d: names the key in list and revoke
    name        TEXT NOT NULL,            -- who or what it is for
    digest      TEXT NOT NULL UNIQUE,     -- sha256 of the key's text (never the text)
    created_at  TEXT NOT NULL,
    revoked_at  TEXT
);
"""


class UnknownKeyError(Exception):
    """A key operation that cannot be done (no such key)."""


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class KeyStore:
    """The ``api_keys`` table of the run store at ``target`` (made if missing): a SQLite file's
    path, or a ``postgresql://`` URL. Any thread may use it: on SQLite each call opens its own
    connection; on PostgreSQL one connection is kept, used under a lock, and opened again after
    the server dropped it. SQL is written with ``?`` placeholders (``storedb`` translates)."""

    def __init__(self, target: str | os.PathLike[str]) -> None:
        self.url = str(target) if is_url(target) else None
        self.path = None if self.url is not None else Path(target)
        self.where = shown_url(self.url) if self.url is not None else Path(target).name
        self._pg: PostgresDatabase | None = None
        self._lock = threading.Lock()

    @contextmanager
    def _db(self) -> Iterator[Any]:
        if self.url is not None:
            with self._lock:
                try:
                    if self._pg is None:
                        self._pg = PostgresDatabase(self.url, readonly=False, schema=SCHEMA)
                    yield self._pg
                except self._errors() as exc:
                    self.close()
                    raise StoreUnusableError(self.where, type(exc).__name__) from None
            return
        assert self.path is not None
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute(SCHEMA)
            yield db
        finally:
            db.close()

    @staticmethod
    def _errors() -> tuple[type[BaseException], ...]:
        import psycopg

        return (psycopg.Error,)

    def close(self) -> None:
        if self._pg is not None:
            self._pg.close()
            self._pg = None

    def create(self, name: str) -> tuple[ApiKey, str]:
        """A new key: its row, and its text (shown once, never stored)."""
        token = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey("key_" + secrets.token_hex(4), name, now_iso(), None)
        with self._db() as db:
            db.execute(
                "INSERT INTO api_keys (id, name, digest, created_at) VALUES (?, ?, ?, ?)",
                (key.id, key.name, digest(token), key.created_at),
            )
        return key, token

    def list(self) -> list[ApiKey]:
        with self._db() as db:
            rows = db.execute(
                "SELECT id, name, created_at, revoked_at FROM api_keys ORDER BY created_at, id"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke ``key_id`` (revoking it again changes nothing).

        Raises:
            UnknownKeyError: no such key.
        """
        with self._db() as db:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now_iso(), key_id),
            )
            row = db.execute(
                "SELECT id, name, created_at, revoked_at FROM api_keys WHERE id = ?", (key_id,)
            ).fetchone()
        if row is None:
            raise UnknownKeyError(f"no API key {key_id!r} in {self.where}")
        return ApiKey(*row)

    def active_count(self) -> int:
        with self._db() as db:
            (n,) = db.execute("SELECT count(*) FROM api_keys WHERE revoked_at IS NULL").fetchone()
        return int(n)

    def check(self, token: str) -> ApiKey | None:
        """The active key whose text is ``token`` (None: no such key, or revoked)."""
        if not token.startswith(KEY_PREFIX) or len(token) > 200:
            return None
        with self._db() as db:
            row = db.execute(
                "SELECT id, name, created_at, revoked_at FROM api_keys"
                " WHERE digest = ? AND revoked_at IS NULL",
                (digest(token),),
            ).fetchone()
        return ApiKey(*row) if row is not None else None
