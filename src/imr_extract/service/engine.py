"""The service's letter engine: isolated letter workers, the run store, and nothing else.

Invariants:

* A letter goes through the library's one code path, as the CLI's do: ``runs.Run.extract`` over
  a ``BatchRunner`` (reuse from the store, claims, limits, the write of its result). The service
  is one ``Run`` in the store, from its start to its stop.
* Every letter a request sends is read (and, with the rules, extracted) in one of the runner's
  isolated worker processes (``runner.LetterPools``: a crash, running out of memory or past
  ``Limits.letter_seconds`` costs that letter alone and the worker is replaced), never in the
  process that serves requests. ``letter_workers`` such workers exist per service process, each
  kept between letters and requests. At most ``letter_workers + max_queue`` letters are in hand
  at once, and a model's extractions go through one ``runner.ModelQueue`` per process
  (``model_concurrency`` at once, ``max_queue`` waiting): past either, a request is refused
  (``busy``, 503 with ``Retry-After``) instead of queued without bound.
* ``RunStore`` is not thread-safe: the service's own reads and writes go through
  ``StoreThread``, and each thread that runs letters has its own connection. A result is
  written under the same ``ResultKey`` the CLI uses (``backends.build_backend``), so a letter
  the CLI extracted is served from the store and one extracted here is reused by the CLI.
* On a store shared by replicas (PostgreSQL) a letter is extracted under its claim
  (``RunStore.claim_letter``, taken by the runner): a replica sent a letter another is
  extracting waits for that result instead of extracting it again.
* A letter's bytes are kept (for its review page) in ``letters_dir``, or -- a store shared by
  replicas, with no directory given -- in the store's ``letter_files`` table, so any replica
  shows the review of a letter another extracted.
* A record leaves here with no path of the server: ``source.path`` is dropped and ``letter`` is
  the name the letter was sent under.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
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
from ..runner import Admission, BatchOutcome, LetterPools, ModelQueue, QueueFullError
from ..runs import Run
from ..schema import Backend, LetterRecord
from ..store import RunStore
from .body import Letter
from .metrics import Metrics
from .problems import ProblemError
from .settings import Settings

T = TypeVar("T")

#: Seconds ``/readyz`` waits for the model endpoint to take a connection.
MODEL_CONNECT_S = 2.0
#: Seconds between looks for room when a caller waits for it (``extract(wait=True)``).
WAIT_POLL_S = 0.05
#: Results served from the store recorded as the run's (``served``) in one write per so many.
SERVED_BATCH = 256
#: Letters whose bytes a process remembers having kept (not asked of the store again).
KEPT_MEMO = 4096


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
        self.pools = LetterPools(settings.letter_workers, rules, settings.pdf_engine, self.limits)
        self.admission = Admission(settings.letter_workers, settings.max_queue)
        self.model_queue = ModelQueue(settings.model_concurrency, settings.max_queue)
        # Threads that run letters (and wait for a model's): one per letter in hand.
        self._threads = ThreadPoolExecutor(
            settings.letter_workers * 2 + 4, thread_name_prefix="imr-letter"
        )
        self._local = threading.local()  # each letter thread's own connection to the store
        #: The letters whose bytes this process kept (the latest ``KEPT_MEMO``).
        self._kept_here: dict[str, None] = {}
        self._stores: list[RunStore] = []
        self._lock = threading.Lock()
        self.store = StoreThread(settings.store)
        self.letters_dir: Path | None = settings.letters_dir
        if self.letters_dir is None and isinstance(settings.store, Path):
            self.letters_dir = settings.store.with_name(settings.store.name + ".letters")
        if self.letters_dir is None:  # a shared store: the bytes in it, for every replica
            self.store.call(_make_letter_files)
        rules_backend = self.backends[Backend.RULES]
        self.run: Run = self.store.call(
            lambda s: Run.start(
                s, rules_backend, argv=["serve"], config={"service": settings.public()}
            )
        )
        self.run.served_batch = SERVED_BATCH  # one write per so many, not per request

    @property
    def run_id(self) -> str:
        assert self.run.id is not None
        return self.run.id

    @property
    def letters(self) -> int:
        return self.run.summary.letters

    @property
    def reused(self) -> int:
        return self.run.summary.reused

    # ------------------------------------------------------------------ lifecycle

    def warm(self) -> None:
        """Start every letter worker now (the forkserver first), not at the first letter."""
        self.pools.warm()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
        self.model_queue.shutdown()
        self.pools.shutdown()
        for store in self._stores:
            with contextlib.suppress(Exception):  # SQLite's belongs to its thread
                store.close()
        try:
            self.store.call(lambda s: self.run.finish())
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
        (``wait``: when the letters in hand or the model queue are full, wait for room instead
        of refusing the letter as ``busy``: the job worker's backpressure).

        Raises:
            ProblemError: ``busy`` (too many letters in hand, or the model queue is full).
        """
        built = self.backend(backend)
        sha = hashlib.sha256(letter.data).hexdigest()
        loop = asyncio.get_running_loop()
        try:
            await self._enter(wait)
            try:
                # One look in the store's thread first: a stored letter takes no letter thread.
                outcome = await self.store.acall(
                    lambda s: self.run.stored(letter, backend=built, store=s)
                )
                if outcome is None:
                    outcome = await loop.run_in_executor(
                        self._threads, self._run, letter, sha, built, wait
                    )
            finally:
                self.admission.leave()
        except QueueFullError as exc:
            raise ProblemError(
                "busy", str(exc), headers={"Retry-After": str(exc.retry_after_s)}
            ) from None
        result = Result(
            letter.name,
            outcome.sha256 or sha,
            record_json=outcome.record_json,
            error=outcome.error,
            reused=outcome.reused,
        )
        if result.reused and result.record_json is not None:
            self.metrics.letter("reused")
        elif outcome.row is None:
            self.metrics.letter("error")
        else:  # tokens from the row the run made (no parsing the record back)
            _, prompt, completion, _ = outcome.row.usage
            self.metrics.letter("ok", prompt, completion)
        return result

    async def _enter(self, wait: bool) -> None:
        """Take a place among the letters in hand; when they are full, wait for one (looking
        again in a moment, never blocking the event loop) or, without ``wait``, raise
        ``QueueFullError``."""
        while True:
            try:
                self.admission.enter(wait=False)
                return
            except QueueFullError:
                if not wait:
                    raise
                await asyncio.sleep(WAIT_POLL_S)

    def _run(
        self, letter: Letter, sha: str, built: BuiltBackend, wait: bool = False
    ) -> BatchOutcome:
        """In a letter thread: ``letter`` through the run (a worker, the model's queue, the
        store through this thread's own connection)."""
        store = self._thread_store()
        # Its bytes are kept before its record is written: whoever finds one finds both.
        self._keep(sha, letter.data, store)
        (outcome,) = self.run.extract(
            [letter],
            total=1,
            backend=built,
            store=store,
            pool=self.pools,
            model_queue=self.model_queue,
            when_full="wait" if wait else "refuse",
            pdf_engine=self.settings.pdf_engine,
            limits=self.limits,
        )
        return outcome

    def _thread_store(self) -> RunStore:
        store: RunStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = RunStore(self.settings.store)
            with self._lock:
                self._stores.append(store)
        return store

    @property
    def waiting(self) -> int:
        """Letters being read or waiting for a worker now."""
        return self.admission.in_hand

    async def read(self, letter: Letter) -> Document:
        """``letter`` read in a letter worker (its limits held there).

        Raises:
            ImrExtractError: it cannot be read, or is past a limit.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self.pools.read, letter)

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

    def _keep(self, sha: str, data: bytes, store: RunStore | None = None) -> None:
        """Keep a letter's bytes (by content) for its review page (in a thread: through its own
        connection to the store, or ``store``)."""
        if sha in self._kept_here:  # kept by this process already
            return
        if self.letters_dir is None:
            _keep_in_store(store or self._thread_store(), sha, data)
        else:
            path = self._letter_file(sha)
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                part = path.with_name(f"{sha}.{os.getpid()}.{threading.get_ident()}.part")
                part.write_bytes(data)
                os.replace(part, path)
        with self._lock:
            self._kept_here[sha] = None
            while len(self._kept_here) > KEPT_MEMO:
                del self._kept_here[next(iter(self._kept_here))]

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


#: The table of letters' bytes, in SQLite's dialect (``Database.create_tables`` makes it in the
#: store's: ``BYTEA`` on PostgreSQL).
LETTER_FILES_SQL = f"""
CREATE TABLE IF NOT EXISTS {LETTER_FILES} (
    sha256  TEXT PRIMARY KEY,   -- of the letter's bytes: /v1/letters/{{sha256}}/review
    data    BLOB NOT NULL       -- the letter as it was sent (PDF or text), for its review page
);
"""


def _make_letter_files(store: RunStore) -> None:
    """Make the ``letter_files`` table (once: replicas starting together queue on a lock)."""
    with store.transaction() as db:
        db.lock_key(LETTER_FILES)
        db.create_tables(LETTER_FILES_SQL)


def _keep_in_store(store: RunStore, sha: str, data: bytes) -> None:
    if _kept_in_store(store, sha, probe=True) is not None:
        return  # a read, not a write: most letters sent again are kept already
    with store.transaction() as db:
        db.execute(
            f"INSERT INTO {LETTER_FILES} (sha256, data) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (sha, data),
        )


def _kept_in_store(store: RunStore, sha: str, probe: bool = False) -> bytes | None:
    """The bytes kept of the letter ``sha`` (``probe``: only whether they are, as ``b""``)."""
    what = "1" if probe else "data"
    row = store.db.execute(f"SELECT {what} FROM {LETTER_FILES} WHERE sha256 = ?", (sha,)).fetchone()
    return None if row is None else (b"" if probe else bytes(row[0]))


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
