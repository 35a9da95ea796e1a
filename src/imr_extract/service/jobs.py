"""Jobs: many letters sent at once, extracted in the background, their results read back.

Invariants:

* A job lives in the run store (tables ``jobs`` and ``job_letters``, made here through the
  store's dialect, SQLite or PostgreSQL), so any replica on the store answers its status and
  results. Its letters' bytes are kept by the engine's own mechanism (``letters_dir`` or the
  ``letter_files`` table) before the job is committed, so any replica can extract them.
* A job belongs to the API key that made it (``owner``): under another key it does not exist.
* Each service process runs one ``JobWorker``. A letter of a job is taken by one worker at a
  time: taking it is a conditional ``UPDATE`` (``state = 'pending'``, or ``running`` with its
  lease run out) that one transaction alone can win, and it is held under a lease the worker
  renews while it works. A worker that dies stops renewing, and another takes the letter when
  the lease runs out: a job whose replica died is finished by another. The letter itself is
  extracted through ``Engine.extract``, under its claim on a shared store, so even a letter
  taken twice (a lease run out under a stalled worker) is extracted once and reused.
* A worker holds at most ``capacity`` letters at once and waits for room in the engine instead
  of failing a letter as ``busy`` (``Engine.extract(wait=True)``).
* A cancelled job's letters not yet taken are never extracted; those in hand finish.
* Times are UTC: ISO 8601 text for people, epoch seconds for leases (replicas' clocks are
  assumed to agree to well within ``LEASE_S``).
* A job ended (finished, or cancelled with no letter left in hand) longer ago than the
  settings' ``keep_jobs`` is deleted with its ``job_letters`` rows, in one transaction under one
  lock (replicas doing it at once queue; the second finds nothing left). A job not ended is
  never deleted. The letters' records (``letters``) and bytes (``letter_files`` or the letters
  directory) are the store's, not the job's: they stay.
* A follower of a job's results stops after ``follow_seconds`` even if the job has not ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from ..output import View, view_json
from ..redact import redact
from ..schema import Backend
from ..store import RunStore, StoreUnusableError, _guarded, now_iso
from .body import Letter
from .engine import Engine, Result, served
from .problems import ProblemError

logger = logging.getLogger("imr_extract.service.jobs")

JOBS, JOB_LETTERS = "jobs", "job_letters"
#: Seconds a worker holds a letter without renewing its lease; another takes it after that.
LEASE_S = float(os.environ.get("IMR_JOB_LEASE_S", "15"))
#: Seconds between looks at the store for letters to take (sooner when a job is made here).
POLL_S = 0.25
#: Seconds between looks at the store while following a job's results.
FOLLOW_POLL_S = 0.2
#: Rows of a job's letters read at a time while streaming its results.
PAGE = 100
#: Jobs deleted at most per transaction when old jobs are deleted (the rest in the next round).
PURGE_BATCH = 500
#: The lock (``Database.lock_key``) replicas deleting old jobs at once queue on.
PURGE_LOCK = "jobs-retention"


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    CANCELLED = "cancelled"


class JobCounts(BaseModel):
    letters: int = Field(description="Letters in the job.")
    done: int = Field(description="Letters finished (ok or failed).")
    ok: int = Field(description="Letters with a record.")
    failed: int = Field(description="Letters with an error (see the results).")
    reused: int = Field(description="Letters whose record was in the store already.")
    cancelled: int = Field(description="Letters not extracted: the job was cancelled first.")
    skipped: int = Field(
        description="Members of the upload that are no letter (directories, links, hidden or "
        "other files): never extracted."
    )


class Job(BaseModel):
    """A job: its letters' progress; its results at ``results``."""

    id: str
    status: JobStatus = Field(
        description="queued (no letter started), running, finished (every letter done) or "
        "cancelled."
    )
    backend: str
    counts: JobCounts
    progress: float = Field(description="done / letters, from 0 to 1.")
    created_at: str = Field(description="ISO 8601, UTC.")
    started_at: str | None = None
    finished_at: str | None = Field(default=None, description="When it finished or was cancelled.")
    results: str = Field(description="Where its results are: JSON Lines, one line per letter.")


# --------------------------------------------------------------------------- tables


