"""The service's letter engine: isolated letter workers, the run store, and nothing else.

Invariants:

* Every letter a request sends is read (and, with the rules, extracted) in one of the runner's
  isolated worker processes (``runner._Pool``: a crash, running out of memory or past
  ``Limits.letter_seconds`` costs that letter alone and the worker is replaced), never in the
  process that serves requests. ``letter_workers`` such workers exist per service process, each
  kept between letters; a request waits for a free one, and when ``max_queue`` letters wait
  already it is refused (``busy``, 503 with ``Retry-After``) instead of queued without bound.
* The run store is used from one thread (``RunStore`` is not thread-safe): every read and
  write goes through ``StoreThread``. A result is written under the same ``ResultKey`` the CLI
  uses (``backends.build_backend``), so a letter the CLI extracted is served from the store and
  one extracted here is reused by the CLI. The service is one run in the store, from its start
  to its stop.
* On a store shared by replicas (PostgreSQL) a letter is extracted under its claim
  (``RunStore.claim_letter``): a replica sent a letter another is extracting waits for that
  result instead of extracting it again.
* A letter's bytes are kept (for its review page) in ``letters_dir``, or -- a store shared by
  replicas, with no directory given -- in the store's ``letter_files`` table, so any replica
  shows the review of a letter another extracted.
* A record leaves here with no path of the server: ``source.path`` is dropped and ``letter`` is
  the name the letter was sent under.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlparse

from ..backends import BuiltBackend, ModelOptions, build_backend, model_configured
from ..errors import ImrExtractError
from ..extract import check_items
from ..ingest import Document
from ..runner import _guard, _Pool, _Task
from ..schema import Backend, LetterRecord
from ..store import RecordRow, RunStore, StoredLetter, finished, new_run_id
from .body import Letter
from .metrics import Metrics
from .problems import ProblemError
from .settings import Settings

T = TypeVar("T")

#: Seconds ``/readyz`` waits for the model endpoint to take a connection.
MODEL_CONNECT_S = 2.0
#: Seconds between looks at the store while another replica extracts a letter.
CLAIM_POLL_S = 0.05
#: Seconds a caller refused as ``busy`` is told to wait.
RETRY_AFTER_S = 2
#: Spawning a worker (forkserver start, ``_preparation``) is not thread-safe: one at a time.
_SPAWN_LOCK = threading.Lock()


class _SlotPool(_Pool):
    """A ``_Pool`` of one worker, kept between letters, safe to start from any thread."""

    def _spawn(self) -> Any:
        with _SPAWN_LOCK:
            return super()._spawn()


class StoreThread:
    """The run store, opened and used in one thread of its own."""

    def __init__(self, target: Path | str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="imr-store")
        self.store: RunStore = self._executor.submit(RunStore, target).result()

    def call(self, fn: Callable[[RunStore], T]) -> T:
        """Run ``fn(store)`` in the store's thread (blocking the caller)."""
        return self._executor.submit(fn, self.store).result()

    async def acall(self, fn: Callable[[RunStore], T]) -> T:
        return await asyncio.wrap_future(self._executor.submit(fn, self.store))

    def close(self) -> None:
        self._executor.submit(self.store.close).result()
        self._executor.shutdown()


@dataclass
class Result:
    """What became of one letter: its record's JSON, or its error."""

    name: str
    sha256: str
    record_json: str | None = None
    error: ImrExtractError | None = None
    reused: bool = False


def served(record_json: str, name: str | None) -> str:
    """A stored record as the service answers it: no server path, named as it was sent."""
    record = LetterRecord.model_validate_json(record_json)
    update: dict[str, Any] = {}
    if record.source.path is not None:
        update["source"] = record.source.model_copy(update={"path": None})
    if name is not None and record.letter != name:
        update["letter"] = name
    return record.model_copy(update=update).model_dump_json() if update else record_json


