"""The batch runner: letters in, outcomes out, streamed in input order with flat memory.

``run_batch`` yields one ``BatchOutcome`` per input, **in input order** (so an output file is the
same whatever ``workers`` is, and equals a one-process run's), holding at most a bounded window
of letters in flight; nothing grows with the batch.

Two ways to spread the work:

* ``concurrency=None`` (the rules): each worker process reads *and* extracts a chunk of letters
  (``workers`` processes, ``chunksize`` letters per task). The record comes back as JSON.
* ``concurrency=N`` (backends that call a model): worker processes read the letters (PDF text
  extraction is the CPU-heavy part) and ``N`` threads in this process run the extractor, so up
  to ``N`` model calls are in flight at once. A ``RateLimiter`` shared by the threads keeps them
  under requests/minute and tokens/minute (see ``RateLimitedLLM``).

``workers=1`` runs everything in this process (no pool). Worker processes are forked from a
``forkserver`` (never from this possibly multi-threaded process) and replaced after
``MAX_TASKS_PER_CHILD`` tasks. A worker that dies (a crash in a PDF library) costs only the
letter it was reading: that letter is reported as an ``internal`` error and the batch goes on.
A batch process that dies (even by SIGKILL) takes its workers with it. As with any
``multiprocessing`` program, a script that runs a batch with ``workers > 1`` must guard its
entry point with ``if __name__ == "__main__":``.

With a ``RunStore``, each letter is hashed first; one whose result already stands under the same
key is not extracted again but served from the store (``reused``), and each new result is
committed before it is yielded. Each letter's write is all or nothing (a savepoint); the rules'
letters are committed in groups of up to ``COMMIT_EVERY`` (or ``COMMIT_INTERVAL_S``), a
model's one by one.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import math
import multiprocessing
import os
import select
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple

from . import layouts
from .errors import ImrExtractError, InternalError
from .extract import Extractor, extract_document
from .ingest import STDIN, Document, iter_paths, read_bytes, read_path
from .limits import DEFAULT_LIMITS, Limits
from .schema import LetterRecord
from .store import RecordRow, ResultKey, RunStore, finished

#: Letters per task sent to a worker process (amortises the inter-process round trip).
DEFAULT_CHUNKSIZE = 8
#: Letters written to the store per commit, at most, and the longest a written letter waits for
#: its commit (and so to be yielded).
COMMIT_EVERY = 64
COMMIT_INTERVAL_S = 0.25
#: Tasks a worker process runs before it is replaced (keeps a leaking library's memory flat).
MAX_TASKS_PER_CHILD = 200
#: Fewer letters than this are read in this process: starting the pool (about 1.5 s from the CLI,
#: whose main module imports openai) costs more than it saves.
MIN_POOL_LETTERS = 200


def default_workers() -> int:
    """All the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class BatchOutcome:
    """What became of one input of a batch: an ``Outcome`` and what the batch knows about it.

    A record made in a worker process arrives as a ``RecordRow`` (its JSON and the store's
    columns); ``record`` parses it only when asked, so a batch that writes JSON Lines and the
    store never parses it back.
    """

    __slots__ = ("_record", "error", "reused", "row", "sha256", "source")

    def __init__(
        self,
        source: str,
        record: LetterRecord | None = None,
        error: ImrExtractError | None = None,
        sha256: str | None = None,
        reused: bool = False,
        row: RecordRow | None = None,
    ) -> None:
        self.source = source
        self.error = error
        self.sha256 = sha256
        #: Served from the store: a result under the same key was already there.
        self.reused = reused
        self.row = row
        self._record = record

    @property
    def record(self) -> LetterRecord | None:
        if self._record is None and self.row is not None:
            self._record = LetterRecord.model_validate_json(self.row.record_json)
        return self._record

    @property
    def record_json(self) -> str | None:
        """The record as JSON, as made (a JSON Lines writer uses it as it is)."""
        return self.row.record_json if self.row is not None else None

    @property
    def ok(self) -> bool:
        return self._record is not None or self.row is not None

    def __repr__(self) -> str:
        what = f"error={self.error!r}" if self.error is not None else f"ok={self.ok}"
        return f"BatchOutcome({self.source!r}, {what}, reused={self.reused})"