#: The job tables, in SQLite's dialect (``Database.create_tables`` makes them in the store's).
SCHEMA_SQL = f"""
CREATE TABLE IF NOT EXISTS {JOBS} (
    id           TEXT PRIMARY KEY,      -- job-...: names it in /v1/jobs/{{id}}
    owner        TEXT NOT NULL,         -- the id of the API key that made it ('' with auth off)
    backend      TEXT NOT NULL,         -- rules | hybrid | llm
    status       TEXT NOT NULL,         -- queued | running | finished | cancelled
    letters      INTEGER NOT NULL,      -- letters in it
    skipped      INTEGER NOT NULL,      -- members of its archive or form that are not letters
    created_at   TEXT NOT NULL,
    started_at   TEXT,
    finished_at  TEXT                   -- when it ended (deleted serve --keep-jobs after)
);
CREATE INDEX IF NOT EXISTS {JOBS}_status ON {JOBS} (status);
CREATE TABLE IF NOT EXISTS {JOB_LETTERS} (
    job_id       TEXT NOT NULL,         -- jobs.id
    position     INTEGER NOT NULL,      -- its place in the job (0, 1, ...): the results' order
    name         TEXT NOT NULL,         -- the name it was sent under (its base name only)
    sha256       TEXT NOT NULL,         -- of its bytes (kept in letter_files or --letters-dir)
    state        TEXT NOT NULL,         -- pending | running | done | cancelled
    worker       TEXT,                  -- the worker that holds it (running) or did it (done)
    lease_until  REAL,                  -- running: another worker may take it after this (epoch s)
    attempts     INTEGER NOT NULL DEFAULT 0,  -- times a worker took it
    status       TEXT,                  -- done: ok | error
    reused       INTEGER,               -- done: 1 when its result was in the store already
    result_key   TEXT,                  -- ok: letters.key of its record
    error_code   TEXT,                  -- error: its code
    cause        TEXT,                  -- error: its cause (redacted)
    finished_at  TEXT,
    PRIMARY KEY (job_id, position)
);
CREATE INDEX IF NOT EXISTS {JOB_LETTERS}_state ON {JOB_LETTERS} (state, job_id);
"""


@_guarded("write")
def make_tables(store: RunStore) -> None:
    """Make the job tables (once: replicas starting together queue on a lock)."""
    with store.transaction() as db:
        db.lock_key(JOBS)
        db.create_tables(SCHEMA_SQL)


def _log(exc: Exception) -> None:
    """One redacted line for a failure a job worker goes on after: the store's (a warning: the
    letter's lease runs out and a worker tries again), or a bug's (an error)."""
    if isinstance(exc, StoreUnusableError):
        logger.warning(redact(f"jobs: the run store cannot be used: {exc.cause}"))
    else:
        logger.error(redact(f"jobs: unexpected {type(exc).__name__}: {exc}"))


def new_job_id() -> str:
    return "job-" + secrets.token_hex(12)


@_guarded("write")
def _insert_job(
    store: RunStore,
    job_id: str,
    owner: str,
    backend: Backend,
    letters: list[tuple[str, str]],
    skipped: int,
    running_worker: str | None = None,
) -> None:
    """Record a job of ``letters`` (name, sha256); ``running_worker``: its one letter is in that
    worker's hand already (a ``/v1/extract`` past its wait)."""
    now = now_iso()
    with store.transaction() as db:
        db.execute(
            f"INSERT INTO {JOBS} (id, owner, backend, status, letters, skipped, created_at,"
            " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job_id,
                owner,
                backend.value,
                "running" if running_worker else "queued",
                len(letters),
                skipped,
                now,
                now if running_worker else None,
            ),
        )
        state, lease = ("running", time.time() + LEASE_S) if running_worker else ("pending", None)
        db.executemany(
            f"INSERT INTO {JOB_LETTERS} (job_id, position, name, sha256, state, worker,"
            " lease_until, attempts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (job_id, i, name, sha, state, running_worker, lease, 1 if running_worker else 0)
                for i, (name, sha) in enumerate(letters)
            ],
        )


_COUNTS = (
    "SELECT count(*),"
    " coalesce(sum(CASE WHEN state = 'done' THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN status = 'ok' THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN status = 'error' THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN reused = 1 THEN 1 ELSE 0 END), 0),"
    " coalesce(sum(CASE WHEN state = 'cancelled' THEN 1 ELSE 0 END), 0)"
    f" FROM {JOB_LETTERS} WHERE job_id = ?"
)


