"""The library's one code path for a run (``runs.Run``), letters given as bytes, a long-lived
worker pool, and the bounded model queue (a batch waits, a service refuses)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from conftest import LETTERS, document, letter_path
from fake_openai import Reply, answer, serve
from imr_extract.backends import BuiltBackend, build_backend
from imr_extract.extract import extract_document
from imr_extract.hybrid import HybridExtractor
from imr_extract.ingest import read_bytes
from imr_extract.llm import LLMConfig, LLMExtractor
from imr_extract.runner import (
    Admission,
    BatchRunner,
    Letter,
    LetterPool,
    LetterPools,
    ModelQueue,
    QueueFullError,
)
from imr_extract.runs import Run, RunMismatchError
from imr_extract.schema import Backend
from imr_extract.store import ResultKey, RunStore

TXT = (
    sorted(str(p) for p in LETTERS.glob("*/*.txt"))[:2]
    + sorted(str(p) for p in LETTERS.glob("pdf/*.pdf"))[:2]
)
ONE = letter_path("000_95767a46bf993051.txt")


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- Run


def test_a_run_starts_counts_and_finishes_in_the_store(tmp_path):
    db = tmp_path / "s.sqlite"
    rules = build_backend(Backend.RULES)
    with RunStore(db) as store, Run.start(store, rules, inputs=TXT, argv=["x"]) as run:
        outcomes = list(run.extract(TXT, isolate=False))
    assert [o.source for o in outcomes] == TXT and all(o.ok for o in outcomes)
    assert (run.summary.letters, run.summary.failed, run.summary.reused) == (4, 0, 0)
    assert run.summary.items == sum(len(o.record.items) for o in outcomes)
    assert rows(db, "SELECT id, status, letters, ok, reused FROM runs") == [
        (run.id, "finished", 4, 4, 0)
    ]
    with RunStore(db) as store, Run.start(store, rules, inputs=TXT) as again:
        list(again.extract(TXT, isolate=False))
    assert again.summary.reused == 4
    served = rows(db, "SELECT count(*) FROM served WHERE run_id = ?", again.id)
    assert served == [(4,)]  # `export --run` writes them


def test_a_run_left_by_an_exception_is_interrupted_and_resumes(tmp_path):
    db = tmp_path / "s.sqlite"
    rules = build_backend(Backend.RULES)
    with pytest.raises(KeyError), RunStore(db) as store, Run.start(store, rules) as run:
        for _ in run.extract(TXT, isolate=False):
            raise KeyError("stopped")
    assert rows(db, "SELECT status, letters FROM runs") == [("interrupted", 1)]
    with RunStore(db) as store, Run.resume(store, "last", rules) as resumed:
        outcomes = list(resumed.extract(TXT, isolate=False))
    assert resumed.id == run.id and outcomes[0].reused  # (the rest written before the stop too)
    assert rows(db, "SELECT status, resumes, letters, ok FROM runs") == [("finished", 1, 5, 4)]


def test_resuming_with_another_backend_names_what_differs(tmp_path):
    rules = build_backend(Backend.RULES)
    other = BuiltBackend(
        Backend.LLM, extract_document, ResultKey("llm", "p@1", "m", rules.key.schema_hash, "v2")
    )
    with RunStore(tmp_path / "s.sqlite") as store:
        run = Run.start(store, rules)
        run.finish()
        with pytest.raises(RunMismatchError) as caught:
            Run.resume(store, run.id, other)
    message = str(caught.value)
    assert message.startswith(f"run {run.id} was made with backend rules (now llm), model - ")
    assert "prompt - (now p@1)" in message and "schema" not in message
    assert message.endswith("give the same options, or start a new run (without --resume)")
    assert [d[0] for d in caught.value.differences] == [
        "backend",
        "model",
        "prompt",
        "imr-extract",
    ]


def test_a_run_without_a_store_extracts_and_counts():
    run = Run(build_backend(Backend.RULES))
    notes = Letter("notes.txt", b"Dear colleague, nothing was decided here.")
    outcomes = list(run.extract([*TXT, notes, str(LETTERS / "nope.txt")], isolate=False))
    assert [o.ok for o in outcomes] == [True] * 4 + [False, False]
    assert (run.summary.letters, run.summary.failed, run.summary.extracted) == (6, 2, 4)
    assert run.summary.failures_by_code == {"no-decisions": 1, "error": 1}
    assert run.finish() is True and run.id is None


# --------------------------------------------------------------------------- letters as bytes


def test_letters_given_as_bytes_carry_their_name_and_no_path(tmp_path):
    data = ONE.read_bytes()
    rules = build_backend(Backend.RULES)
    with RunStore(tmp_path / "s.sqlite") as store, Run.start(store, rules) as run:
        [first] = run.extract([Letter("upload.txt", data)])  # in a worker: isolated
        [again] = run.extract([Letter("again.txt", data)], isolate=False)
    assert first.ok and not first.reused and again.reused
    assert (first.record.letter, first.record.source.path) == ("upload.txt", None)
    assert (again.record.letter, again.record.source.path) == ("again.txt", None)
    assert first.record == extract_document(read_bytes(data, "upload.txt"))
    assert rows(tmp_path / "s.sqlite", "SELECT path, letter FROM letters") == [
        ("upload.txt", "upload.txt")
    ]


# --------------------------------------------------------------------------- long-lived pools


def _pids(pool: LetterPool) -> list[int]:
    return [w.process.pid for w in pool.procs if w is not None]


def test_a_pool_given_to_runs_keeps_its_workers_between_them():
    pool = LetterPool(1, extract_document, None)
    try:
        pool.warm()
        before = _pids(pool)
        for name in ("a.txt", "b.txt"):
            [o] = BatchRunner(pool=pool).run([Letter(name, ONE.read_bytes())])
            assert o.ok and o.record.letter == name
        assert _pids(pool) == before and pool.procs[0].process.is_alive()
    finally:
        pool.shutdown()


def test_lent_pools_serve_runs_from_many_threads_and_stored_letters_take_no_worker(tmp_path):
    pools = LetterPools(2, extract_document, None)
    rules = build_backend(Backend.RULES)
    try:
        with RunStore(tmp_path / "s.sqlite") as store, Run.start(store, rules) as run:
            list(run.extract(TXT, isolate=False))  # stored, in this process
            [o] = run.extract([Path(TXT[0])], pool=pools)
            assert o.reused and all(p.procs == [None] for p in pools.pools)  # none started
        results: dict[int, bool] = {}

        def one(i: int) -> None:
            [o] = BatchRunner(pool=pools).run([Letter(f"{i}.txt", ONE.read_bytes())])
            results[i] = o.ok and o.record.letter == f"{i}.txt"

        threads = [threading.Thread(target=one, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert results == dict.fromkeys(range(6), True)
        assert sum(1 for p in pools.pools if p.procs[0] is not None) >= 1
    finally:
        pools.shutdown()


# --------------------------------------------------------------------------- the model queue


def test_admission_waits_or_refuses_when_full():
    gate = Admission(1, 1)
    gate.enter()
    gate.enter()
    with pytest.raises(QueueFullError) as caught:
        gate.enter(wait=False)
    assert caught.value.in_hand == 2 and caught.value.retry_after_s > 0
    threading.Timer(0.2, gate.leave).start()
    start = time.monotonic()
    gate.enter()  # waits for the timer's leave
    assert time.monotonic() - start >= 0.15 and gate.in_hand == 2


class Gauge:
    """A fake model endpoint's responder: slow, and counting the requests in flight at once."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.now = self.most = 0
        self.lock = threading.Lock()

    def __call__(self, body: dict, headers: dict) -> Reply:
        with self.lock:
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.seconds)
        with self.lock:
            self.now -= 1
        return answer({"date_of_injury": "10/23/2016", "items": []})


