"""The batch runner: input order, streaming, processes, threads, crashes, rate limits."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from conftest import LETTERS, letter_path
from fake_openai import answer, serve
from imr_extract.extract import extract_document
from imr_extract.hybrid import HybridExtractor
from imr_extract.ingest import Document, iter_paths, read_bytes
from imr_extract.llm import LLMConfig
from imr_extract.runner import (
    BatchRunner,
    RateLimitedLLM,
    RateLimiter,
    TokenBucket,
    run_batch,
)
from imr_extract.schema import LetterRecord


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --- the token bucket and the limiter, on a fake clock -------------------------------------------


def test_a_bucket_allows_its_burst_then_its_rate():
    clock = FakeClock()
    bucket = TokenBucket(120, capacity=3, clock=clock)  # 2 per second
    for _ in range(3):
        assert bucket.wait_for(1) == 0
        bucket.take(1)
    assert bucket.wait_for(1) == pytest.approx(0.5)
    clock.now += 0.25
    assert bucket.wait_for(1) == pytest.approx(0.25)
    clock.now += 10  # saving up stops at the capacity
    bucket.take(0)
    assert bucket.level == 3


def test_a_bucket_default_burst_is_one_seconds_worth():
    assert TokenBucket(60).capacity == 1  # one request per second, no burst
    assert TokenBucket(90_000).capacity == 1_500
    with pytest.raises(ValueError):
        TokenBucket(0)


def test_an_amount_above_capacity_waits_for_a_full_bucket_and_leaves_a_debt():
    clock = FakeClock()
    bucket = TokenBucket(600, clock=clock)  # 10 per second, capacity 10
    bucket.take(10)
    assert bucket.wait_for(25) == pytest.approx(1.0)  # a full bucket, not 2.5 s
    clock.now += 1.0
    assert bucket.wait_for(25) == 0
    bucket.take(25)
    assert bucket.level == pytest.approx(-15)
    assert bucket.wait_for(1) == pytest.approx(1.6)


def test_the_limiter_paces_requests_and_tokens_together():
    clock = FakeClock()
    limiter = RateLimiter(rpm=60, tpm=6_000, clock=clock, sleep=clock.sleep)  # 1/s, 100 tokens/s
    for _ in range(5):
        limiter.acquire(1, 10)
    assert clock.now == pytest.approx(4.0)  # the first goes at once, then one per second
    limiter.acquire(1, 300)  # tokens are the tighter limit now: a full bucket (100)
    assert clock.now == pytest.approx(4.0 + 1.0)
    assert limiter.tokens.level == pytest.approx(-200)
    limiter.acquire(1, 100)
    assert clock.now == pytest.approx(5.0 + 3.0)  # the 200-token debt, then 100 tokens
    assert limiter.waited_s == pytest.approx(sum(clock.slept))


def test_settling_refunds_what_was_not_spent_and_charges_what_was():
    clock = FakeClock()
    limiter = RateLimiter(rpm=600, tpm=60_000, clock=clock, sleep=clock.sleep)
    limiter.acquire(1, 1_000)
    assert limiter.tokens.level == 0
    limiter.settle(reserved=(1, 1_000), used=(1, 400))  # the answer was shorter than max_tokens
    assert limiter.tokens.level == pytest.approx(600)
    limiter.settle(reserved=(1, 0), used=(4, 0))  # three transport retries after the fact
    assert limiter.requests.level == pytest.approx(10 - 1 - 3)
    limiter.settle(reserved=(1, 0), used=(0, 0))  # a cached answer: no request at all
    assert limiter.requests.level == pytest.approx(7)


def test_the_limiter_is_shared_safely_by_threads():
    limiter = RateLimiter(rpm=6_000)  # 100 per second, burst 100
    taken: list[float] = []

    def work():
        for _ in range(30):
            limiter.acquire(1, 0)
            taken.append(time.monotonic())

    start = time.monotonic()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(taken) == 240
    # 100 at once, 140 more at 100/s: at least 1.4 s, whatever the interleaving
    assert time.monotonic() - start >= 1.3


# --- order and streaming -------------------------------------------------------------------------


def dump(outcomes) -> list[tuple[str, str | None, str | None]]:
    return [
        (
            o.source,
            o.record.model_dump_json() if o.record else None,
            o.error.code if o.error else None,
        )
        for o in outcomes
    ]


def test_records_come_back_in_input_order_and_equal_whatever_the_workers(tmp_path):
    (tmp_path / "zz-empty.txt").write_bytes(b"")
    inputs = [str(LETTERS), str(tmp_path)]
    one = dump(run_batch(inputs, workers=1))
    two = dump(run_batch(inputs, workers=2, min_pool_letters=0, chunksize=3))
    threads = dump(run_batch(inputs, workers=2, min_pool_letters=0, concurrency=3))
    assert [s for s, _, _ in one] == list(iter_paths(inputs))
    assert one == two == threads
    assert one[-1][2] == "empty" and sum(r is not None for _, r, _ in one) == 66


class Pulled:
    """An input iterable that counts how far the runner has read it."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.pulled = 0

    def __iter__(self):
        for p in self.paths:
            self.pulled += 1
            yield p