@_guarded("read")
def _job(store: RunStore, job_id: str, owner: str) -> Job | None:
    row = store.db.execute(
        f"SELECT id, backend, status, skipped, created_at, started_at, finished_at FROM {JOBS}"
        " WHERE id = ? AND owner = ?",
        (job_id, owner),
    ).fetchone()
    if row is None:
        return None
    letters, done, ok, failed, reused, cancelled = store.db.execute(_COUNTS, (job_id,)).fetchone()
    counts = JobCounts(
        letters=letters,
        done=done,
        ok=ok,
        failed=failed,
        reused=reused,
        cancelled=cancelled,
        skipped=row[3],
    )
    return Job(
        id=row[0],
        backend=row[1],
        status=JobStatus(row[2]),
        counts=counts,
        progress=round(done / letters, 4) if letters else 1.0,
        created_at=row[4],
        started_at=row[5],
        finished_at=row[6],
        results=f"/v1/jobs/{row[0]}/results",
    )


@_guarded("write")
def _cancel(store: RunStore, job_id: str, owner: str) -> Job | None:
    with store.transaction() as db:
        found = db.execute(
            f"SELECT status FROM {JOBS} WHERE id = ? AND owner = ?", (job_id, owner)
        ).fetchone()
        if found is None:
            return None
        if found[0] in ("queued", "running"):
            db.execute(
                f"UPDATE {JOB_LETTERS} SET state = 'cancelled', finished_at = ?"
                " WHERE job_id = ? AND state = 'pending'",
                (now_iso(), job_id),
            )
            db.execute(
                f"UPDATE {JOBS} SET status = 'cancelled', finished_at = ? WHERE id = ?",
                (now_iso(), job_id),
            )
    return _job(store, job_id, owner)


@dataclass(frozen=True)
class Taken:
    """A job's letter in a worker's hand."""

    job_id: str
    position: int
    name: str
    sha256: str
    backend: Backend


@_guarded("write")
def _take(store: RunStore, worker: str, backends: list[str], room: int) -> list[Taken]:
    """Up to ``room`` letters of unfinished jobs, taken by ``worker``: pending ones, or ones whose
    lease ran out (their worker died). Jobs share the workers: the first letters of every
    unfinished job before the next ones (a small job is not stuck behind a large one), each job
    in its order."""
    now = time.time()
    marks = ", ".join("?" for _ in backends)
    candidates = store.db.execute(
        f"SELECT l.job_id, l.position, l.name, l.sha256, j.backend"
        f" FROM {JOB_LETTERS} l JOIN {JOBS} j ON j.id = l.job_id"
        f" WHERE j.status IN ('queued', 'running') AND j.backend IN ({marks})"
        " AND (l.state = 'pending' OR (l.state = 'running' AND l.lease_until < ?))"
        " ORDER BY l.position, j.created_at, l.job_id LIMIT ?",
        (*backends, now, room * 4),
    ).fetchall()
    taken: list[Taken] = []
    for job_id, position, name, sha, backend in candidates:
        if len(taken) >= room:
            break
        with store.transaction() as db:
            # Only one transaction can move this row out of the state it was seen in.
            cur = db.execute(
                f"UPDATE {JOB_LETTERS} SET state = 'running', worker = ?, lease_until = ?,"
                " attempts = attempts + 1 WHERE job_id = ? AND position = ?"
                " AND (state = 'pending' OR (state = 'running' AND lease_until < ?))",
                (worker, now + LEASE_S, job_id, position, now),
            )
            if cur.rowcount != 1:
                continue
            db.execute(
                f"UPDATE {JOBS} SET status = 'running', started_at = coalesce(started_at, ?)"
                " WHERE id = ? AND status = 'queued'",
                (now_iso(), job_id),
            )
        taken.append(Taken(job_id, position, name, sha, Backend(backend)))
    return taken


@_guarded("write")
def _renew(store: RunStore, worker: str) -> None:
    """Renew ``worker``'s leases; and a cancelled job's letters whose worker died in hand (their
    lease run out) are marked cancelled, so the job's counts and a follower come to an end."""
    now = time.time()
    with store.transaction() as db:
        db.execute(
            f"UPDATE {JOB_LETTERS} SET lease_until = ? WHERE worker = ? AND state = 'running'",
            (now + LEASE_S, worker),
        )
        db.execute(
            f"UPDATE {JOB_LETTERS} SET state = 'cancelled', finished_at = ?"
            " WHERE state = 'running' AND lease_until < ?"
            f" AND job_id IN (SELECT id FROM {JOBS} WHERE status = 'cancelled')",
            (now_iso(), now),
        )