def relabelled(tmp_path: Path, n: int) -> list[str]:
    """``n`` letters (each its own bytes) the rules cannot read whole: the model is asked."""
    text = document("CM16-0231706.pdf").text.replace("Date of Injury:", "Injury Dt:", 1)
    paths = []
    for i in range(n):
        paths.append(str(tmp_path / f"{i}.txt"))
        Path(paths[-1]).write_text(text + " " * i)
    return paths


def hybrid(base_url: str, tmp_path: Path) -> HybridExtractor:
    config = LLMConfig(
        base_url=base_url,
        model="fake-model",
        api_key="imr-test-placeholder-not-a-key",
        use_cache=False,
        cache_dir=tmp_path / "cache",
        max_reasks=0,
        transport_retries=0,
    )
    return HybridExtractor(LLMExtractor(config))


def test_a_batch_waits_for_a_full_model_queue_and_never_refuses(tmp_path):
    paths = relabelled(tmp_path, 5)
    gauge = Gauge(0.2)
    queue = ModelQueue(2, max_waiting=0)
    with serve([], respond=gauge) as fake:
        outcomes = list(
            BatchRunner(hybrid(fake.base_url, tmp_path), model_queue=queue, isolate=False).run(
                paths
            )
        )
    assert [o.source for o in outcomes] == paths
    assert all(o.ok and o.record.extractor.routed == "sections" for o in outcomes)
    assert len(fake.requests) == 5 and gauge.most == 2 and queue.in_hand == 0


