"""The batch runner: letters in, outcomes out, streamed in input order with flat memory.

``run_batch`` yields one ``BatchOutcome`` per input, **in input order** (so an output file is the
same whatever ``workers`` is, and equals a one-process run's), holding at most a bounded window
of letters in flight; nothing grows with the batch.

Two ways to spread the work:

* ``concurrency=None`` (the rules): each worker process reads *and* extracts a chunk of letters
  (``workers`` processes, ``chunksize`` letters per task). The record comes back as JSON.
* ``concurrency=N`` (backends that call a model): worker processes read the letters (PDF text
  extraction is the CPU-heavy part) and the extractor runs in this process through a bounded
  ``ModelQueue`` (``N`` threads, so up to ``N`` model calls are in flight at once, and a bounded
  number waiting: past it a batch waits, a service is refused). A service gives one queue to all
  its runs. A ``RateLimiter`` shared by the threads keeps them under requests/minute and
  tokens/minute (see ``RateLimitedLLM``).

Inputs are paths (files, directories, ``-``) or ``Letter`` s: bytes under a name, with no file
(a service's uploads). A run starts its own ``LetterPool`` of workers and stops it at the end,
unless it is given a long-lived one (``LetterPool``, or ``LetterPools`` lent to runs in many
threads), which it leaves running.

Isolation (``isolate=True``, the default): every letter is read (and, with the rules, extracted)
in a worker process, whatever the batch size; ``workers`` is how many. A worker answers letter
by letter, so when one dies the batch knows the letter it was on: a crash or an abort in a PDF
library costs that letter alone (``worker-crashed``), so does running out of the worker's memory
allowance (``Limits.worker_memory``, an ``RLIMIT_AS`` set in each worker: a ``MemoryError``, or a
death near the allowance, is ``out-of-memory``) and running past ``Limits.letter_seconds`` (the
worker is killed: ``timeout``). The worker is replaced, the letters queued behind it go on, and
the run finishes. A resumed run tries such letters again, as it does every error row, and each
again costs only itself. Model calls (threads in this process) cannot be killed: their deadline
is the model client's. ``isolate=False`` reads a batch of one worker, or under
``min_pool_letters``, in this process (faster to start by the forkserver's start, ~1 s; but a
crash there ends the batch, and no time or memory limit holds).

Worker processes are forked from a ``forkserver`` (never from this possibly multi-threaded
process) that has loaded the rules once, so a worker starts in milliseconds; each is replaced
after ``MAX_TASKS_PER_CHILD`` chunks. A batch process that dies (even by SIGKILL) takes its
workers with it. A script whose extractor is defined in its main module must guard its entry
point with ``if __name__ == "__main__":`` (the forkserver imports that module).

With a ``RunStore``, each letter is hashed first; one whose result already stands under the same
key is not extracted again but served from the store (``reused``), and each new result is
committed before it is yielded. Each letter's write is all or nothing (a savepoint); the rules'
letters are committed in groups of up to ``COMMIT_EVERY`` (or ``COMMIT_INTERVAL_S``), a
model's one by one.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import inspect
import itertools
import math
import multiprocessing
import os
import queue
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any, Literal, NamedTuple

from . import layouts
from .errors import (
    ImrExtractError,
    InternalError,
    LetterTimeoutError,
    OutOfMemoryError,
    WorkerCrashedError,
)
from .extract import Extractor, check_items, extract_document
from .ingest import STDIN, Document, iter_paths, read_bytes, read_path, read_stdin
from .limits import DEFAULT_LIMITS, Limits
from .names import escape_name
from .schema import LetterRecord
from .store import RecordRow, ResultKey, RunStore, finished, now_iso

#: Letters per task sent to a worker process (amortises the inter-process round trip).
DEFAULT_CHUNKSIZE = 8
#: Letters written to the store per commit, at most, and the longest a written letter waits for
#: its commit (and so to be yielded).
COMMIT_EVERY = 64
COMMIT_INTERVAL_S = 0.25
#: Tasks a worker process runs before it is replaced (keeps a leaking library's memory flat).
MAX_TASKS_PER_CHILD = 200
#: Without isolation, fewer letters than this are read in this process: starting the pool (about
#: 1 s, the forkserver's imports) costs more than it saves.
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


@dataclass(frozen=True)
class Letter:
    """A letter given as its bytes, under the name it goes by (a service's upload): no file.

    Its record's ``letter`` is ``name`` and its ``source.path`` is None, whether it is
    extracted now or served from the store; the store keeps ``name`` as its path.
    """

    name: str
    data: bytes


#: What ``BatchRunner.run`` takes: paths (files, directories, ``-``) and letters as bytes.
Input = str | os.PathLike[str] | Letter


class _Task(NamedTuple):
    position: int  # in the input (``index`` would shadow ``tuple.index``)
    path: str
    data: bytes | None  # standard input read by the parent, or a ``Letter``'s bytes
    sha256: str | None


@dataclass(frozen=True)
class _Ready:
    """An input settled without a worker: reused from the store, or (``fresh``) refused
    before any worker saw it (standard input past its cap), written to the store as new."""

    position: int
    outcome: BatchOutcome
    fresh: bool = False


def _read_stdin(limits: Limits) -> bytes:
    """Standard input, streamed and stopped at ``limits.max_stdin_bytes``."""
    return read_stdin(limits=limits)


#: What a worker returns per letter: (record, its row, error). One of the first two is set on
#: success; the record object only when the work ran in this process.
_Result = tuple[LetterRecord | None, RecordRow | None, ImrExtractError | None]


# --------------------------------------------------------------------------- worker side


@functools.cache
def _takes_limits(fn: Callable[..., Any]) -> bool:
    """Whether an ingest reader takes ``limits=`` (it does once ingest enforces pages/text)."""
    return "limits" in inspect.signature(fn).parameters


def _read(task: _Task, pdf_engine: str | None, limits: Limits = DEFAULT_LIMITS) -> Document:
    if task.data is not None:
        # Bytes from standard input, or sent by the service under the letter's own name.
        name = "<stdin>" if task.path == STDIN else task.path
        if _takes_limits(read_bytes):
            return read_bytes(task.data, name, None, pdf_engine, limits=limits)
        return read_bytes(task.data, name, None, pdf_engine)
    if _takes_limits(read_path):
        return read_path(task.path, pdf_engine, limits=limits)
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
    except MemoryError:
        return None, OutOfMemoryError(
            path, "ran out of memory reading or extracting this letter (--worker-memory)"
        )
    except Exception as exc:
        return None, _internal(path, exc)


def _extract_doc(path: str, doc: Document, extractor: Extractor, limits: Limits) -> LetterRecord:
    record = extractor(doc)
    check_items(path, len(record.items), limits)  # whatever made the record
    return record


def _extract(
    task: _Task, extractor: Extractor, pdf_engine: str | None, limits: Limits
) -> LetterRecord:
    return _extract_doc(task.path, _read(task, pdf_engine, limits), extractor, limits)


def _extract_task(
    task: _Task, extractor: Extractor, pdf_engine: str | None, limits: Limits = DEFAULT_LIMITS
) -> _Result:
    record, error = _guard(task.path, lambda: _extract(task, extractor, pdf_engine, limits))
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


def memory_limit(nbytes: int) -> int:
    """The address space a worker gets for an allowance of ``nbytes``: no more than the hard
    limit this process already has (0: none can be set here)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return 0
    limit = getattr(resource, "RLIMIT_AS", None)
    if limit is None or nbytes <= 0:  # pragma: no cover - no such limit here
        return 0
    hard = resource.getrlimit(limit)[1]
    return nbytes if hard == resource.RLIM_INFINITY else min(nbytes, hard)


def set_memory_limit(nbytes: int) -> int:
    """Cap this process's address space (``RLIMIT_AS``) at ``memory_limit(nbytes)``, and return
    that. Past it, Python raises ``MemoryError`` and pdfium aborts the process.

    ``RLIMIT_AS`` rather than ``RLIMIT_DATA``: both stop a decompression bomb in pypdfium2 here
    (pdfium aborts either way), but ``RLIMIT_DATA`` counts mappings only since Linux 4.7. A
    worker, with its threads, holds about 120 MB of address space before it reads a letter.
    """
    cap = memory_limit(nbytes)
    if cap:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (cap, resource.getrlimit(resource.RLIMIT_AS)[1]))
    return cap