class Engine:
    """Letters in, results out; one per service process (see the module's invariants)."""

    def __init__(
        self,
        settings: Settings,
        options: ModelOptions | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.limits = settings.limits
        self.backends: dict[Backend, BuiltBackend] = {
            Backend.RULES: build_backend(Backend.RULES, self.limits, pdf_engine=settings.pdf_engine)
        }
        options = options or ModelOptions()
        if model_configured(options.model, options.base_url):
            for backend in (Backend.HYBRID, Backend.LLM):
                self.backends[backend] = build_backend(
                    backend, self.limits, options, pdf_engine=settings.pdf_engine
                )
        rules = self.backends[Backend.RULES].extractor
        self._slots: queue.Queue[_SlotPool] = queue.Queue()
        self._all: list[_SlotPool] = []
        for _ in range(settings.letter_workers):
            pool = _SlotPool(1, rules, settings.pdf_engine, self.limits)
            self._all.append(pool)
            self._slots.put(pool)
        # Threads that wait for a worker (and run a model's extractor): one per letter in hand.
        self._threads = ThreadPoolExecutor(
            settings.letter_workers * 2 + 4, thread_name_prefix="imr-letter"
        )
        self._waiting = 0
        self._lock = threading.Lock()
        self.store = StoreThread(settings.store)
        self.letters_dir: Path | None = settings.letters_dir
        if self.letters_dir is None and isinstance(settings.store, Path):
            self.letters_dir = settings.store.with_name(settings.store.name + ".letters")
        if self.letters_dir is None:  # a shared store: the bytes in it, for every replica
            self.store.call(_make_letter_files)
        self.run_id = new_run_id()
        key = self.backends[Backend.RULES].key
        self.store.call(
            lambda s: s.start_run(
                key,
                argv=["serve"],
                inputs=[],
                config={"service": settings.public()},
                run_id=self.run_id,
            )
        )
        self.letters = 0
        self.reused = 0

    # ------------------------------------------------------------------ lifecycle

    def warm(self) -> None:
        """Start every letter worker now (the forkserver first), not at the first letter."""
        for pool in self._all:
            with _SPAWN_LOCK:
                if pool.procs[0] is None:
                    pool.procs[0] = _Pool._spawn(pool)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        for pool in self._all:
            pool.shutdown()
        try:
            self.store.call(
                lambda s: s.finish_run(self.run_id, letters=self.letters, reused=self.reused)
            )
        finally:
            self.store.close()

    async def ready(self) -> None:
        """Raise ``StoreUnusableError`` unless the store can be written now, and
        ``ProblemError`` (``model-unreachable``) when a model is configured and its endpoint
        does not take a connection."""

        def probe(store: RunStore) -> None:
            with store.transaction():
                pass

        await self.store.acall(probe)
        model = self.backends.get(Backend.HYBRID)
        if model is not None:
            await model_reachable(str(model.settings.get("llm", {}).get("base_url", "")))

    # ------------------------------------------------------------------ letters

    def backend(self, backend: Backend) -> BuiltBackend:
        built = self.backends.get(backend)
        if built is None:
            raise ProblemError(
                "backend-unavailable",
                f"backend {backend.value!r} needs a model, and none is configured on this server "
                "(IMR_LLM_MODEL): use backend=rules",
            )
        return built

    async def extract(self, letter: Letter, backend: Backend, *, wait: bool = False) -> Result:
        """One letter's result: from the store when it stands there, else extracted now
        (``wait``: when ``max_queue`` letters wait already, wait for room instead of refusing
        the letter as ``busy``: the job worker's backpressure)."""
        built = self.backend(backend)
        sha = hashlib.sha256(letter.data).hexdigest()
        key = built.key.key(sha, letter.name)
        stored = await self._claim(key)
        if stored is not None and stored.record is not None and finished(stored):
            self.letters += 1
            self.reused += 1
            self.metrics.letter("reused")
            return Result(letter.name, sha, served(stored.record, letter.name), reused=True)
        try:
            return await self._extract(letter, sha, built, wait)
        finally:  # written: released at its commit already; failed before: released here
            await self.store.acall(lambda s: s.release_letter(key))

    async def _claim(self, key: str) -> StoredLetter | None:
        """The letter's stored result, if it stands; else None, holding the letter's claim on a
        shared store (another replica extracting it: wait, polling, for its result)."""
        while True:
            stored = await self.store.acall(lambda s: s.lookup(key))
            if stored is not None and stored.record is not None and finished(stored):
                return stored
            if await self.store.acall(lambda s: s.claim_letter(key)):
                again = await self.store.acall(lambda s: s.lookup(key))  # written meanwhile?
                if again is not None and again.record is not None and finished(again):
                    await self.store.acall(lambda s: s.release_letter(key))
                return again
            await asyncio.sleep(CLAIM_POLL_S)

    async def _extract(
        self, letter: Letter, sha: str, built: BuiltBackend, wait: bool = False
    ) -> Result:
        while wait and self._waiting >= self.settings.letter_workers + self.settings.max_queue:
            await asyncio.sleep(CLAIM_POLL_S)
        with self._lock:
            if self._waiting >= self.settings.letter_workers + self.settings.max_queue:
                raise ProblemError(
                    "busy",
                    f"{self._waiting} letters are in hand already: try again in a moment",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._threads, self._run, letter, sha, built)
        finally:
            with self._lock:
                self._waiting -= 1
        self.letters += 1
        self._count(result, built)
        if result.record_json is not None:  # before the record: whoever finds it finds these
            await loop.run_in_executor(self._threads, self._keep, sha, letter.data)
        await self.store.acall(lambda s: self._write(s, built, letter, result))
        return result

    @property
    def waiting(self) -> int:
        """Letters being read or waiting for a worker now."""
        return self._waiting

    def _count(self, result: Result, built: BuiltBackend) -> None:
        if result.record_json is None:
            self.metrics.letter("error")
            return
        usage = (0, 0)
        if built.uses_model:
            u = LetterRecord.model_validate_json(result.record_json).extractor.usage
            usage = (u.prompt_tokens, u.completion_tokens)
        self.metrics.letter("ok", *usage)

    def _run(self, letter: Letter, sha: str, built: BuiltBackend) -> Result:
        """In a thread: the letter through a worker (and a model's extractor, for those)."""
        task = _Task(0, letter.name, letter.data, sha)
        pool = self._slots.get()
        try:
            kind = "read" if built.uses_model else "extract"
            ((_, answer),) = list(pool.map(kind, iter([task]), 1))
        finally:
            self._slots.put(pool)
        if not built.uses_model:
            _, row, error = answer
            if row is None:
                return Result(letter.name, sha, error=error)
            return Result(letter.name, sha, record_json=row.record_json)
        doc, error = answer
        if doc is None:
            return Result(letter.name, sha, error=error)
        extractor = built.extractor

        def extract(doc: Document = doc) -> LetterRecord:
            record = extractor(doc)
            check_items(letter.name, len(record.items), self.limits)
            return record

        record, error = _guard(letter.name, extract)
        if record is None:
            return Result(letter.name, sha, error=error)
        return Result(letter.name, sha, record_json=record.model_dump_json())

    def _write(self, store: RunStore, built: BuiltBackend, letter: Letter, result: Result) -> None:
        row = None
        if result.record_json is not None:
            row = RecordRow.of(LetterRecord.model_validate_json(result.record_json))
        store.write(
            built.key,
            self.run_id,
            letter.name,
            result.sha256,
            row=row,
            error=result.error,
        )

    async def read(self, letter: Letter) -> Document:
        """``letter`` read in a letter worker (its limits held there).

        Raises:
            ImrExtractError: it cannot be read, or is past a limit.
        """

        def read() -> Any:
            pool = self._slots.get()
            try:
                sha = hashlib.sha256(letter.data).hexdigest()
                task = _Task(0, letter.name, letter.data, sha)
                ((_, answer),) = list(pool.map("read", iter([task]), 1))
            finally:
                self._slots.put(pool)
            return answer

        doc, error = await asyncio.get_running_loop().run_in_executor(self._threads, read)
        if doc is None:
            assert error is not None
            raise error
        return doc

    async def verify(self, letter: Letter, data: Any) -> str:
        """``data`` (a record from any tool) verified against ``letter``: the record's JSON.

        Raises:
            ImrExtractError: the letter cannot be read, or ``data`` is not a record.
        """
        from ..verify.external import verify_external

        doc = await self.read(letter)
        items = data.get("items") if isinstance(data, dict) else None
        if isinstance(items, list):
            check_items(letter.name, len(items), self.limits)

        def verify() -> str:
            return verify_external(data, doc, limits=self.limits).model_dump_json()

        result: str = await asyncio.get_running_loop().run_in_executor(self._threads, verify)
        return result

    # ------------------------------------------------------------------ stored letters

    def _letter_file(self, sha: str) -> Path:
        assert self.letters_dir is not None
        return self.letters_dir / sha[:2] / sha

    def _keep(self, sha: str, data: bytes) -> None:
        """Keep a letter's bytes (by content) for its review page."""
        if self.letters_dir is None:
            self.store.call(lambda s: _keep_in_store(s, sha, data))
            return
        path = self._letter_file(sha)
        if path.exists():
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f"{sha}.{os.getpid()}.{threading.get_ident()}.part")
        part.write_bytes(data)
        os.replace(part, path)

    async def stored(self, sha: str, backend: Backend) -> str | None:
        """The stored record of the letter ``sha`` made by ``backend`` (JSON), or None."""
        built = self.backend(backend)
        row = await self.store.acall(lambda s: s.lookup(built.key.key(sha, "")))
        if row is None or row.record is None or row.status != "ok":
            return None
        return served(row.record, None)

    async def review(self, sha: str) -> str | None:
        """The review page of the letter ``sha``, with every stored record of it; None when
        neither its bytes nor a record of it are here."""
        from ..review import render_review

        data = await self._kept(sha)
        if data is None:
            return None
        records: dict[str, LetterRecord] = {}
        for backend in self.backends:
            text = await self.stored(sha, backend)
            if text is not None:
                records[backend.value] = LetterRecord.model_validate_json(text)
        if not records:
            return None
        first = next(iter(records.values()))
        doc = await self.read(Letter(first.letter, data))
        return render_review(doc, records)

    async def _kept(self, sha: str) -> bytes | None:
        """The bytes kept of the letter ``sha`` (None: none kept)."""
        if self.letters_dir is None:
            return await self.store.acall(lambda s: _kept_in_store(s, sha))
        path = self._letter_file(sha)
        return path.read_bytes() if path.is_file() else None