@pytest.mark.parametrize(
    ("kw", "bound"),
    [
        ({"isolate": False}, 0),
        # two chunks per worker in flight, and the chunk being gathered
        ({"workers": 2, "chunksize": 4}, 2 * 2 * 4 + 4),
        # the same for reading, and the threads' window (16)
        ({"workers": 2, "chunksize": 4, "concurrency": 2}, 2 * 2 * 4 + 4 + 16),
    ],
    ids=["inline", "processes", "threads"],
)
def test_the_runner_streams_with_a_bounded_window(kw, bound):
    paths = Pulled([str(p) for p in sorted(LETTERS.glob("txt/*.txt"))] * 60)
    ahead = []
    for n, outcome in enumerate(run_batch(paths, min_pool_letters=0, **kw), start=1):
        assert outcome.ok
        ahead.append(paths.pulled - n)
    # never more than the window ahead of what was yielded: the batch is never held whole
    assert max(ahead) <= bound
    assert len(ahead) == 120


# --- concurrency, bugs and crashes ---------------------------------------------------------------


class Slow:
    """A stand-in for a model-backed extractor: 0.2 s of waiting per letter."""

    def __init__(self) -> None:
        self.active = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, doc: Document) -> LetterRecord:
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        time.sleep(0.2)
        with self.lock:
            self.active -= 1
        return extract_document(doc)


def test_concurrency_runs_that_many_letters_at_once_in_order():
    paths = [str(p) for p in sorted(LETTERS.glob("pdf/*.pdf"))[:12]]
    slow = Slow()
    start = time.monotonic()
    outcomes = list(run_batch(paths, slow, concurrency=4))
    elapsed = time.monotonic() - start
    assert [o.source for o in outcomes] == paths and all(o.ok for o in outcomes)
    assert slow.most == 4
    assert elapsed < 12 * 0.2 / 2  # serially it would take 2.4 s


def buggy(doc: Document) -> LetterRecord:
    if "0231745" in doc.name:
        raise KeyError("a bug in a rule")
    return extract_document(doc)


def crashing(doc: Document) -> LetterRecord:
    if "0231745" in doc.name:
        os.kill(os.getpid(), signal.SIGKILL)  # a segfault in a PDF library, say
    return extract_document(doc)


HEADER = "CM16-0231706.pdf"  # all five header dates
FIVE = ["CM16-0231706.pdf", "CM16-0231745.pdf", "CM17-0014449.pdf", "CM16-0240900.pdf"]


@pytest.mark.parametrize(
    "kw", [{}, {"workers": 2}, {"concurrency": 2}], ids=["inline", "processes", "threads"]
)
def test_a_bug_on_one_letter_is_that_letters_error_and_the_batch_goes_on(kw):
    paths = [str(letter_path(n)) for n in FIVE]
    outcomes = list(run_batch(paths, buggy, min_pool_letters=0, chunksize=2, **kw))
    assert [o.ok for o in outcomes] == [True, False, True, True]
    error = outcomes[1].error
    assert error.code == "internal" and error.source == paths[1]
    assert "KeyError" in error.cause and "a bug in a rule" in error.cause


def test_a_worker_that_dies_costs_only_its_letter():
    paths = [str(letter_path(n)) for n in FIVE] * 3
    outcomes = list(run_batch(paths, crashing, workers=2, min_pool_letters=0, chunksize=4))
    assert [o.source for o in outcomes] == paths
    failed = [o for o in outcomes if not o.ok]
    assert [o.source for o in failed] == [paths[1]] * 3
    assert all(
        o.error.code == "worker-crashed" and "killed by SIGKILL" in o.error.cause for o in failed
    )
    assert sum(o.ok for o in outcomes) == 9


