"""API keys for the service's callers, kept hashed in the run store's SQLite file.

Invariant: a key's text exists only in the answer to ``create`` (shown once); the store holds its
SHA-256 digest, its id, a name and when it was made or revoked. A request's key is checked by
its digest, so no key is ever written, logged or compared as text. Keys look like
``imr-sk-<43 random URL-safe characters>``: the ``sk-`` shape ``redact`` masks wherever one
might appear.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..store import now_iso

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
    """The ``api_keys`` table of the SQLite file at ``path`` (made if missing). Each call opens
    its own connection, so any thread may use it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        try:
            db.execute(SCHEMA)
            yield db
        finally:
            db.close()

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
            raise UnknownKeyError(f"no API key {key_id!r} in {self.path.name}")
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
