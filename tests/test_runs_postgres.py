"""A run shared by two processes on PostgreSQL (``Run.join``): each adds its counts when it
finishes, and the run is ``finished`` only when the last of them lets go of it."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pg
from conftest import LETTERS
from imr_extract.backends import build_backend
from imr_extract.runs import Run
from imr_extract.schema import Backend
from imr_extract.store import RunStore
from test_store_postgres import rows

pg_server, pg_url = pg.pg_server, pg.pg_url  # the throwaway server's fixtures

PDFS = sorted(str(p) for p in LETTERS.glob("pdf/*.pdf"))[:6]

#: One process of a shared run: joins it, goes through every input, says it is ready, waits
#: for its go, finishes, and writes [letters, extracted here, whether it was the last].
PROCESS = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from imr_extract.backends import build_backend
    from imr_extract.runs import Run
    from imr_extract.schema import Backend
    from imr_extract.store import RunStore

    url, run_id, ready, go, out, paths = sys.argv[1:7]
    with RunStore(url) as store:
        run = Run.join(store, run_id, build_backend(Backend.RULES))
        outcomes = list(run.extract(json.loads(paths), isolate=False))
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.01)
        last = run.finish()
    Path(out).write_text(json.dumps([len(outcomes), sum(not o.reused for o in outcomes), last]))
    """
)


def _wait_for(path: Path, process: subprocess.Popen[str], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"it exited ({process.returncode}): {process.communicate()[1]}")
        assert time.monotonic() < deadline, f"no {path.name}"
        time.sleep(0.02)


def test_a_shared_run_is_finished_by_the_last_process_and_counts_both(pg_url, tmp_path):
    rules = build_backend(Backend.RULES)
    with RunStore(pg_url) as store:
        run = Run.start(store, rules, inputs=PDFS)
        run.finish()  # the starter is done before the others join: they mark it running again
    script = tmp_path / "process.py"
    script.write_text(PROCESS)
    procs = {}
    for name in ("a", "b"):
        args = [pg_url, run.id, *(str(tmp_path / f"{name}.{x}") for x in ("ready", "go", "out"))]
        procs[name] = subprocess.Popen(
            [sys.executable, str(script), *args, json.dumps(PDFS)],
            stderr=subprocess.PIPE,
            text=True,
        )
    for name, process in procs.items():
        _wait_for(tmp_path / f"{name}.ready", process)
    assert rows(pg_url, "SELECT status FROM runs") == [("running",)]
    (tmp_path / "b.go").touch()  # b finishes first: a still holds the run
    _, err = procs["b"].communicate(timeout=60)
    assert procs["b"].returncode == 0, err
    b = json.loads((tmp_path / "b.out").read_text())
    assert b[0] == len(PDFS) and b[2] is False
    status = rows(pg_url, "SELECT status, finished_at IS NULL, letters FROM runs")
    assert status == [("running", True, len(PDFS))]  # b's counts are in; the run goes on
    (tmp_path / "a.go").touch()
    _, err = procs["a"].communicate(timeout=60)
    assert procs["a"].returncode == 0, err
    a = json.loads((tmp_path / "a.out").read_text())
    assert a[0] == len(PDFS) and a[2] is True
    assert a[1] + b[1] == len(PDFS)  # each letter extracted by one of them
    assert rows(pg_url, "SELECT status, finished_at IS NULL, letters, reused, ok FROM runs") == [
        ("finished", False, 2 * len(PDFS), len(PDFS), len(PDFS))
    ]


def test_a_letter_held_elsewhere_is_extracted_after_the_rest_in_a_pool_of_its_own(pg_url):
    """A letter another process held when the run came to it is taken last, in a second pass
    of the runner: that pass starts its own workers (the first pass's were stopped)."""
    import threading

    rules = build_backend(Backend.RULES)
    with RunStore(pg_url) as other, RunStore(pg_url) as store:
        run = Run.start(store, rules, inputs=PDFS[:3])
        from imr_extract.runner import hash_file

        held = rules.key.key(hash_file(PDFS[0]), PDFS[0])
        assert other.claim_letter(held)
        threading.Timer(1.0, other.close).start()  # its claim ends with its connection
        outcomes = list(run.extract(PDFS[:3], workers=2, min_pool_letters=0))
        run.finish()
    assert [o.source for o in outcomes] == [*PDFS[1:3], PDFS[0]]  # the held one last
    assert all(o.ok and not o.reused for o in outcomes)
