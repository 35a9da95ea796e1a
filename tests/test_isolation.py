"""Isolation and the per-letter limits of a batch (issue 12, finding 2's batch side).

A letter that crashes, aborts, segfaults, runs out of memory or past its time costs that letter
alone, whatever the batch size: it becomes an error row with its own code, every other letter
is extracted once, the run finishes, and a resumed run completes. The hostile behaviour is a
test-only extractor (``Hostile``, below: worker processes import this module to unpickle it)
acting on a marker in the file's name, and real hostile PDFs generated here (never committed).
"""

from __future__ import annotations

import io
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LETTERS, letter_path
from hostile import run_length_bomb
from imr_extract.errors import TooManyItemsError
from imr_extract.extract import extract_document
from imr_extract.ingest import Document, read_path
from imr_extract.limits import Limits
from imr_extract.runner import BatchRunner, run_batch
from imr_extract.schema import LetterRecord

TESTS = Path(__file__).parent
SRC = TESTS.parent / "src"
MiB = 2**20


class Hostile:
    """The rules, except on a letter whose name's first word is a marker: ``abort-`` (a native
    parser's abort), ``segv-`` (a segfault), ``killed-`` (SIGKILL from outside), ``hog-``
    (allocates 2 GiB: past a smaller worker allowance), ``slow-`` (a minute: past the time)."""

    def __call__(self, doc: Document) -> LetterRecord:
        marker = doc.name.split("-", 1)[0].rsplit("_", 1)[-1]  # "07x_slow-letter.pdf": slow
        if marker == "abort":
            os.abort()
        elif marker == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        elif marker == "killed":
            os.kill(os.getpid(), signal.SIGKILL)
        elif marker == "hog":
            hog = bytes(2 * 2**30)  # calloc: untouched zero pages cost nothing where allowed
            del hog
        elif marker == "slow":
            time.sleep(60)
        return extract_document(doc)


GOOD = sorted(LETTERS.glob("pdf/*.pdf"))[:9] + sorted(LETTERS.glob("txt/*.txt"))
SPARE = sorted(LETTERS.glob("pdf/*.pdf"))[20:]
#: The bad letters of the drill and the code each must get.
BAD = {
    "abort": "worker-crashed",
    "segv": "worker-crashed",
    "killed": "worker-crashed",
    "hog": "out-of-memory",
    "slow": "timeout",
}