def _init_worker(
    extractor: Extractor | None, pdf_engine: str | None, parent: int, limits: Limits
) -> None:
    _worker["extractor"] = extractor
    _worker["pdf_engine"] = pdf_engine
    _worker["limits"] = limits
    # Ctrl-C reaches the whole process group: the batch process stops its workers itself, and
    # a worker that died of it would be charged to its letter as a crash.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_exit_with, args=(parent,), name="watch-parent", daemon=True).start()
    settle_heap()
    if limits.worker_memory:
        set_memory_limit(limits.worker_memory)


def _extract_one(task: _Task) -> _Result:
    record, _, error = _extract_task(
        task, _worker["extractor"], _worker["pdf_engine"], _worker["limits"]
    )
    # The record travels as its row (JSON and plain columns): cheaper to pickle than the
    # model (0.3 + 0.55 ms vs 0.9 + 1.5 ms for a five-item record), and the batch process
    # needs no parse to store and write it.
    return None, RecordRow.of(record) if record is not None else None, error


def _read_one(task: _Task) -> tuple[Document | None, ImrExtractError | None]:
    return _guard(
        task.path, functools.partial(_read, task, _worker["pdf_engine"], _worker["limits"])
    )


#: What a worker can be asked to do with a letter: read it, or read and extract it.
_WORK: dict[str, Callable[[_Task], Any]] = {"extract": _extract_one, "read": _read_one}


def _serve(
    conn: Connection,
    extractor: Extractor | None,
    pdf_engine: str | None,
    parent: int,
    limits: Limits,
) -> None:
    """A worker process: receive chunks of letters, send back one result per letter as each
    is done (so the batch process always knows which letter a worker is on), until told to
    stop (``None``) or the batch process is gone."""
    _init_worker(extractor, pdf_engine, parent, limits)
    try:
        conn.send("ready")  # a letter's clock starts now, not while the worker starts
    except OSError:  # the batch is over already
        os._exit(0)
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            os._exit(0)
        if job is None:
            os._exit(0)
        kind, tasks = job
        work = _WORK[kind]
        for task in tasks:
            result = work(task)
            try:
                conn.send(result)
            except (EOFError, OSError):
                os._exit(0)
            except Exception as exc:  # a result that does not pickle: that letter's bug
                conn.send(_failed(kind, _internal(task.path, exc)))


