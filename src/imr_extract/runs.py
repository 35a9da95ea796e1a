"""Runs: starting, resuming or joining a run, feeding it letters, counting it, finishing it.

Invariant: ``imr-extract extract`` and the service do everything past their own options through
``Run`` -- the check that a resumed run is resumed the way it was made, the run's claim, its row
in the store, the ``BatchRunner`` over its letters, the summary's counts, the results it served
from the store, and its finish -- so no step of a run exists twice. ``Run`` decides nothing about
options, output or messages: its callers render what it yields.

A run without a store (``Run(backend)``) extracts and counts the same way and keeps nothing.

Finishing: each process that started, resumed or joined a run adds its counts when it finishes;
on a store shared by several processes (PostgreSQL) the run takes its status only from the last
of them to let go (``RunStore.finish_run``).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from .backends import BuiltBackend
from .extract import Outcome
from .runner import BatchOutcome, BatchRunner, Input, Letter
from .schema import Usage
from .store import RecordRow, RunBusyError, RunRow, RunStore, new_run_id

__all__ = ["Run", "RunMismatchError", "RunSummary"]

#: Model extractions at once when a run with a model is given neither ``concurrency`` nor a
#: ``model_queue`` (the CLI's ``--concurrency`` default).
MODEL_CONCURRENCY = 4


class RunMismatchError(Exception):
    """A run cannot be resumed (or joined) as asked: it was made with another backend, model,
    prompt, schema or version of imr-extract. ``differences`` names each as
    ``(what, the run's, now)``; the message names them all."""

    def __init__(self, run_id: str, differences: list[tuple[str, str, str]]) -> None:
        self.run_id = run_id
        self.differences = differences
        diffs = ", ".join(f"{n} {a or '-'} (now {b or '-'})" for n, a, b in differences)
        super().__init__(
            f"run {run_id} was made with {diffs}: give the same options, "
            "or start a new run (without --resume)"
        )


@dataclass
class RunSummary:
    """The counts of a run's outcomes, tallied as they are yielded (no record is kept)."""

    started: float = field(default_factory=time.monotonic)
    letters: int = 0
    failed: int = 0
    #: Failures by error code (``parse-error``, ``timeout``, ...).
    failures_by_code: Counter[str] = field(default_factory=Counter)
    items: int = 0
    decisions: Counter[str] = field(default_factory=Counter)
    layouts: Counter[str] = field(default_factory=Counter)
    warnings: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = None
    attempts: int = 0
    status: Counter[str] = field(default_factory=Counter)
    novel: int = 0
    routed: Counter[str] = field(default_factory=Counter)
    model_errors: int = 0
    #: Served from the run store: a result under the same key was there already.
    reused: int = 0

    @property
    def extracted(self) -> int:
        """Letters that gave a record."""
        return self.letters - self.failed

    def add(self, outcome: Outcome | BatchOutcome) -> None:
        self.letters += 1
        # A result served from the run store cost nothing this time.
        reused = bool(getattr(outcome, "reused", False))
        self.reused += reused
        if not outcome.ok:
            self.failed += 1
            self.failures_by_code[outcome.error.code if outcome.error is not None else "error"] += 1
            spent = getattr(outcome.error, "usage", None)
            if isinstance(spent, Usage):  # a failed model call still cost tokens
                self.usage = self.usage + spent
            return
        # Counted from the row a batch brings (no need to parse the record back).
        row = getattr(outcome, "row", None)
        if row is None:
            assert outcome.record is not None
            row = RecordRow.of(outcome.record)
        if not row.cached and not reused:
            self.usage = self.usage + Usage(
                requests=row.usage[0],
                prompt_tokens=row.usage[1],
                completion_tokens=row.usage[2],
                total_tokens=row.usage[3],
            )
        if not reused:
            self.attempts += row.attempts
            if row.cost_usd is not None:
                self.cost_usd = (self.cost_usd or 0.0) + row.cost_usd
        self.items += len(row.items)
        self.decisions.update(row.decisions)
        self.layouts[row.layout] += 1
        self.warnings += row.warnings
        if row.novel_layout is not None:
            verified, unverified, contradicted = row.statuses
            self.status.update(verified=verified, unverified=unverified)
            self.status.update(contradicted=contradicted)
            self.novel += row.novel_layout
        if row.routed is not None:
            self.routed[row.routed] += 1
        self.model_errors += row.model_error is not None


#: What a resumed run must have been made with, as ``RunRow`` and ``ResultKey`` name it.
_SAME = (
    ("backend", "backend"),
    ("model", "model"),
    ("prompt", "prompt"),
    ("schema", "schema_hash"),
    ("imr-extract", "version"),
)


class Run:
    """One run: a backend, perhaps a store and the run's id in it, and the summary so far.

    Make one with ``Run.start`` (a new run in ``store``), ``Run.resume`` (an interrupted one),
    ``Run.join`` (one other processes are running, on a shared store) or ``Run(backend)`` (no
    store); feed it with ``extract`` (any number of times, from any number of threads); end it
    with ``finish``, or use it as a context manager (``finished`` on leaving, ``interrupted`` on
    an exception).
    """

    def __init__(
        self,
        backend: BuiltBackend,
        store: RunStore | None = None,
        run_id: str | None = None,
        *,
        row: RunRow | None = None,
    ) -> None:
        if (store is None) != (run_id is None):
            raise ValueError("a store needs a run id, and a run id a store")
        self.backend = backend
        self.store = store
        self.id = run_id
        #: The resumed run's row (its inputs and directory), for a resumed run.
        self.row = row
        self.summary = RunSummary()
        self.status: str | None = None  # set by ``finish``
        self._lock = threading.Lock()
        self._served: list[str] = []  # results served from the store, not yet recorded
        #: Record the results served from the store once this many wait (and at the end of
        #: each ``extract`` with 1, the default; always at ``finish``): a long-lived run
        #: answering letter by letter (the service) raises it.
        self.served_batch = 1

    # ------------------------------------------------------------------ making one

    @classmethod
    def start(
        cls,
        store: RunStore,
        backend: BuiltBackend,
        *,
        inputs: Sequence[str] = (),
        argv: Sequence[str] = (),
        config: dict[str, Any] | None = None,
        run_id: str | None = None,
    ) -> Run:
        """A new run in ``store``, held by this process (``config``: the settings it records,
        ``backend.settings`` by default).

        Raises:
            RunBusyError: ``run_id`` is held by another process.
            StoreUnusableError: the store cannot be written.
        """
        run_id = run_id or new_run_id()
        store.claim_run(run_id)
        store.start_run(
            backend.key,
            argv=list(argv),
            inputs=list(inputs),
            config=backend.settings if config is None else config,
            run_id=run_id,
        )
        return cls(backend, store, run_id)

    @staticmethod
    def resumable(store: RunStore, ref: str, backend: BuiltBackend) -> RunRow:
        """The run ``ref`` (its id, or ``last``), claimed by this process, once it is known to
        be resumable with ``backend`` (not marked running yet: ``resume`` does).

        Raises:
            StoreError: no such run.
            RunBusyError: another process runs it now.
            RunMismatchError: it was made with another backend, model, prompt, schema or version.
        """
        row = store.run(ref)
        store.claim_run(row.id)  # a second process resuming it is refused
        if row.still_running():
            raise RunBusyError(
                store.where, f"run {row.id} is still running (pid {row.pid}): stop it first"
            )
        _check_same(row, backend)
        return row

    @classmethod
    def resume(cls, store: RunStore, run: str | RunRow, backend: BuiltBackend) -> Run:
        """The run ``run`` (an id, ``last``, or the row ``resumable`` gave) running again here.

        Raises:
            as ``resumable``.
        """
        row = cls.resumable(store, run, backend) if isinstance(run, str) else run
        store.resume_run(row.id)
        return cls(backend, store, row.id, row=row)

    @classmethod
    def join(cls, store: RunStore, run_id: str, backend: BuiltBackend) -> Run:
        """The run ``run_id``, which other processes run too (a store shared by several, such as
        PostgreSQL: each letter is claimed, so each is extracted once).

        Raises:
            StoreError: no such run.
            RunMismatchError: it was made with another backend, model, prompt, schema or version.
        """
        row = store.run(run_id)
        _check_same(row, backend)
        store.join_run(row.id)
        return cls(backend, store, row.id, row=row)

    # ------------------------------------------------------------------ running it

    def runner(self, **options: Any) -> BatchRunner:
        """A ``BatchRunner`` for this run (``options``: the runner's own: ``workers``,
        ``concurrency``, ``pool``, ``model_queue``, ``limits``, ...; ``backend``: another built
        backend whose results this run records too; ``store``: another connection to the run's
        store, for a thread of its own)."""
        backend: BuiltBackend = options.pop("backend", None) or self.backend
        store = options.pop("store", None) or self.store
        if not backend.uses_model:
            options["concurrency"] = None
            options.pop("model_queue", None)
        elif options.get("concurrency") is None and options.get("model_queue") is None:
            options["concurrency"] = MODEL_CONCURRENCY  # a model's calls never go to workers
        return BatchRunner(
            backend.extractor,
            store=store,
            run_id=self.id if store is not None else None,
            key=backend.key if store is not None else None,
            **options,
        )

    def extract(
        self, inputs: Iterable[Input], *, total: int | None = None, **options: Any
    ) -> Iterator[BatchOutcome]:
        """The outcome of each letter under ``inputs`` (paths, directories, ``-``, or
        ``runner.Letter`` bytes), in input order, each counted in ``summary`` as it is yielded;
        ``options`` as ``runner``. The results served from the store are recorded as this
        run's (``served``) when the letters are done or the caller stops (see
        ``served_batch``)."""
        runner = self.runner(**options)
        try:
            for outcome in runner.run(inputs, total):
                self._count(runner, outcome)
                yield outcome
        finally:
            self._mark_served(runner.store, self.served_batch)

    def stored(self, letter: Letter, **options: Any) -> BatchOutcome | None:
        """``letter``'s result when the store holds one that stands, counted as ``extract``
        counts it; else None (``options`` as ``runner``: ``backend``, ``store``). A quick
        look before spending a worker on it: the service's letters the store already holds
        are answered without a thread of their own."""
        runner = self.runner(**options)
        outcome = runner.stored(letter)
        if outcome is not None:
            self._count(runner, outcome)
            self._mark_served(runner.store, self.served_batch)
        return outcome

    def _count(self, runner: BatchRunner, outcome: BatchOutcome) -> None:
        with self._lock:
            self.summary.add(outcome)
            if outcome.reused and runner.key is not None and outcome.sha256 is not None:
                self._served.append(runner.key.key(outcome.sha256, outcome.source))

    def _mark_served(self, store: RunStore | None, at_least: int = 1) -> None:
        with self._lock:
            if len(self._served) < at_least:
                return
            served, self._served = self._served, []
        if served and store is not None and self.id is not None:
            store.mark_served(self.id, served)

    # ------------------------------------------------------------------ finishing it

    def finish(self, status: str = "finished") -> bool:
        """This process is done with the run: its counts are added to the run's in the store
        and, unless other processes still run it, it takes ``status`` (``finished`` or
        ``interrupted``). Once only; True when the run took ``status`` (always without a
        store)."""
        if self.status is not None:
            return True
        self.status = status
        if self.store is None or self.id is None:
            return True
        self._mark_served(self.store)
        return self.store.finish_run(
            self.id, letters=self.summary.letters, reused=self.summary.reused, status=status
        )

    def __enter__(self) -> Run:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        self.finish("finished" if kind is None else "interrupted")

    def __repr__(self) -> str:
        backend = self.backend.backend.value
        return f"Run({backend!r}, id={self.id!r}, letters={self.summary.letters})"


def _check_same(row: RunRow, backend: BuiltBackend) -> None:
    differences = [
        (name, getattr(row, attr), getattr(backend.key, attr))
        for name, attr in _SAME
        if getattr(row, attr) != getattr(backend.key, attr)
    ]
    if differences:
        raise RunMismatchError(row.id, differences)