class _Task(NamedTuple):
    position: int  # in the input (``index`` would shadow ``tuple.index``)
    path: str
    data: bytes | None  # standard input, read by the parent
    sha256: str | None


@dataclass(frozen=True)
class _Ready:
    """An input settled without a worker (reused from the store)."""

    position: int
    outcome: BatchOutcome


#: What a worker returns per letter: (record, its row, error). One of the first two is set on
#: success; the record object only when the work ran in this process.
_Result = tuple[LetterRecord | None, RecordRow | None, ImrExtractError | None]


# --------------------------------------------------------------------------- worker side


def _read(task: _Task, pdf_engine: str | None) -> Document:
    if task.data is not None:
        return read_bytes(task.data, "<stdin>", None, pdf_engine)
    return read_path(task.path, pdf_engine)


def _internal(path: str, exc: BaseException) -> InternalError:
    return InternalError(
        path, f"unexpected {type(exc).__name__}: {exc} (a bug in imr-extract; please report it)"
    )


def _guard(path: str, fn: Callable[[], Any]) -> tuple[Any, ImrExtractError | None]:
    """Run one letter's work; every exception but an interrupt becomes that letter's error."""
    try:
        return fn(), None
    except ImrExtractError as exc:
        return None, exc
    except Exception as exc:
        return None, _internal(path, exc)


def _extract_task(task: _Task, extractor: Extractor, pdf_engine: str | None) -> _Result:
    record, error = _guard(task.path, lambda: extractor(_read(task, pdf_engine)))
    return record, None, error


_worker: dict[str, Any] = {}


def _exit_with(parent: int) -> None:
    """Exit this worker as soon as the batch process ``parent`` is gone.

    A worker outlives a killed batch otherwise: it blocks for ever writing a result nobody reads,
    and holds the forkserver (and its resource tracker) alive with it.
    """
    try:
        fd = os.pidfd_open(parent)
    except (AttributeError, OSError):  # not Linux 5.3+: poll
        while True:
            time.sleep(1.0)
            try:
                os.kill(parent, 0)
            except ProcessLookupError:
                os._exit(1)
            except PermissionError:  # pragma: no cover - the pid now belongs to someone else
                os._exit(1)
    select.select([fd], [], [])  # readable once the process has exited
    os._exit(1)


def settle_heap() -> None:
    """Load what every letter needs, then keep the garbage collector off it.

    Each letter allocates thousands of short-lived objects, so the collector runs often, and
    each full collection walked the ~27,000 long-lived objects of the imported modules,
    compiled patterns and pydantic schemas again (about 4% of the rules' time). Frozen objects
    are never scanned. Called once per batch process and per worker.
    """
    layouts.detect("")  # loads the layout registry
    gc.collect()  # garbage first: a frozen cycle would never be freed
    gc.freeze()


def _init_worker(extractor: Extractor, pdf_engine: str | None, parent: int) -> None:
    _worker["extractor"] = extractor
    _worker["pdf_engine"] = pdf_engine
    threading.Thread(target=_exit_with, args=(parent,), name="watch-parent", daemon=True).start()
    settle_heap()


def _extract_chunk(tasks: list[_Task]) -> list[_Result]:
    out: list[_Result] = []
    for task in tasks:
        record, _, error = _extract_task(task, _worker["extractor"], _worker["pdf_engine"])
        # The record travels as its row (JSON and plain columns): cheaper to pickle than the
        # model (0.3 + 0.55 ms vs 0.9 + 1.5 ms for a five-item record), and the batch process
        # needs no parse to store and write it.
        out.append((None, RecordRow.of(record) if record is not None else None, error))
    return out


def _read_chunk(tasks: list[_Task]) -> list[tuple[Document | None, ImrExtractError | None]]:
    return [_guard(t.path, functools.partial(_read, t, _worker["pdf_engine"])) for t in tasks]