def test_a_run_that_must_not_wait_is_refused_by_a_full_model_queue(tmp_path):
    first, second = relabelled(tmp_path, 2)
    gauge = Gauge(1.0)
    queue = ModelQueue(1, max_waiting=0)  # shared by both runs, as a service's is
    with serve([], respond=gauge) as fake:
        extractor = hybrid(fake.base_url, tmp_path)
        slow: list = []
        busy = threading.Thread(
            target=lambda: slow.extend(
                BatchRunner(extractor, model_queue=queue, when_full="refuse", isolate=False).run(
                    [first]
                )
            )
        )
        busy.start()
        deadline = time.monotonic() + 10
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = BatchRunner(extractor, model_queue=queue, when_full="refuse", isolate=False)
        with pytest.raises(QueueFullError):
            list(refused.run([second]))
        busy.join(30)
        [later] = BatchRunner(extractor, model_queue=queue, when_full="refuse").run([second])
    assert [o.ok for o in slow] == [True] and later.ok
    assert len(fake.requests) == 2  # the refused letter cost no model call


def test_a_model_backends_run_extracts_in_threads_never_in_workers():
    rules = build_backend(Backend.RULES)
    model = BuiltBackend(Backend.LLM, extract_document, ResultKey("llm"), uses_model=True)
    assert Run(model).runner().threaded and Run(model).runner().concurrency == 4
    queue = ModelQueue(1)
    assert Run(model).runner(model_queue=queue).model_queue is queue
    assert not Run(rules).runner(concurrency=8, model_queue=queue).threaded  # the rules: workers


def test_a_refused_run_gives_its_borrowed_worker_back_at_once():
    pools = LetterPools(1, extract_document, None)
    queue = ModelQueue(1, max_waiting=0)
    model = BuiltBackend(Backend.LLM, extract_document, ResultKey("llm"), uses_model=True)
    release = threading.Event()
    try:
        queue.submit(release.wait)  # the queue is full
        run = Run(model)
        letter = Letter("a.txt", ONE.read_bytes())
        with pytest.raises(QueueFullError) as refused:  # (pytest keeps its traceback alive)
            list(run.extract([letter], pool=pools, model_queue=queue, when_full="refuse"))
        done: list = []
        reader = threading.Thread(target=lambda: done.append(pools.read(letter)))
        reader.start()
        reader.join(20)
        assert done and done[0].name == "a.txt", "the only worker was never given back"
        assert refused.value.in_hand == 1
    finally:
        release.set()
        pools.shutdown()


def test_a_long_lived_run_records_what_it_served_in_batches_and_the_rest_at_finish(tmp_path):
    db = tmp_path / "s.sqlite"
    rules = build_backend(Backend.RULES)
    with RunStore(db) as store, Run.start(store, rules) as first:
        list(first.extract(TXT, isolate=False))
    served = "SELECT count(*) FROM served WHERE run_id = ?"
    with RunStore(db) as store:
        run = Run.start(store, rules)
        run.served_batch = 3
        counts = []
        for path in TXT:  # letter by letter, as a service answers them
            [o] = run.extract([path], isolate=False)
            assert o.reused
            counts.append(rows(db, served, run.id)[0][0])
        run.finish()
    assert counts == [0, 0, 3, 3]
    assert rows(db, served, run.id) == [(4,)]


def test_a_quick_look_serves_a_stored_letter_and_counts_it_as_extract_does(tmp_path):
    rules = build_backend(Backend.RULES)
    data = ONE.read_bytes()
    with RunStore(tmp_path / "s.sqlite") as store, Run.start(store, rules) as run:
        assert run.stored(Letter("a.txt", data)) is None  # not there yet: nothing counted
        assert run.summary.letters == 0
        list(run.extract([Letter("a.txt", data)], isolate=False))
        found = run.stored(Letter("b.txt", data))
        assert found is not None and found.reused
        assert (found.record.letter, found.record.source.path) == ("b.txt", None)
        assert (run.summary.letters, run.summary.reused) == (2, 1)
    assert Run(rules).stored(Letter("a.txt", data)) is None  # no store: nothing to look in