#: Letters' bytes kept in the store itself (a shared store with no ``letters_dir``).
LETTER_FILES = "letter_files"


def _make_letter_files(store: RunStore) -> None:
    """Make the ``letter_files`` table (once: replicas starting together queue on a lock)."""
    blob = "BYTEA" if store.shared else "BLOB"
    with store.transaction() as db:
        db.lock_key(LETTER_FILES)
        if not db.has_table(LETTER_FILES):
            db.execute(
                f"CREATE TABLE {LETTER_FILES} (sha256 TEXT PRIMARY KEY, data {blob} NOT NULL)"
            )


def _keep_in_store(store: RunStore, sha: str, data: bytes) -> None:
    with store.transaction() as db:
        db.execute(
            f"INSERT INTO {LETTER_FILES} (sha256, data) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (sha, data),
        )


def _kept_in_store(store: RunStore, sha: str) -> bytes | None:
    row = store.db.execute(f"SELECT data FROM {LETTER_FILES} WHERE sha256 = ?", (sha,)).fetchone()
    return None if row is None else bytes(row[0])


async def model_reachable(base_url: str, timeout_s: float = MODEL_CONNECT_S) -> None:
    """Raise ``ProblemError`` (``model-unreachable``, 503) unless the model endpoint at
    ``base_url`` takes a TCP connection within ``timeout_s`` (no request is made: no tokens)."""
    url = urlparse(base_url)
    port = url.port or (443 if url.scheme == "https" else 80)
    where = f"{url.scheme}://{url.hostname}:{port}"  # never the URL's user or password
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(url.hostname, port), timeout_s)
    except (OSError, TimeoutError) as exc:
        raise ProblemError(
            "model-unreachable",
            f"the model endpoint {where} does not take a connection "
            f"({type(exc).__name__}): backend=rules still works",
            headers={"Retry-After": "5"},
        ) from None
    writer.close()