# --------------------------------------------------------------------------- the pool


class _Pool:
    """A process pool that is replaced when a worker dies; results keep their input order."""

    def __init__(self, workers: int, extractor: Extractor, pdf_engine: str | None) -> None:
        self.workers = workers
        self.initargs = (extractor, pdf_engine, os.getpid())
        self.generation = 0
        self.executor = self._new()

    def _new(self) -> ProcessPoolExecutor:
        ctx = multiprocessing.get_context("forkserver")
        # The server imports the main module once; each worker forked from it then skips the
        # re-import a spawned child does (1.4 s for the CLI, which imports openai).
        ctx.set_forkserver_preload(["__main__", "imr_extract.runner"])
        return ProcessPoolExecutor(
            self.workers,
            mp_context=ctx,
            initializer=_init_worker,
            initargs=self.initargs,
            max_tasks_per_child=MAX_TASKS_PER_CHILD,
        )

    def submit(self, fn: Callable[[list[_Task]], list[Any]], tasks: list[_Task]) -> Future[Any]:
        return self.executor.submit(fn, tasks)

    def _replace(self, generation: int) -> None:
        if generation == self.generation:  # not yet replaced since that future was submitted
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = self._new()
            self.generation += 1

    def results(
        self, fn: Callable[[list[_Task]], list[Any]], tasks: list[_Task], fut: Future[Any], gen: int
    ) -> list[Any]:
        """``fut``'s results; if its pool broke, the tasks again one by one to find the culprit."""
        try:
            return fut.result()
        except BrokenProcessPool:
            self._replace(gen)
        out: list[Any] = []
        for task in tasks:
            gen = self.generation
            try:
                out.extend(self.submit(fn, [task]).result())
            except BrokenProcessPool:
                self._replace(gen)
                crash = InternalError(
                    task.path, "the worker process died while reading this letter (a crash in "
                    "the PDF library or out of memory)"
                )  # fmt: skip
                out.append((None, None, crash) if fn is _extract_chunk else (None, crash))
        return out

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def _batched(items: Iterator[Any], n: int) -> Iterator[list[Any]]:
    while chunk := list(islice(items, n)):
        yield chunk


def _done(value: Any) -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_result(value)
    return fut


def _in_processes(
    pool: _Pool,
    fn: Callable[[list[_Task]], list[Any]],
    items: Iterator[_Task | _Ready],
    chunksize: int,
) -> Iterator[tuple[_Task | _Ready, Any]]:
    """(item, worker result) in input order, at most ``2 * workers`` chunks in flight."""
    pending: deque[tuple[list[_Task | _Ready], list[_Task], Future[Any], int]] = deque()
    max_pending = 2 * pool.workers

    def head() -> Iterator[tuple[_Task | _Ready, Any]]:
        chunk, tasks, fut, gen = pending.popleft()
        results = iter(pool.results(fn, tasks, fut, gen) if tasks else [])
        for item in chunk:
            yield item, None if isinstance(item, _Ready) else next(results)

    for chunk in _batched(items, chunksize):
        tasks = [item for item in chunk if isinstance(item, _Task)]
        fut = pool.submit(fn, tasks) if tasks else _done([])
        pending.append((chunk, tasks, fut, pool.generation))
        while pending and (len(pending) >= max_pending or pending[0][2].done()):
            yield from head()
    while pending:
        yield from head()


def _in_threads(
    executor: ThreadPoolExecutor,
    items: Iterator[tuple[_Task | _Ready, Any]],
    extractor: Extractor,
    window: int,
) -> Iterator[tuple[_Task | _Ready, _Result | None]]:
    """Run ``extractor`` on each read letter in ``executor``; results in input order."""
    pending: deque[tuple[_Task | _Ready, Future[_Result] | None]] = deque()

    def work(task: _Task, doc: Document) -> _Result:
        record, error = _guard(task.path, lambda: extractor(doc))
        return record, None, error

    for item, read in items:
        fut: Future[_Result] | None = None
        if isinstance(item, _Task):
            doc, error = read
            fut = (
                executor.submit(work, item, doc) if doc is not None else _done((None, None, error))
            )
        pending.append((item, fut))
        while pending and (len(pending) >= window or _settled(pending[0][1])):
            first, f = pending.popleft()
            yield first, f.result() if f is not None else None
    while pending:
        first, f = pending.popleft()
        yield first, f.result() if f is not None else None