def hostile_batch(d: Path) -> Path:
    """Real letters with the bad ones mixed in (each a copy of a real letter under a marker
    name). Real bombs are in the tests below: how long one takes to reach its allowance
    depends on the machine, and this batch's time limit is short."""
    d.mkdir()
    for n, path in enumerate(GOOD):
        shutil.copy(path, d / f"{n:02d}_{path.name}")
        if n % 2 == 0 and n // 2 < len(BAD):  # a bad one after every other good one
            marker = list(BAD)[n // 2]
            other = SPARE[n // 2]  # its own bytes: the store serves a copy of a stored letter
            shutil.copy(other, d / f"{n:02d}x_{marker}-letter.pdf")
    return d


#: Runs a batch into a store, finishes the run, resumes it, and prints what became of each
#: letter: a process of its own, as a batch that a native crash took down would be.
DRILL = """
import json, sys
from imr_extract.limits import Limits
from imr_extract.runner import BatchRunner
from imr_extract.schema import schema_hash
from imr_extract.store import ResultKey, RunStore, code_version
from test_isolation import Hostile

letters, db = sys.argv[1], sys.argv[2]
key = ResultKey("rules", schema_hash=schema_hash(), version=code_version())
limits = Limits(letter_seconds=1.5, worker_memory=512 * 2**20)
report = {}
with RunStore(db) as store:
    run_id = store.start_run(key, argv=[], inputs=[letters], config={})
    for part in ("first", "resumed"):
        if part == "resumed":
            store.resume_run(run_id)
        runner = BatchRunner(
            Hostile(), workers=2, chunksize=3, store=store, run_id=run_id, key=key, limits=limits
        )
        seen = [
            (o.source.rsplit("/", 1)[-1], o.error.code if o.error else None, o.reused)
            for o in runner.run([letters])
        ]
        store.finish_run(run_id, letters=len(seen), reused=runner.reused)
        report[part] = {"seen": seen, "status": store.run(run_id).status}
print(json.dumps(report))
"""


def test_hostile_letters_cost_only_themselves_and_a_resumed_run_completes(tmp_path):
    letters = hostile_batch(tmp_path / "letters")
    db = tmp_path / "s.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(SRC)])}
    cmd = [sys.executable, "-c", DRILL, str(letters), str(db)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    names = sorted(p.name for p in letters.iterdir())

    def marker(name: str) -> str | None:
        word = name.split("_", 1)[1].split("-", 1)[0]
        return word if word in BAD else None

    first, resumed = report["first"], report["resumed"]
    # every letter once, in input order; every good one extracted, every bad one its own code
    assert [s[0] for s in first["seen"]] == names
    assert {name: code for name, code, _ in first["seen"]} == {
        name: BAD.get(marker(name) or "") for name in names
    }
    assert not any(reused for *_, reused in first["seen"])
    assert first["status"] == "finished"
    # resumed: the good letters are served from the store (not extracted again), the bad ones
    # are tried again (as every error row is), each charged alone again, and the run finishes
    assert [s[0] for s in resumed["seen"]] == names
    for name, code, reused in resumed["seen"]:
        assert (code, reused) == ((BAD[marker(name)], False) if marker(name) else (None, True))
    assert resumed["status"] == "finished"
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT letter, status, error_code FROM letters").fetchall()
    assert len(rows) == len(names)  # one row per letter: nothing doubled
    assert {r[0]: r[2] for r in rows if r[1] == "error"} == {
        n: BAD[marker(n)] for n in names if marker(n)
    }


def copies(tmp_path: Path, markers: list[str]) -> list[str]:
    """A small batch: a real letter under each marker name (``ok`` for a good one)."""
    paths = []
    for n, word in enumerate(markers):
        path = tmp_path / f"{word}-{n}.pdf"
        shutil.copy(letter_path("CM16-0231745.pdf"), path)
        paths.append(str(path))
    return paths


def test_a_letter_past_its_time_is_stopped_and_the_batch_goes_on(tmp_path):
    paths = copies(tmp_path, ["ok", "slow", "ok", "ok"])
    start = time.monotonic()
    outcomes = list(run_batch(paths, Hostile(), limits=Limits(letter_seconds=1.0)))
    elapsed = time.monotonic() - start
    assert [o.error.code if o.error else None for o in outcomes] == [None, "timeout", None, None]
    assert "1 s" in outcomes[1].error.cause and "--letter-timeout" in outcomes[1].error.cause
    assert elapsed < 10  # the slow letter sleeps a minute: it was stopped


def test_the_memory_allowance_is_an_rlimit_in_each_worker(tmp_path):
    paths = copies(tmp_path, ["ok", "hog", "ok"])
    limited = list(run_batch(paths, Hostile(), limits=Limits(worker_memory=512 * MiB)))
    assert [o.error.code if o.error else None for o in limited] == [None, "out-of-memory", None]
    # the same letter with no allowance allocates its 2 GiB of zero pages and is read
    unlimited = list(run_batch(paths, Hostile(), limits=Limits(worker_memory=0)))
    assert all(o.ok for o in unlimited)


@pytest.mark.parametrize("kw", [{}, {"concurrency": 2}], ids=["processes", "threads"])
def test_a_decompression_bomb_is_out_of_memory_and_costs_only_itself(tmp_path, kw):
    bomb = tmp_path / "bomb.pdf"
    bomb.write_bytes(run_length_bomb(1024 * MiB))  # draws 1 GiB (64 KB on disk)
    good = [str(p) for p in sorted(LETTERS.glob("pdf/*.pdf"))[:3]]
    paths = [good[0], str(bomb), *good[1:]]
    limits = Limits(worker_memory=400 * MiB)
    outcomes = list(run_batch(paths, extract_document, limits=limits, **kw))
    assert [o.error.code if o.error else None for o in outcomes] == [
        None,
        "out-of-memory",
        None,
        None,
    ]
    assert "400 MiB" in outcomes[1].error.cause
    assert [o.record for o in outcomes if o.ok] == [extract_document(read_path(p)) for p in good]


def many_items() -> Document:
    """A real letter with more than one decided item."""
    for path in sorted(LETTERS.glob("pdf/*.pdf")):
        doc = read_path(path)
        if len(extract_document(doc).items) >= 3:
            return doc
    raise AssertionError("no bundled letter has three items")


def test_a_letter_with_more_items_than_the_limit_is_refused_by_every_extractor(tmp_path):
    doc = many_items()
    n = len(extract_document(doc).items)
    with pytest.raises(TooManyItemsError) as caught:
        extract_document(doc, limits=Limits(max_items=n - 1))
    assert caught.value.code == "too-many-items" and f"{n} decided items" in caught.value.cause
    assert len(extract_document(doc, limits=Limits(max_items=n)).items) == n
    # in a batch: the rules in workers, and any other extractor (run in threads) alike
    limits = Limits(max_items=n - 1)
    for kw in ({}, {"concurrency": 2}):
        extractor = extract_document if not kw else Hostile()
        [outcome] = list(run_batch([doc.path], extractor, limits=limits, **kw))
        assert outcome.error is not None and outcome.error.code == "too-many-items"


def test_a_crash_in_a_small_cli_batch_finishes_the_run_and_resume_completes(tmp_path):
    """The issue's case: under a memory limit on the whole process, a bomb in a batch of real
    letters aborted the batch, left the run running, and aborted ``--resume`` again."""
    letters = tmp_path / "letters"
    letters.mkdir()
    good = sorted(LETTERS.glob("pdf/*.pdf"))[:4]
    for path in good:
        shutil.copy(path, letters / path.name)
    (letters / "CM99-bomb.pdf").write_bytes(run_length_bomb(1024 * MiB))
    db = tmp_path / "s.sqlite"
    cap = 640 * MiB  # the whole batch's address space (ulimit -v): workers get no more

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "IMR_STORE": str(db)}
    cli = [str(Path(sys.executable).parent / "imr-extract"), "extract"]
    for argv in ([str(letters)], ["--resume", "last"]):
        done = subprocess.run(
            [*cli, *argv, "-o", str(tmp_path / "out.jsonl"), "--no-progress"],
            capture_output=True,
            text=True,
            env=env,
            preexec_fn=limited,
            timeout=120,
        )
        assert done.returncode == 1, done.stderr[-2000:]  # some letters failed; none lost
        assert "CM99-bomb.pdf" in done.stderr and "memory allowance" in done.stderr
        records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
        assert sorted(r["letter"] for r in records) == [p.name for p in good]
        with sqlite3.connect(db) as con:
            status = con.execute("SELECT status FROM runs").fetchall()
            codes = dict(con.execute("SELECT letter, error_code FROM letters").fetchall())
        assert status == [("finished",)]
        assert codes == {**{p.name: None for p in good}, "CM99-bomb.pdf": "out-of-memory"}


def test_standard_input_past_its_cap_is_an_error_row_and_the_batch_goes_on(monkeypatch, tmp_path):
    from imr_extract import ingest
    from imr_extract.schema import schema_hash
    from imr_extract.store import ResultKey, RunStore, code_version

    if not hasattr(ingest, "read_stdin"):
        pytest.skip("this ingest reads standard input whole (the streamed reader is ingest's)")
    data = letter_path("CM16-0231745.pdf").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    good = str(letter_path("CM16-0231706.pdf"))
    key = ResultKey("rules", schema_hash=schema_hash(), version=code_version())
    with RunStore(tmp_path / "s.sqlite") as store:
        run_id = store.start_run(key, argv=[], inputs=["-", good], config={})
        limits = Limits(max_stdin_bytes=len(data) // 2)
        runner = BatchRunner(store=store, run_id=run_id, key=key, limits=limits)
        outcomes = list(runner.run(["-", good]))
    assert [o.error.code if o.error else None for o in outcomes] == ["too-large", None]
    assert runner.reused == 0
    with sqlite3.connect(tmp_path / "s.sqlite") as con:
        rows = con.execute("SELECT status, error_code FROM letters ORDER BY status").fetchall()
    assert rows == [("error", "too-large"), ("ok", None)]