def test_threads_in_a_fresh_process_all_extract():
    # The layout registry loads on first use; threads racing to load it once failed with
    # KeyError: 'unknown'. Only a fresh interpreter has it unloaded.
    code = (
        "import sys\n"
        "sys.setswitchinterval(1e-6)  # switch threads often: make a race show\n"
        "from imr_extract.runner import run_batch\n"
        "out = list(run_batch(sys.argv[1:], concurrency=8))\n"
        "bad = [str(o.error) for o in out if not o.ok]\n"
        "assert not bad and len(out) == 16, bad\n"
    )
    paths = [str(p) for p in sorted(LETTERS.glob("txt/*.txt"))] * 8  # read fast: threads race
    for _ in range(3):  # without the fix, each try fails about two times in three
        cmd = [sys.executable, "-c", code, *paths]
        result = subprocess.run(cmd, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_standard_input_is_read_once_by_the_parent(monkeypatch):
    data = letter_path("000_95767a46bf993051.txt").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    [outcome] = list(run_batch(["-"], workers=2))
    assert outcome.ok and outcome.record.letter == "<stdin>"
    assert outcome.record == extract_document(read_bytes(data, "<stdin>"))


def test_a_letter_on_standard_input_is_served_from_the_store_as_stdin(monkeypatch, tmp_path):
    from imr_extract.schema import schema_hash
    from imr_extract.store import ResultKey, RunStore, code_version

    path = letter_path("000_95767a46bf993051.txt")
    key = ResultKey("rules", schema_hash=schema_hash(), version=code_version())
    with RunStore(tmp_path / "s.sqlite") as store:
        run_id = store.start_run(key, argv=[], inputs=[], config={})
        list(BatchRunner(store=store, run_id=run_id, key=key).run([str(path)]))
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(path.read_bytes())))
        [outcome] = list(BatchRunner(store=store, run_id=run_id, key=key).run(["-"]))
    assert outcome.reused
    assert (outcome.record.letter, outcome.record.source.path) == ("<stdin>", None)
    assert outcome.record == extract_document(read_bytes(path.read_bytes(), "<stdin>"))


# --- the limiter in front of a real (local, fake) endpoint ---------------------------------------


def relabelled(letter: str) -> Document:
    from conftest import document

    text = document(letter).text.replace("Date of Injury:", "Injury Dt:", 1)
    return read_bytes(text.encode(), f"relabelled-{letter}.txt")


def test_model_calls_wait_for_the_rate_limit(tmp_path):
    doc = relabelled(HEADER)
    for i in range(6):
        (tmp_path / f"{i}.txt").write_text(doc.text)
    limiter = RateLimiter(rpm=240)  # 4 per second; a burst of 4
    with serve([answer({"date_of_injury": "10/23/2016", "items": []})]) as fake:
        config = LLMConfig(
            base_url=fake.base_url,
            model="fake-model",
            api_key="imr-test-placeholder-not-a-key",
            use_cache=False,
            cache_dir=tmp_path / "cache",
            max_reasks=0,
        )
        extractor = HybridExtractor(RateLimitedLLM(config, limiter))
        start = time.monotonic()
        outcomes = list(run_batch([str(tmp_path)], extractor, concurrency=6))
        elapsed = time.monotonic() - start
    assert all(o.ok and o.record.extractor.routed == "sections" for o in outcomes)
    assert len(fake.requests) == 6
    assert elapsed >= 0.4 and limiter.waited_s > 0  # 6 requests at 4/s after a burst of 4
    assert limiter.tokens is None
    assert set(vars(extractor)) == {"llm", "force"}  # nothing kept per letter in a batch


def test_the_token_estimate_counts_the_prompt_and_the_longest_answer(tmp_path):
    config = LLMConfig(model="m", use_cache=False, cache_dir=tmp_path, max_tokens=500)
    llm = RateLimitedLLM(config, RateLimiter(tpm=1_000))
    small, large = llm.estimate_tokens("x" * 400, 1, 1), llm.estimate_tokens("x" * 4_400, 1, 1)
    assert large - small == 1_000 and small > 500 + 100