def _settled(fut: Future[Any] | None) -> bool:
    return fut is None or fut.done()


# --------------------------------------------------------------------------- the batch


def hash_file(path: str, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _from_store(path: str, text: str) -> tuple[LetterRecord, str | None]:
    """A stored record (and its JSON while it is unchanged), renamed to ``path`` when it was
    stored for a copy under another name (or read from standard input)."""
    record = LetterRecord.model_validate_json(text)
    name, where = ("<stdin>", None) if path == STDIN else (Path(path).name, path)
    if (record.letter, record.source.path) == (name, where):
        return record, text
    source = record.source.model_copy(update={"path": where})
    return record.model_copy(update={"letter": name, "source": source}), None


@dataclass
class BatchRunner:
    """Runs one batch. ``run`` may be called once per instance.

    Args:
        extractor: ``Document -> LetterRecord`` (``extract_document`` for the rules; it must be
            picklable when ``workers > 1`` and ``concurrency`` is None).
        workers: processes (1: all in this process).
        concurrency: threads running ``extractor`` (for backends that call a model); None runs
            the extractor in the worker processes.
        store, run_id, key: where results are kept and skipped; all three or none.
        retry_model_errors: re-extract stored letters whose model call failed (rules kept).
    """

    extractor: Extractor = extract_document
    pdf_engine: str | None = None
    workers: int = 1
    concurrency: int | None = None
    chunksize: int = DEFAULT_CHUNKSIZE
    store: RunStore | None = None
    run_id: str | None = None
    key: ResultKey | None = None
    retry_model_errors: bool = False
    #: Batches known to be smaller than this run without a pool (see ``MIN_POOL_LETTERS``).
    min_pool_letters: int = MIN_POOL_LETTERS
    #: Letters per store commit (None: ``COMMIT_EVERY`` for the rules, 1 with a model).
    commit_every: int | None = None
    #: What each letter may use (pages, characters, items, seconds, memory, stdin bytes).
    limits: Limits = DEFAULT_LIMITS
    reused: int = 0

    def __post_init__(self) -> None:
        if self.store is not None and (self.run_id is None or self.key is None):
            raise ValueError("a store needs a run_id and a key")

    def _plan(self, paths: Iterable[str]) -> Iterator[_Task | _Ready]:
        """Hash each input and settle the ones the store already holds."""
        for position, path in enumerate(paths):
            data = sys.stdin.buffer.read() if path == STDIN else None
            sha: str | None = None
            if data is not None:
                sha = hashlib.sha256(data).hexdigest()
            elif self.store is not None:
                try:
                    sha = hash_file(path)
                except OSError:
                    sha = None  # the worker reports why it cannot be read
            if self.store is not None and self.key is not None and sha is not None:
                row = self.store.lookup(self.key.key(sha, path))
                if (
                    row is not None
                    and row.record is not None
                    and finished(row, self.retry_model_errors)
                ):
                    record, text = _from_store(path, row.record)
                    outcome = BatchOutcome(
                        path, record=record, sha256=sha, reused=True, row=RecordRow.of(record, text)
                    )
                    yield _Ready(position, outcome)
                    continue
            yield _Task(position, path, data, sha)

    def _results(
        self, items: Iterator[_Task | _Ready], total: int | None
    ) -> Generator[tuple[_Task | _Ready, _Result | None], None, None]:
        workers = self.workers
        if total is not None:  # no pool for a handful of letters
            workers = min(workers, max(1, math.ceil(total / self.chunksize)))
            if total < self.min_pool_letters:
                workers = 1
        pool = _Pool(workers, self.extractor, self.pdf_engine) if workers > 1 else None
        if pool is None:
            settle_heap()
        threads = (
            ThreadPoolExecutor(self.concurrency, thread_name_prefix="imr-extract")
            if self.concurrency is not None
            else None
        )
        try:
            if threads is None:
                if pool is None:
                    for item in items:
                        if isinstance(item, _Ready):
                            yield item, None
                        else:
                            yield item, _extract_task(item, self.extractor, self.pdf_engine)
                else:
                    yield from _in_processes(pool, _extract_chunk, items, self.chunksize)
                return
            if pool is None:
                read: Iterator[tuple[_Task | _Ready, Any]] = (
                    (item, None)
                    if isinstance(item, _Ready)
                    else (item, _guard(item.path, functools.partial(_read, item, self.pdf_engine)))
                    for item in items
                )
            else:
                read = _in_processes(pool, _read_chunk, items, self.chunksize)
            window = max(4 * (self.concurrency or 1), 16)
            yield from _in_threads(threads, read, self.extractor, window)
        finally:
            if pool is not None:
                pool.shutdown()
            if threads is not None:
                threads.shutdown(wait=False, cancel_futures=True)

    def run(
        self, inputs: Iterable[str | os.PathLike[str]], total: int | None = None
    ) -> Iterator[BatchOutcome]:
        """One outcome per letter under ``inputs``, in input order; each new result is in the
        store (committed) before it is yielded. ``total`` (the number of letters, if known)
        only keeps a pool from starting for a handful of letters."""
        results = self._results(self._plan(iter_paths(inputs)), total)
        store = self.store if self.key is not None and self.run_id is not None else None
        # The rules' results are committed in groups (a commit costs more than the rest of a
        # letter's write); a model's, which take seconds each, one by one.
        group = self.commit_every or (1 if self.concurrency is not None else COMMIT_EVERY)
        held: list[BatchOutcome] = []  # waiting for a commit (their own or an earlier letter's)
        since = 0.0
        try:
            for item, result in results:
                if isinstance(item, _Ready):
                    self.reused += 1
                    outcome = item.outcome
                else:
                    assert result is not None
                    outcome = self._outcome(item, result)
                if store is not None and not isinstance(item, _Ready):
                    if not held:
                        store.begin_group()
                        since = time.monotonic()
                    self._write(store, outcome)
                elif not held:  # nothing to commit before it
                    yield outcome
                    continue
                # A held record would cost more than parsing it back when asked: 64 live models
                # outgrow the CPU caches and get scanned by the collector.
                if outcome.row is not None:
                    outcome._record = None
                held.append(outcome)
                assert store is not None  # only a written letter starts a group
                if len(held) >= group or time.monotonic() - since >= COMMIT_INTERVAL_S:
                    store.commit_group()
                    yield from held
                    held.clear()
        finally:
            # Results written before an error, before the caller stopped, or at the end of the
            # input are kept (and, at the end, yielded).
            if held and store is not None:
                store.commit_group()
            results.close()  # stops the pools at once when the caller stops early
        yield from held

    def _outcome(self, item: _Task, result: _Result) -> BatchOutcome:
        record, row, error = result
        if record is not None and row is None:
            row = RecordRow.of(record)  # the JSON is made once, for store and output
        # A record's sha256 is of the bytes its worker read (the file may have changed since it
        # was hashed here).
        sha = row.sha256 if row is not None else item.sha256
        return BatchOutcome(item.path, record=record, error=error, sha256=sha, row=row)

    def _write(self, store: RunStore, outcome: BatchOutcome) -> None:
        assert self.key is not None and self.run_id is not None
        store.write(
            self.key,
            self.run_id,
            outcome.source,
            outcome.sha256,
            row=outcome.row,
            error=outcome.error,
            retry_model_errors=self.retry_model_errors,
        )


def run_batch(
    inputs: Iterable[str | os.PathLike[str]], extractor: Extractor = extract_document, **kw: Any
) -> Iterator[BatchOutcome]:
    """``BatchRunner(extractor, **kw).run(inputs)``."""
    total = kw.pop("total", None)
    return BatchRunner(extractor, **kw).run(inputs, total)


# --------------------------------------------------------------------------- rate limits


class TokenBucket:
    """``rate`` units per minute, at most ``capacity`` saved up.

    The level may go below zero: a charge settled after the fact (a retry, an answer longer than
    estimated) is a debt the next acquisitions wait out.
    """

    def __init__(
        self,
        per_minute: float,
        capacity: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_minute <= 0:
            raise ValueError("a rate must be positive")
        self.rate = per_minute / 60.0  # per second
        #: Default burst: one second's worth (at least one unit), as providers enforce per-minute
        #: limits over shorter windows.
        self.capacity = capacity if capacity is not None else max(1.0, self.rate)
        self.level = self.capacity
        self.clock = clock
        self.stamp = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` may be taken (an amount above capacity needs a full bucket)."""
        self._refill()
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self._refill()
        self.level -= amount

    def give(self, amount: float) -> None:
        self._refill()
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Requests/minute and tokens/minute, shared by threads. Either limit may be None."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.requests = TokenBucket(rpm, clock=clock) if rpm else None
        self.tokens = TokenBucket(tpm, clock=clock) if tpm else None
        self.sleep = sleep
        self.lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self, requests: int = 1, tokens: int = 0) -> None:
        """Block until both buckets allow it, then take it from both."""
        while True:
            with self.lock:
                wait = max(
                    self.requests.wait_for(requests) if self.requests else 0.0,
                    self.tokens.wait_for(tokens) if self.tokens else 0.0,
                )
                if wait <= 0:
                    if self.requests:
                        self.requests.take(requests)
                    if self.tokens:
                        self.tokens.take(tokens)
                    return
                self.waited_s += wait
            self.sleep(wait)

    def settle(self, reserved: tuple[int, int], used: tuple[int, int]) -> None:
        """Correct an acquisition by what was really spent: refund the rest, or owe the excess
        (retries and re-asks make more requests; answers differ from the estimate)."""
        with self.lock:
            for bucket, before, after in (
                (self.requests, reserved[0], used[0]),
                (self.tokens, reserved[1], used[1]),
            ):
                if bucket is None or before == after:
                    continue
                if after < before:
                    bucket.give(before - after)
                else:
                    bucket.take(after - before)


@functools.cache
def _rate_limited_llm() -> type:
    # Built on first use: worker processes import this module and must not pay for openai.
    from .llm.extract import LLMExtractor, LLMRun

    class RateLimitedLLM(LLMExtractor):
        """An ``LLMExtractor`` whose every model request waits for a shared ``RateLimiter``.

        Before each part of a letter is sent, one request and its estimated tokens (the
        prompt's characters / 4 plus ``max_tokens``) are taken; afterwards the limiter is
        settled with what the part really cost (transport retries and re-asks included). A
        cached answer takes nothing. Works under ``HybridExtractor`` too (same methods).
        """

        def __init__(self, config: Any, limiter: RateLimiter, client: Any = None) -> None:
            super().__init__(config, client)
            self.limiter = limiter

        def estimate_tokens(self, text: str, part: int, parts: int) -> int:
            chars = sum(len(m["content"]) for m in self.messages(text, part, parts))
            return math.ceil(chars / 4) + self.config.max_tokens

        def _answer(
            self, doc: Document, region: tuple[int, int], part: int, parts: int, run: LLMRun
        ) -> Any:
            if self.cache is not None and self.cache.get(self._key(doc, region)) is not None:
                return super()._answer(doc, region, part, parts, run)
            reserved = (1, self.estimate_tokens(doc.text[region[0] : region[1]], part, parts))
            self.limiter.acquire(*reserved)
            before = run.usage
            try:
                return super()._answer(doc, region, part, parts, run)
            finally:
                used = (
                    run.usage.requests - before.requests,
                    run.usage.total_tokens - before.total_tokens,
                )
                self.limiter.settle(reserved, used)

    return RateLimitedLLM


def __getattr__(name: str) -> Any:
    if name == "RateLimitedLLM":
        return _rate_limited_llm()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
