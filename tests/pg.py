"""A throwaway PostgreSQL server for tests: no system service, no network.

``initdb`` into a temporary directory, ``pg_ctl start`` listening on a Unix socket in that
directory only (no TCP port), one database per test, ``pg_ctl stop`` at the end. As root (a CI
container) the server runs as the ``postgres`` user (``initdb`` refuses root). The binaries are
Debian's (``apt-get install postgresql``: /usr/lib/postgresql/<version>/bin) or on the PATH.

Without them the tests skip -- except when ``IMR_REQUIRE_POSTGRES`` is set (``.ci/run``), where
they fail: CI must not pass by skipping.
"""

from __future__ import annotations

import contextlib
import glob
import itertools
import os
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

REQUIRED = bool(os.environ.get("IMR_REQUIRE_POSTGRES"))


def _bindir() -> Path | None:
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[3]) if Path(p).parts[3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    return Path(on_path).parent if on_path else None


def _missing(why: str) -> None:
    if REQUIRED:
        pytest.fail(f"IMR_REQUIRE_POSTGRES is set but {why}")
    pytest.skip(why)


class Server:
    """A running server; ``database()`` makes a fresh database and returns its URL."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root = bindir, root
        self.data, self.socket = root / "data", root / "sock"
        self.user: str | None = None
        self.seconds = 0.0  # initdb + start
        self._names = itertools.count()

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)

    def start(self) -> None:
        t0 = time.monotonic()
        self.socket.mkdir()
        if os.geteuid() == 0:  # initdb refuses root: the server is the postgres user's
            self.user = "postgres"
            shutil.chown(self.root, self.user)
            shutil.chown(self.socket, self.user)
        self._run(
            str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres",
            "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C",
        )  # fmt: skip
        options = (
            f"-k {self.socket} -c listen_addresses='' -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=60"
        )
        self._run(
            str(self.bindir / "pg_ctl"), "-D", str(self.data), "-o", options, "-w",
            "-l", str(self.root / "log"), "start",
        )  # fmt: skip
        self.seconds = time.monotonic() - t0

    def url(self, database: str = "postgres") -> str:
        host = urllib.parse.quote(str(self.socket), safe="")
        return f"postgresql://postgres@{host}/{database}"

    def database(self) -> str:
        import psycopg

        name = f"t{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop")


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """One server for the session (tests get their own database from ``pg_url``)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed (pip install -e '.[postgres]')")
    bindir = _bindir()
    if bindir is None:
        _missing("no PostgreSQL server binaries (initdb): apt-get install postgresql")
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="imr-pg-"))
    os.chmod(root, 0o755)
    server = Server(bindir, root)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        log = root / "log"
        shown = log.read_text() if log.exists() else ""
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"PostgreSQL did not start: {exc.stderr or exc.stdout}{shown}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Server) -> str:
    """A fresh, empty database on the session's server."""
    return pg_server.database()