@_guarded("write")
def _let_go(store: RunStore, worker: str) -> None:
    """A worker stopping: its letters in hand go back to the queue for another."""
    with store.transaction() as db:
        db.execute(
            f"UPDATE {JOB_LETTERS} SET state = 'pending', worker = NULL, lease_until = NULL"
            " WHERE worker = ? AND state = 'running'",
            (worker,),
        )


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | error
    reused: bool = False
    result_key: str | None = None
    error_code: str | None = None
    cause: str | None = None


@_guarded("write")
def _done(store: RunStore, taken: Taken, worker: str, outcome: Outcome) -> None:
    """Write a letter's outcome (unless another worker finished it first), and finish its job
    when it was the last."""
    with store.transaction() as db:
        db.execute(
            f"UPDATE {JOB_LETTERS} SET state = 'done', worker = ?, lease_until = NULL,"
            " status = ?, reused = ?, result_key = ?, error_code = ?, cause = ?, finished_at = ?"
            " WHERE job_id = ? AND position = ? AND state = 'running'",
            (
                worker,
                outcome.status,
                int(outcome.reused),
                outcome.result_key,
                outcome.error_code,
                redact(outcome.cause) if outcome.cause else None,
                now_iso(),
                taken.job_id,
                taken.position,
            ),
        )
        db.execute(
            f"UPDATE {JOBS} SET status = 'finished', finished_at = ?"
            " WHERE id = ? AND status IN ('queued', 'running') AND NOT EXISTS"
            f" (SELECT 1 FROM {JOB_LETTERS} WHERE job_id = ? AND state IN ('pending', 'running'))",
            (now_iso(), taken.job_id, taken.job_id),
        )


@_guarded("write")
def _purge(store: RunStore, keep_seconds: float) -> int:
    """Delete the jobs that ended more than ``keep_seconds`` ago (finished, or cancelled with no
    letter left in a worker's hand), with their ``job_letters`` rows: one transaction, under a
    lock replicas share. The jobs deleted (at most ``PURGE_BATCH``)."""
    cutoff = (
        (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=keep_seconds))
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )
    with store.transaction() as db:
        db.lock_key(PURGE_LOCK)
        ids = [
            job_id
            for (job_id,) in db.execute(
                f"SELECT id FROM {JOBS} j WHERE j.status IN ('finished', 'cancelled')"
                " AND j.finished_at IS NOT NULL AND j.finished_at < ? AND NOT EXISTS"
                f" (SELECT 1 FROM {JOB_LETTERS} l WHERE l.job_id = j.id"
                " AND l.state IN ('pending', 'running'))"
                f" ORDER BY j.finished_at LIMIT {PURGE_BATCH}",
                (cutoff,),
            ).fetchall()
        ]
        if not ids:
            return 0
        marks = ", ".join("?" for _ in ids)
        db.execute(f"DELETE FROM {JOB_LETTERS} WHERE job_id IN ({marks})", tuple(ids))
        db.execute(f"DELETE FROM {JOBS} WHERE id IN ({marks})", tuple(ids))
    return len(ids)


def purge_every(keep_seconds: float) -> float:
    """Seconds between a worker's rounds of deleting old jobs: half the time jobs are kept,
    between 1 s and 5 minutes (not every poll: a round is a write transaction)."""
    return min(300.0, max(1.0, keep_seconds / 2))


# --------------------------------------------------------------------------- the worker