def _failed(kind: str, error: ImrExtractError) -> Any:
    """The result of a letter that failed, in the shape ``kind`` of work returns."""
    return (None, None, error) if kind == "extract" else (None, error)


# --------------------------------------------------------------------------- the pool

#: Starting a worker (the forkserver's start, ``_preparation``) is not thread-safe: one at a
#: time, whichever thread's pool starts it.
_SPAWN_LOCK = threading.Lock()

#: How often a busy worker's address space is sampled (to name a death near its memory limit).
SAMPLE_S = 0.05
#: Workers that die before they can take a letter, in a row, before the batch gives up.
MAX_FAILED_STARTS = 3
#: A worker killed near this share of its memory allowance was stopped by it.
NEAR_LIMIT = 0.75
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _address_space(pid: int) -> int:
    """Bytes of address space ``pid`` holds now (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[0]) * _PAGE
    except (OSError, ValueError, IndexError):
        return 0


def _how_it_ended(exitcode: int | None) -> str:
    if exitcode is None:
        return "it did not answer"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit status {exitcode}"


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def _module_of(extractor: Extractor | None) -> str | None:
    """The module a worker imports to unpickle ``extractor`` (None for this package's)."""
    fn: Any = extractor
    while isinstance(fn, functools.partial):
        fn = fn.func
    name = getattr(fn, "__module__", None) or type(fn).__module__
    if extractor is None or name == "builtins" or name.startswith("imr_extract"):
        return None
    return name


@contextlib.contextmanager
def _preparation(main: bool) -> Iterator[None]:
    """While a process starts: with ``main``, the main module goes with it (and to the
    forkserver, whose ``main_path`` CPython 3.11-3.13 never fill in: without it the server never
    preloads ``__main__`` and every worker imported it again); without, it is left out, so a
    worker never runs the main module (the CLI's, say) at all."""
    from multiprocessing import spawn

    real = spawn.get_preparation_data

    def prepared(name: str) -> dict[str, Any]:
        data = real(name)
        if not main:
            data.pop("init_main_from_path", None)
            data.pop("init_main_from_name", None)
        elif "init_main_from_path" in data:
            data.setdefault("main_path", data["init_main_from_path"])
        return data

    spawn.get_preparation_data = prepared
    try:
        yield
    finally:
        spawn.get_preparation_data = real


def _start_forkserver(ctx: Any, module: str | None) -> None:
    """Start the forkserver (once per process) with what every worker needs loaded, and the
    extractor's ``module`` (the main module's too when it is that), so that each worker forked
    from it, and each that replaces one a letter killed, starts in milliseconds.

    The server ignores the ``sys_path`` it is given: it gets this process's through PYTHONPATH,
    so that it finds the extractor's module (and the main module's own imports).
    """
    from multiprocessing import forkserver

    preload = ["imr_extract._preload"]
    if module is not None:
        preload.insert(0, module)
    ctx.set_forkserver_preload(preload)
    env = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    try:
        with _preparation(main=module == "__main__"):
            forkserver.ensure_running()
    finally:
        if env is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = env


class _Slot:
    """One letter given to the pool, and its result once it has one."""

    __slots__ = ("done", "result", "task")

    def __init__(self, task: _Task) -> None:
        self.task = task
        self.result: Any = None
        self.done = False


class _Worker:
    """One worker process, its end of the pipe, and the letters sent to it, oldest first (the
    first is the one it is reading)."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.queued: deque[_Slot] = deque()
        self.started = time.monotonic()  # when its current letter began
        self.letters = 0
        self.peak = 0  # address space sampled while on its current letter
        self.sampled = 0.0
        self.timed_out = False
        self.ready = False


class LetterPool:
    """Worker processes, each reading (and extracting) one letter at a time and answering per
    letter, so the letter a worker is on when it dies is known: that letter alone is charged
    (``worker-crashed``, ``out-of-memory``, or ``timeout`` when it ran past
    ``limits.letter_seconds`` and was killed), the worker is replaced, and the letters queued
    behind it go to the next worker. Results keep their input order.

    A ``BatchRunner`` starts one per run and stops it at the end; a long-lived caller (the
    service) makes its own, gives it to each ``BatchRunner(pool=...)`` and keeps its warm
    workers between runs (``warm`` starts them; ``shutdown`` stops them). A pool may be made and
    started from any thread, but serves one run at a time. ``extractor`` is what its workers
    run for a ``BatchRunner`` whose extractor runs in the workers (the rules); a runner whose
    extractor calls a model only has its workers read letters.
    """

    def __init__(
        self,
        workers: int,
        extractor: Extractor | None,
        pdf_engine: str | None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.workers = workers
        self.limits = limits
        self.args = (extractor, pdf_engine, os.getpid(), limits)
        self.ctx = multiprocessing.get_context("forkserver")
        self.module = _module_of(extractor)
        self.main = self.module == "__main__"  # the workers need the main module
        self.started = False
        #: The workers; None until a letter needs one (a batch the store serves whole starts
        #: none), and where one died.
        self.procs: list[_Worker | None] = [None] * workers
        self.todo: deque[list[_Slot]] = deque()
        #: Workers replaced after a letter killed them (or ran past its time).
        self.replaced = 0
        self.failed_starts = 0  # in a row
        self.chunksize = DEFAULT_CHUNKSIZE

    def _spawn(self) -> _Worker:
        with _SPAWN_LOCK:
            return self._start_worker()

    def _start_worker(self) -> _Worker:
        if not self.started:
            _start_forkserver(self.ctx, self.module)
            self.started = True
        mine, theirs = self.ctx.Pipe()
        process = self.ctx.Process(
            target=_serve, args=(theirs, *self.args), name="imr-extract-worker", daemon=True
        )
        try:
            with _preparation(self.main):
                process.start()
        except (EOFError, OSError) as exc:
            raise RuntimeError(
                f"cannot start a worker process ({exc}): the forkserver died; if the batch "
                "runs from a script, its module must import without side effects "
                "(guard the batch with 'if __name__ == \"__main__\":')"
            ) from exc
        finally:
            theirs.close()
        return _Worker(process, mine)

    def map(
        self, kind: str, items: Iterator[_Task | _Ready], chunksize: int
    ) -> Iterator[tuple[_Task | _Ready, Any]]:
        """(item, result) in input order; at most two chunks per worker ahead of the output."""
        self.chunksize = chunksize
        order: deque[tuple[_Task | _Ready, _Slot | None]] = deque()
        window = 2 * self.workers * chunksize
        exhausted = False
        while True:
            while not exhausted and len(order) < window:
                chunk = list(islice(items, chunksize))
                if not chunk:
                    exhausted = True
                    break
                slots = []
                for item in chunk:
                    slot = _Slot(item) if isinstance(item, _Task) else None
                    order.append((item, slot))
                    if slot is not None:
                        slots.append(slot)
                if slots:
                    self.todo.append(slots)
            self._dispatch(kind)
            if order and (order[0][1] is None or order[0][1].done):
                while order and (order[0][1] is None or order[0][1].done):
                    item, head = order.popleft()
                    yield item, head.result if head is not None else None
                continue
            if not order:
                return
            self._wait(kind)

    def _dispatch(self, kind: str) -> None:
        for i, w in enumerate(self.procs):
            if not self.todo:
                return
            if w is None:
                w = self.procs[i] = self._spawn()
            elif not w.queued and w.letters >= MAX_TASKS_PER_CHILD * self.chunksize:
                self._retire(w)  # keeps a leaking library's memory flat
                w = self.procs[i] = self._spawn()
            while self.todo and len(w.queued) <= self.chunksize:
                if w.queued and any(slot.task.data is not None for slot in self.todo[0]):
                    break  # standard input's bytes go to an idle worker: a send never blocks
                slots = self.todo.popleft()
                if not w.queued and w.ready:
                    w.started, w.peak = time.monotonic(), 0
                w.queued.extend(slots)
                try:
                    w.conn.send((kind, [slot.task for slot in slots]))
                except OSError:  # dead already: found by the next wait
                    break

    def _receive(self, w: _Worker) -> None:
        """Take every result ``w`` has sent; EOFError once it is gone."""
        while w.conn.poll():
            result = w.conn.recv()
            if not w.ready:  # its greeting: started
                w.ready = True
                self.failed_starts = 0
                w.started = time.monotonic()
                continue
            slot = w.queued.popleft()
            slot.result, slot.done = result, True
            w.letters += 1
            w.started, w.peak = time.monotonic(), 0

    def _wait(self, kind: str) -> None:
        busy = [w for w in self.procs if w is not None and w.queued]
        if not busy:
            return
        seconds = self.limits.letter_seconds
        timeout: float | None = SAMPLE_S if self.limits.worker_memory else None
        timed = [w for w in busy if w.ready]
        if seconds and timed:
            now = time.monotonic()
            left = max(0.0, min(w.started + seconds - now for w in timed))
            timeout = left if timeout is None else min(timeout, left)
        handles: list[Any] = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(wait(handles, timeout))
        now = time.monotonic()
        for w in busy:
            gone = w.process.sentinel in ready
            if w.conn in ready or gone:
                try:
                    self._receive(w)
                except (EOFError, OSError):
                    gone = True
            if not gone and w.queued and w.ready and seconds and now - w.started > seconds:
                w.timed_out = True
                w.process.kill()
                gone = True
            if gone:
                self._bury(w, kind)
            elif w.queued and self.limits.worker_memory and now - w.sampled >= SAMPLE_S:
                w.peak = max(w.peak, _address_space(w.process.pid))
                w.sampled = now

    def _bury(self, w: _Worker, kind: str) -> None:
        """``w`` is dead: charge the letter it was on, requeue the rest, start another."""
        with contextlib.suppress(EOFError, OSError):
            self._receive(w)  # results sent before it died
        w.process.join(5)
        w.conn.close()
        if not w.ready:  # died starting: no letter's fault
            self.failed_starts += 1
            if self.failed_starts >= MAX_FAILED_STARTS:
                raise RuntimeError(
                    f"worker processes die as they start ({_how_it_ended(w.process.exitcode)}); "
                    "a script that runs a batch must guard its entry point with "
                    "'if __name__ == \"__main__\":'"
                )
            if w.queued:
                self.todo.appendleft(list(w.queued))
        elif w.queued:
            culprit = w.queued.popleft()
            culprit.result, culprit.done = _failed(kind, self._charge(w, culprit.task)), True
            if w.queued:
                self.todo.appendleft(list(w.queued))
        self.procs[self.procs.index(w)] = None  # another starts when a letter needs it
        self.replaced += 1

    def _charge(self, w: _Worker, task: _Task) -> ImrExtractError:
        how = _how_it_ended(w.process.exitcode)
        if w.timed_out:
            return LetterTimeoutError(
                task.path,
                f"still being read after {self.limits.letter_seconds:g} s, the limit per letter "
                "(--letter-timeout): its worker was stopped",
            )
        memory = memory_limit(self.limits.worker_memory)
        if memory and w.peak >= NEAR_LIMIT * memory:
            return OutOfMemoryError(
                task.path,
                f"the worker reading this letter died ({how}) at {_mib(w.peak)} of its "
                f"{_mib(memory)} memory allowance (--worker-memory)",
            )
        return WorkerCrashedError(
            task.path,
            f"the worker process reading this letter died ({how}): a crash in the PDF library, "
            "or a kill from outside (the system's out-of-memory killer sends SIGKILL)",
        )

    def _retire(self, w: _Worker) -> None:
        with contextlib.suppress(OSError):
            w.conn.send(None)
        w.conn.close()

    def warm(self) -> None:
        """Start every worker now (the forkserver first), not when the first letter comes."""
        for i, w in enumerate(self.procs):
            if w is None:
                self.procs[i] = self._spawn()

    def reset(self) -> None:
        """Drop the letters in hand (a run stopped early): a busy worker is killed, and another
        starts when a letter needs it; idle ones stay."""
        self.todo.clear()
        for i, w in enumerate(self.procs):
            if w is not None and w.queued:
                w.process.kill()
                w.process.join(1)
                w.conn.close()
                self.procs[i] = None

    def shutdown(self) -> None:
        """Stop every worker now: a busy one is killed (the caller stopped early)."""
        alive = [w for w in self.procs if w is not None]
        for w in alive:
            if w.queued:
                w.process.kill()
            self._retire(w)
        for w in alive:
            w.process.join(1)
        self.procs = []


class LetterPools:
    """Warm letter workers for a long-lived caller whose runs come from many threads at once
    (the service): ``workers`` one-worker ``LetterPool`` s, each kept between runs and lent to
    one run at a time. A run given this (``BatchRunner(pool=...)``) borrows a worker only once
    it has a letter to read (one the store serves takes none), waiting for a free one."""

    def __init__(
        self,
        workers: int,
        extractor: Extractor | None,
        pdf_engine: str | None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.pools = [LetterPool(1, extractor, pdf_engine, limits) for _ in range(workers)]
        self._free: queue.SimpleQueue[LetterPool] = queue.SimpleQueue()
        for pool in self.pools:
            self._free.put(pool)

    def warm(self) -> None:
        """Start every worker now (the forkserver first), not when the first letter comes."""
        for pool in self.pools:
            pool.warm()

    @contextlib.contextmanager
    def lend(self) -> Iterator[LetterPool]:
        """A free pool, for one run (waits for one)."""
        pool = self._free.get()
        try:
            yield pool
        finally:
            pool.reset()  # a run stopped early leaves none of its letters behind
            self._free.put(pool)

    def map(
        self, kind: str, items: Iterator[_Task | _Ready], chunksize: int
    ) -> Iterator[tuple[_Task | _Ready, Any]]:
        """As ``LetterPool.map``, in a pool borrowed at the first letter to read."""
        for item in items:
            if isinstance(item, _Ready):
                yield item, None
                continue
            with self.lend() as pool:
                yield from pool.map(kind, itertools.chain([item], items), chunksize)
            return

    def read(self, letter: Letter) -> Document:
        """``letter`` read in a worker (its limits held there).

        Raises:
            ImrExtractError: it cannot be read, or is past a limit.
        """
        task = _Task(0, letter.name, letter.data, None)
        with self.lend() as pool:
            ((_, (doc, error)),) = list(pool.map("read", iter([task]), 1))
        if doc is None:
            assert error is not None
            raise error
        return doc

    def shutdown(self) -> None:
        for pool in self.pools:
            pool.shutdown()


def _done(value: Any) -> Future[Any]:
    fut: Future[Any] = Future()
    fut.set_result(value)
    return fut


class QueueFullError(RuntimeError):
    """A bounded queue is full and the caller would not wait (the service answers ``busy``,
    503 with ``Retry-After``); nothing was started."""

    def __init__(self, in_hand: int, retry_after_s: int = 2) -> None:
        super().__init__(f"{in_hand} letters are in hand already: try again in a moment")
        self.in_hand = in_hand
        self.retry_after_s = retry_after_s


class Admission:
    """At most ``running + waiting`` things in hand at once: ``enter`` past that waits for one to
    leave (backpressure) or, with ``wait=False``, raises ``QueueFullError``. Thread-safe."""

    def __init__(self, running: int, waiting: int) -> None:
        if running < 1 or waiting < 0:
            raise ValueError("running must be at least 1, waiting at least 0")
        self.capacity = running + waiting
        self.in_hand = 0
        self._cond = threading.Condition()

    def enter(self, *, wait: bool = True) -> None:
        with self._cond:
            if self.in_hand >= self.capacity and not wait:
                raise QueueFullError(self.in_hand)
            while self.in_hand >= self.capacity:
                self._cond.wait()
            self.in_hand += 1

    def leave(self) -> None:
        with self._cond:
            self.in_hand -= 1
            self._cond.notify()

    @contextlib.contextmanager
    def admitted(self, *, wait: bool = True) -> Iterator[None]:
        self.enter(wait=wait)
        try:
            yield
        finally:
            self.leave()


class ModelQueue:
    """The bounded queue every model extraction goes through: ``concurrency`` run at once (each
    in a thread of this process: a model call waits on the network), ``max_waiting`` more may
    wait for a thread; past that a submission waits (the batch path: backpressure) or is
    refused with ``QueueFullError`` (the service: 503 ``busy``).

    A ``BatchRunner`` with a model makes one of its own unless it is given one; a service makes
    one per process and gives it to every run, so all its requests and jobs share it.
    """

    def __init__(self, concurrency: int, max_waiting: int | None = None) -> None:
        self.concurrency = concurrency
        self.max_waiting = 3 * concurrency if max_waiting is None else max_waiting
        self.admission = Admission(concurrency, self.max_waiting)
        self._threads = ThreadPoolExecutor(concurrency, thread_name_prefix="imr-model")

    @property
    def in_hand(self) -> int:
        """Extractions running or waiting now."""
        return self.admission.in_hand

    def submit(self, fn: Callable[..., Any], /, *args: Any, wait: bool = True) -> Future[Any]:
        """``fn(*args)`` in one of the queue's threads, once there is room.

        Raises:
            QueueFullError: the queue is full and ``wait`` is False.
        """
        self.admission.enter(wait=wait)
        try:
            fut = self._threads.submit(fn, *args)
        except BaseException:
            self.admission.leave()
            raise
        fut.add_done_callback(lambda _: self.admission.leave())
        return fut

    def shutdown(self) -> None:
        """Stop taking work; what waits is cancelled, what runs ends on its own."""
        self._threads.shutdown(wait=False, cancel_futures=True)


def _in_threads(
    queue: ModelQueue,
    items: Iterator[tuple[_Task | _Ready, Any]],
    extractor: Extractor,
    window: int,
    limits: Limits = DEFAULT_LIMITS,
    wait: bool = True,
) -> Iterator[tuple[_Task | _Ready, _Result | None]]:
    """Run ``extractor`` on each read letter through ``queue``; results in input order, at
    most ``window`` letters ahead of the output."""
    pending: deque[tuple[_Task | _Ready, Future[_Result] | None]] = deque()

    def work(task: _Task, doc: Document) -> _Result:
        record, error = _guard(task.path, lambda: _extract_doc(task.path, doc, extractor, limits))
        return record, None, error

    try:
        for item, read in items:
            fut: Future[_Result] | None = None
            if isinstance(item, _Task):
                doc, error = read
                fut = (
                    queue.submit(work, item, doc, wait=wait)
                    if doc is not None
                    else _done((None, None, error))
                )
            pending.append((item, fut))
            while pending and (len(pending) >= window or _settled(pending[0][1])):
                first, f = pending.popleft()
                yield first, f.result() if f is not None else None
        while pending:
            first, f = pending.popleft()
            yield first, f.result() if f is not None else None
    finally:
        for _, f in pending:  # the caller stopped early: what has not started never will
            if f is not None:
                f.cancel()
        # now, not when a traceback that holds it is freed: a borrowed pool goes back at once
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _settled(fut: Future[Any] | None) -> bool:
    return fut is None or fut.done()


# --------------------------------------------------------------------------- the batch


def hash_file(path: str, block: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def _from_store(path: str, text: str, given: bool = False) -> tuple[LetterRecord, str | None]:
    """A stored record (and its JSON while it is unchanged), renamed to ``path`` when it was
    stored for a copy under another name (or read from standard input; ``given``: a
    ``Letter``'s bytes, named ``path``, with no path)."""
    record = LetterRecord.model_validate_json(text)
    if path == STDIN:
        name, where = "<stdin>", None
    else:
        name, where = (path, None) if given else (Path(path).name, path)
    if (record.letter, record.source.path) == (name, where):
        return record, text
    source = record.source.model_copy(update={"path": where})
    return record.model_copy(update={"letter": name, "source": source}), None


@dataclass
class BatchRunner:
    """Runs one batch. ``run`` may be called once per instance.

    Args:
        extractor: ``Document -> LetterRecord`` (``extract_document`` for the rules; it must be
            picklable when it runs in worker processes: ``concurrency`` is None).
        workers: worker processes (without ``isolate``, 1 runs everything in this process).
        concurrency: threads running ``extractor`` (for backends that call a model); None runs
            the extractor in the worker processes.
        store, run_id, key: where results are kept and skipped; all three or none.
        retry_model_errors: re-extract stored letters whose model call failed (rules kept).
        pool: a long-lived ``LetterPool`` to read (and extract) in, kept running after the run;
            None: the run starts its own (``workers``) and stops it.
        model_queue: the ``ModelQueue`` a model's extractions go through (shared by the runs
            of a service); None: the run makes its own of ``concurrency`` threads.
        when_full: with a full ``model_queue``, ``wait`` for room (a batch) or ``refuse``: the
            run raises ``QueueFullError`` (a service's 503).
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
    #: Without ``isolate``, batches known to be smaller than this run without a pool (see
    #: ``MIN_POOL_LETTERS``).
    min_pool_letters: int = MIN_POOL_LETTERS
    #: Letters per store commit (None: ``COMMIT_EVERY`` for the rules, 1 with a model).
    commit_every: int | None = None
    #: What one letter may cost (pages, text, items, seconds, memory per worker).
    limits: Limits = DEFAULT_LIMITS
    #: Read (and, without ``concurrency``, extract) every letter in a worker process, so that a
    #: crash, an abort, running out of memory or past ``limits.letter_seconds`` costs that
    #: letter alone. False: a batch of one worker, or under ``min_pool_letters``, runs in this
    #: process (faster to start; a crash there ends the batch, and no time limit holds).
    isolate: bool = True
    reused: int = 0
    #: A long-lived worker pool to use (None: the run starts its own, or reads in this process).
    pool: LetterPool | LetterPools | None = field(default=None, repr=False)
    #: The pool the current run started (None: it was given one, or reads in this process).
    started_pool: LetterPool | None = field(default=None, init=False, repr=False)
    model_queue: ModelQueue | None = field(default=None, repr=False)
    when_full: Literal["wait", "refuse"] = "wait"
    #: On a shared store, a failure of this run recorded at or after this time (ISO 8601, as the
    #: store writes it) is this pass's, served as it is rather than tried again; None: when
    #: ``run`` begins. Processes that join a pass late (replicas sharing a job) give the pass's
    #: start.
    failures_since: str | None = None
    _since: str | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.store is not None and (self.run_id is None or self.key is None):
            raise ValueError("a store needs a run_id and a key")

    @property
    def threaded(self) -> bool:
        """Whether the extractor runs in threads of this process (it calls a model)."""
        return self.concurrency is not None or self.model_queue is not None

    def _plan(
        self, paths: Iterable[str | Letter], deferred: list[_Task]
    ) -> Iterator[_Task | _Ready]:
        """Hash each input and settle the ones the store already holds. On a store shared by
        several processes (PostgreSQL) a letter is claimed before it is extracted; one that
        another process holds now goes to ``deferred`` (see ``_settle_deferred``)."""
        for position, given in enumerate(paths):
            data: bytes | None
            if isinstance(given, Letter):
                path, data = given.name, given.data
            else:
                path = given
                try:
                    data = _read_stdin(self.limits) if path == STDIN else None
                except ImrExtractError as exc:
                    yield _Ready(position, BatchOutcome(path, error=exc), fresh=True)
                    continue
            sha: str | None = None
            if data is not None:
                sha = hashlib.sha256(data).hexdigest()
            elif self.store is not None:
                try:
                    sha = hash_file(path)
                except OSError:
                    sha = None  # the worker reports why it cannot be read
            if self.store is not None and self.key is not None and sha is not None:
                ready = self._stored(_Task(position, path, data, sha))
                if ready is not None:
                    yield ready
                    continue
                if self.store.shared:
                    content = self.key.key(sha, path)
                    if not self.store.claim_letter(content):  # another process is at it
                        deferred.append(_Task(position, path, data, sha))
                        continue
                    # done meanwhile? (or failed in another process of this pass)
                    ready = self._stored(_Task(position, path, data, sha), self._since)
                    if ready is not None:
                        self.store.release_letter(content)
                        yield ready
                        continue
            yield _Task(position, path, data, sha)

    def _stored(self, task: _Task, failed_since: str | None = None) -> _Ready | None:
        """The stored result that stands for ``task``, if any (``failed_since``: or its failure
        that a process of this run recorded since then, while this one was running: a failure
        is tried again by every new pass, never twice in one)."""
        assert self.store is not None and self.key is not None and task.sha256 is not None
        path, sha = task.path, task.sha256
        row = self.store.lookup(self.key.key(sha, path))
        if row is not None and row.record is not None and finished(row, self.retry_model_errors):
            record, text = _from_store(path, row.record, given=task.data is not None)
            outcome = BatchOutcome(
                path, record=record, sha256=sha, reused=True, row=RecordRow.of(record, text)
            )
            return _Ready(task.position, outcome)
        if failed_since is None:
            return None
        row = self.store.lookup(self.key.error_key(sha, escape_name(path)))
        if row is None or row.run_id != self.run_id or row.error_code is None:
            return None
        if row.finished_at is None or row.finished_at < failed_since:
            return None  # an earlier pass's: tried again
        error = ImrExtractError(path, row.cause or "")
        error.code = row.error_code
        return _Ready(task.position, BatchOutcome(path, error=error, sha256=sha, reused=True))

    def stored(self, letter: Letter) -> BatchOutcome | None:
        """``letter``'s result when the store holds one that stands (as ``run`` would serve
        it), else None; a quick look before a caller spends a worker or a thread on it."""
        if self.store is None or self.key is None:
            return None
        sha = hashlib.sha256(letter.data).hexdigest()
        ready = self._stored(_Task(0, letter.name, letter.data, sha))
        if ready is None:
            return None
        self.reused += 1
        return ready.outcome

    def _extractor(self) -> Extractor:
        """The extractor, held to ``limits`` (the rules check items before they verify)."""
        if self.extractor is extract_document:
            return functools.partial(extract_document, limits=self.limits)
        return self.extractor

    def _results(
        self, items: Iterator[_Task | _Ready], total: int | None
    ) -> Generator[tuple[_Task | _Ready, _Result | None], None, None]:
        workers = self.workers
        if total is not None:  # no more workers than chunks
            workers = min(workers, max(1, math.ceil(total / self.chunksize)))
            if not self.isolate and total < self.min_pool_letters:
                workers = 1
        extractor = self._extractor()
        pool, own_pool = self.pool, False
        if pool is None and (self.isolate or workers > 1):
            # the extractor runs in the workers only without threads
            pool = LetterPool(
                workers, None if self.threaded else extractor, self.pdf_engine, self.limits
            )
            self.started_pool, own_pool = pool, True
        elif pool is None:
            settle_heap()
        queue, own_queue = self.model_queue, False
        window = max(4 * (self.concurrency or 1), 16)
        if self.threaded and queue is None:
            concurrency = self.concurrency or 1
            queue, own_queue = ModelQueue(concurrency, window - concurrency), True
        try:
            if queue is None:
                if pool is None:
                    for item in items:
                        if isinstance(item, _Ready):
                            yield item, None
                        else:
                            yield item, _extract_task(item, extractor, self.pdf_engine, self.limits)
                else:
                    yield from pool.map("extract", items, self.chunksize)
                return
            if pool is None:
                read: Iterator[tuple[_Task | _Ready, Any]] = (
                    (item, None)
                    if isinstance(item, _Ready)
                    else (
                        item,
                        _guard(
                            item.path, functools.partial(_read, item, self.pdf_engine, self.limits)
                        ),
                    )
                    for item in items
                )
            else:
                read = pool.map("read", items, self.chunksize)
            wait = self.when_full == "wait"
            yield from _in_threads(queue, read, extractor, window, self.limits, wait)
        finally:
            if own_pool:
                assert pool is not None
                pool.shutdown()
            elif isinstance(pool, LetterPool):
                pool.reset()  # a borrowed pool: letters left in hand (an early stop) dropped
            if own_queue:
                assert queue is not None
                queue.shutdown()

    def run(self, inputs: Iterable[Input], total: int | None = None) -> Iterator[BatchOutcome]:
        """One outcome per letter under ``inputs`` (paths, directories, ``-``, or ``Letter``
        bytes), in input order; each new result is in the store (committed) before it is
        yielded. ``total`` (the number of letters, if known) only keeps a pool from starting
        for a handful of letters.

        On a store shared by several processes (PostgreSQL), the letters another process was
        extracting when this one came to them come last: once all of this process's own are
        committed (its claims let go, so two processes never wait for each other), each is
        waited for and served from the store, or extracted here if that process died.
        """
        deferred: list[_Task] = []
        shared = self.store is not None and self.store.shared
        self._since = (self.failures_since or now_iso()) if shared else None
        try:
            yield from self._run_items(self._plan(_expand(inputs), deferred), total)
            for task in deferred:
                yield from self._run_items(self._settle(task), 1)
        finally:
            if shared:  # stopped early (or refused): the letters claimed and not written
                assert self.store is not None
                with contextlib.suppress(ImrExtractError):  # a lost store lets them go itself
                    self.store.release_letters()

    def _settle(self, task: _Task) -> Iterator[_Task | _Ready]:
        """A letter another process held: wait for its claim, then take what it stored."""
        assert self.store is not None and self.key is not None and task.sha256 is not None
        content = self.key.key(task.sha256, task.path)
        self.store.claim_letter(content, wait=True)
        ready = self._stored(task, self._since)
        if ready is not None:
            self.store.release_letter(content)
            yield ready
        else:
            yield task  # its claim is let go once its result is committed

    def _run_items(
        self, items: Iterator[_Task | _Ready], total: int | None
    ) -> Iterator[BatchOutcome]:
        results = self._results(items, total)
        store = self.store if self.key is not None and self.run_id is not None else None
        # The rules' results are committed in groups (a commit costs more than the rest of a
        # letter's write); a model's, which take seconds each, one by one.
        group = self.commit_every or (1 if self.concurrency is not None else COMMIT_EVERY)
        held: list[BatchOutcome] = []  # waiting for a commit (their own or an earlier letter's)
        since = 0.0
        try:
            for item, result in results:
                if isinstance(item, _Ready):
                    self.reused += not item.fresh
                    outcome = item.outcome
                else:
                    assert result is not None
                    outcome = self._outcome(item, result)
                if store is not None and not (isinstance(item, _Ready) and not item.fresh):
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


def _expand(inputs: Iterable[Input]) -> Iterator[str | Letter]:
    """Paths expanded (``iter_paths``); ``Letter`` bytes as they are."""
    for item in inputs:
        if isinstance(item, Letter):
            yield item
        else:
            yield from iter_paths([item])


def run_batch(
    inputs: Iterable[Input], extractor: Extractor = extract_document, **kw: Any
) -> Iterator[BatchOutcome]:
    """``BatchRunner(extractor, **kw).run(inputs)`` (``limits=``, ``isolate=``, ... as there)."""
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