class JobWorker:
    """Takes letters of unfinished jobs from the store and extracts them (one per process)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        #: Letters in hand at once: enough to keep every letter worker busy.
        self.capacity = max(2, engine.settings.letter_workers * 2)
        self._tasks: set[asyncio.Task[None]] = set()
        #: One letter's content at a time here (a job holding it twice reuses the first):
        #: content -> its lock and how many letters hold or wait for it.
        self._same: dict[str, tuple[asyncio.Lock, int]] = {}
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._renewer: asyncio.Task[None] | None = None
        self._purger: asyncio.Task[None] | None = None
        engine.store.call(make_tables)

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="imr-jobs")
        self._renewer = asyncio.create_task(self._renew(), name="imr-jobs-lease")
        if self.engine.settings.keep_jobs > 0:
            self._purger = asyncio.create_task(self._purge(), name="imr-jobs-retention")

    async def close(self) -> None:
        for task in (self._loop, self._renewer, self._purger, *self._tasks):
            if task is not None:
                task.cancel()
        for task in (self._loop, self._renewer, self._purger, *self._tasks):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task
        with contextlib.suppress(Exception):
            await self.engine.store.acall(lambda s: _let_go(s, self.id))

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        backends = [b.value for b in self.engine.backends]
        while True:
            room = self.capacity - len(self._tasks)
            taken: list[Taken] = []
            if room > 0:
                try:
                    taken = await self.engine.store.acall(
                        functools.partial(_take, worker=self.id, backends=backends, room=room)
                    )
                except Exception as exc:  # the store or a bug: logged; the worker goes on
                    _log(exc)
            for one in taken:
                self._spawn(self._do(one))
            if taken and len(taken) == room:
                await asyncio.sleep(0)
                continue
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_S)

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(LEASE_S / 3)
            try:
                await self.engine.store.acall(lambda s: _renew(s, self.id))
            except Exception as exc:  # the store or a bug: logged; the next round tries again
                logger.warning(redact(f"jobs: leases not renewed: {type(exc).__name__}: {exc}"))

    async def _purge(self) -> None:
        keep = self.engine.settings.keep_jobs
        while True:
            await asyncio.sleep(purge_every(keep))
            try:
                while await self.engine.store.acall(lambda s: _purge(s, keep)) == PURGE_BATCH:
                    await asyncio.sleep(0)
            except Exception as exc:  # the store or a bug: logged; the next round tries again
                logger.warning(redact(f"jobs: old jobs not deleted: {type(exc).__name__}: {exc}"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)

        def finished(t: asyncio.Task[None]) -> None:
            self._tasks.discard(t)
            self._wake.set()  # room again

        task.add_done_callback(finished)

    async def _do(self, taken: Taken) -> None:
        lock, users = self._same.get(taken.sha256, (asyncio.Lock(), 0))
        self._same[taken.sha256] = (lock, users + 1)
        try:
            async with lock:
                outcome = await self._extract(taken)
        finally:
            lock, users = self._same[taken.sha256]
            if users == 1:
                del self._same[taken.sha256]
            else:
                self._same[taken.sha256] = (lock, users - 1)
        if outcome is not None:
            await self._write(taken, outcome)

    async def _extract(self, taken: Taken) -> Outcome | None:
        """The letter's outcome; None: the store failed (the lease runs out; another tries)."""
        try:
            data = await self.engine._kept(taken.sha256)
            if data is None:
                return Outcome("error", error_code="letter-lost", cause="its bytes were not kept")
            result = await self.engine.extract(Letter(taken.name, data), taken.backend, wait=True)
        except StoreUnusableError as exc:
            _log(exc)
            return None
        except ProblemError as exc:
            return Outcome("error", error_code=exc.problem.code, cause=exc.problem.detail)
        except Exception as exc:  # a bug: this letter fails, the worker goes on
            _log(exc)
            return Outcome("error", error_code="internal", cause="an unexpected error")
        return self.outcome(result, taken.backend)

    def outcome(self, result: Result, backend: Backend) -> Outcome:
        if result.record_json is None:
            error = result.error
            assert error is not None
            return Outcome("error", reused=result.reused, error_code=error.code, cause=error.cause)
        key = self.engine.backends[backend].key.key(result.sha256, result.name)
        return Outcome("ok", reused=result.reused, result_key=key)

    async def _write(self, taken: Taken, outcome: Outcome) -> None:
        try:
            await self.engine.store.acall(lambda s: _done(s, taken, self.id, outcome))
        except Exception as exc:  # the store (the lease runs out; another worker tries) or a bug
            _log(exc)

    # ------------------------------------------------------------------ jobs made here

    async def create(
        self, owner: str, backend: Backend, letters: list[Letter], skipped: int
    ) -> Job:
        """A job of ``letters`` (their bytes kept first), queued for any worker."""
        named = await self._keep_all(letters)
        job_id = new_job_id()
        await self.engine.store.acall(
            lambda s: _insert_job(s, job_id, owner, backend, named, skipped)
        )
        job = await self.engine.store.acall(lambda s: _job(s, job_id, owner))
        assert job is not None
        self.wake()
        return job

    async def adopt(
        self, owner: str, backend: Backend, letter: Letter, task: asyncio.Future[Result]
    ) -> Job:
        """A job of one letter already being extracted here (``task``): its outcome is written
        when ``task`` ends; if this process dies first, another worker takes it."""
        named = await self._keep_all([letter])
        job_id = new_job_id()
        await self.engine.store.acall(
            lambda s: _insert_job(s, job_id, owner, backend, named, 0, running_worker=self.id)
        )
        taken = Taken(job_id, 0, named[0][0], named[0][1], backend)

        async def carry_on() -> None:
            try:
                result = await task
            except ProblemError as exc:
                outcome = Outcome("error", error_code=exc.problem.code, cause=exc.problem.detail)
            except StoreUnusableError:
                return  # the lease runs out; another worker tries
            except Exception as exc:
                _log(exc)
                outcome = Outcome("error", error_code="internal", cause="an unexpected error")
            else:
                outcome = self.outcome(result, backend)
            await self._write(taken, outcome)

        self._spawn(carry_on())
        job = await self.engine.store.acall(lambda s: _job(s, job_id, owner))
        assert job is not None
        return job

    async def _keep_all(self, letters: list[Letter]) -> list[tuple[str, str]]:
        named: list[tuple[str, str]] = []
        seen: set[str] = set()
        for letter in letters:
            sha = hashlib.sha256(letter.data).hexdigest()
            if sha not in seen:
                seen.add(sha)
                await asyncio.to_thread(self.engine._keep, sha, letter.data)
            named.append((letter.name, sha))
        return named

    # ------------------------------------------------------------------ reading jobs

    async def job(self, job_id: str, owner: str) -> Job | None:
        return await self.engine.store.acall(lambda s: _job(s, job_id, owner))

    async def cancel(self, job_id: str, owner: str) -> Job | None:
        return await self.engine.store.acall(lambda s: _cancel(s, job_id, owner))

    async def results(self, job_id: str, view: View, follow: bool) -> AsyncIterator[bytes]:
        """The job's results as JSON Lines, in the job's order: a record (in ``view``) or an
        error line per letter. ``follow``: every letter, waiting for each, until the job ends or
        the settings' ``follow_seconds`` have passed (then the stream ends, the letters not yet
        done left out); else the letters finished now (the others are left out)."""
        position = 0
        deadline = time.monotonic() + self.engine.settings.follow_seconds
        while True:
            page = functools.partial(_rows, job_id=job_id, position=position)
            rows = await self.engine.store.acall(page)
            if not rows:
                return
            waiting = False
            for pos, name, sha, state, status, record, code, cause in rows:
                if state in ("pending", "running") and follow:
                    waiting = True
                    break
                position = pos + 1
                if state not in ("pending", "running"):
                    yield _line(name, sha, state, status, record, code, cause, view)
            if waiting:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                await asyncio.sleep(min(FOLLOW_POLL_S, left))


@_guarded("read")
def _rows(store: RunStore, job_id: str, position: int) -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = store.db.execute(
        f"SELECT l.position, l.name, l.sha256, l.state, l.status, r.record, l.error_code, l.cause"
        f" FROM {JOB_LETTERS} l LEFT JOIN letters r ON r.key = l.result_key"
        f" WHERE l.job_id = ? AND l.position >= ? ORDER BY l.position LIMIT {PAGE}",
        (job_id, position),
    ).fetchall()
    return rows


def _line(
    name: str,
    sha: str,
    state: str,
    status: str | None,
    record: str | None,
    code: str | None,
    cause: str | None,
    view: View,
) -> bytes:
    if state == "done" and status == "ok" and record is not None:
        return view_json(served(record, name), view).encode("utf-8") + b"\n"
    if state == "cancelled":
        code, cause = "cancelled", "the job was cancelled before this letter was extracted"
    elif status == "ok":  # its record is gone from the store (deleted by hand)
        code, cause = "record-gone", "its record is no longer in the run store"
    line = {"letter": name, "sha256": sha, "error": code, "cause": cause}
    return json.dumps(line, ensure_ascii=False).encode("utf-8") + b"\n"
