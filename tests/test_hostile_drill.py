"""The hostile-corpus drill (issue 12): every hostile file the project was attacked with, mixed
into a batch of every bundled real letter, run by the command line as an operator would run it:
the hybrid backend against an endpoint that drips, stalls, lies and echoes the key, the whole
process under an address-space limit, then ``--resume last``.

What must hold, all at once:

* every good letter is extracted exactly once (a record, and one store row), the real letters
  with the items the rules read alone; a letter the hybrid sends to the model keeps the rules'
  record whatever the endpoint says;
* every bad file is named on stderr, in ``--errors`` and in the store, with its own code;
* the hostile part of a readable file (invisible text) is no item;
* a file name that is not UTF-8 is carried, not fatal;
* the run finishes, ``--resume last`` completes without tripping on anything, and nothing is
  doubled;
* peak memory of any process stays far below what the bombs inflate to;
* no piece of the key is in any byte written.

Nothing big is committed: ``tests/hostile.py`` builds the files, ``tests/hostile_endpoints.py``
serves the endpoint.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import hostile
import hostile_endpoints as he
from conftest import LETTERS, document
from test_secrets import environment, leaks
from test_verify import HEADER

MiB = 2**20
#: The whole batch's address space: the 4 GiB bomb alone took 5.3 GB before issue 12.
PROCESS_CAP = 1536 * MiB
#: Each worker's allowance (``--worker-memory``).
WORKER_CAP = "640M"
#: Peak resident memory any process of the batch may reach.
PEAK_BOUND = 800 * MiB
#: A real letter whose header label is renamed, so the hybrid must ask the model for it.
MODEL_LETTERS = 3
#: A name that is not UTF-8 (Latin-1 e-acute), for a real letter held back from the batch.
ODD_NAME = b"CM16-caf\xe9-letter.pdf"

#: Runs the command under the address-space cap and prints the peak RSS (bytes) of every
#: process it waited for (workers and forkserver included: each reaps its children).
DRIVER = textwrap.dedent(
    """
    import resource, subprocess, sys
    cap = int(sys.argv[1])
    def limited():
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    done = subprocess.run(sys.argv[2:], preexec_fn=limited)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    sys.stderr.write(f"\\nDRILL-PEAK-RSS {peak}\\n")
    sys.exit(done.returncode)
    """
)


def hostile_batch(d: Path) -> tuple[list[str], dict[str, str], list[str], str]:
    """Write the batch into ``d``: (good names, bad name -> code, model letters, odd name)."""
    d.mkdir()
    real = sorted(LETTERS.glob("pdf/*.pdf")) + sorted(LETTERS.glob("txt/*.txt"))
    held_back, real = real[0], real[1:]
    good = []
    for n, path in enumerate(real):
        name = f"{n:02d}_{path.name}"
        shutil.copy(path, d / name)
        good.append(name)
    # A real letter under a name that is not UTF-8 (written as \xNN where a name is written).
    with open(os.path.join(os.fsencode(d), ODD_NAME), "wb") as f:
        f.write(held_back.read_bytes())
    odd = os.fsdecode(ODD_NAME).encode("utf-8", "surrogateescape").decode("latin-1")
    odd_written = odd.replace("\xe9", "\\xe9")
    # Real letters the rules cannot finish (a header label renamed): the model is asked.
    model = []
    source = document(HEADER).text
    assert "Date of Injury:" in source
    for n in range(MODEL_LETTERS):
        name = f"model-{n}.txt"
        (d / name).write_text(
            source.replace("Date of Injury:", f"Injury Dt (variant {n}):", 1), encoding="utf-8"
        )
        model.append(name)
    bad: dict[str, str] = {}
    for name, data, code in hostile.corpus():
        (d / f"zz-{name}").write_bytes(data)
        if code is None:
            good.append(f"zz-{name}")
        else:
            bad[f"zz-{name}"] = code
    (d / "zz-run-length-bomb.pdf").write_bytes(hostile.run_length_bomb(1024 * MiB))
    bad["zz-run-length-bomb.pdf"] = "out-of-memory"
    return good, bad, model, odd_written


def run(tmp: Path, *argv: str) -> tuple[int, str, int]:
    """One CLI run in its own process under the cap: (exit code, stderr, peak RSS)."""
    env = environment(tmp, IMR_STORE=str(tmp / "drill.sqlite"))  # the key, no other settings
    cli = [sys.executable, "-m", "imr_extract.cli", "extract"]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(PROCESS_CAP), *cli, *argv],
        cwd=tmp,
        env=env,
        capture_output=True,
        timeout=600,
    )
    stderr = done.stderr.decode("utf-8", "replace")
    peak = int(stderr.rsplit("DRILL-PEAK-RSS ", 1)[1].split()[0])
    (tmp / f"stdout-{len(list(tmp.glob('stdout-*')))}.bin").write_bytes(done.stdout)
    (tmp / f"stderr-{len(list(tmp.glob('stderr-*')))}.bin").write_bytes(done.stderr)
    return done.returncode, stderr, peak


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_AS"), reason="no address-space rlimit here")
def test_hostile_corpus_mixed_into_real_letters(tmp_path: Path) -> None:
    letters = tmp_path / "letters"
    good, bad, model, odd = hostile_batch(letters)
    script = (
        he.drip(interval_s=0.5, max_s=20),
        he.retry_after("100000"),
        he.html(),
        he.empty_choices(),
        he.echo_key(500),
        he.echo_key(401),
    )
    flags = [
        "--backend", "hybrid", "--model", "drill-model", "--timeout", "2",
        "--letter-timeout", "60", "--worker-memory", WORKER_CAP, "--workers", "2",
        "--no-progress", "-o", "out.jsonl", "--errors", "errors.jsonl",
        "--log-file", "drill.log", "--log-level", "DEBUG",
    ]  # fmt: skip
    with he.serve_hostile(*script) as server:
        first = run(tmp_path, "letters", *flags, "--base-url", server.base_url)
        records_first = (tmp_path / "out.jsonl").read_bytes()
        again = run(tmp_path, "--resume", "last", *flags, "--base-url", server.base_url)
    assert server.requests, "the hybrid never asked the endpoint: the drill tests nothing"

    for code, stderr, peak in (first, again):
        assert code == 1, stderr[-3000:]  # some letters failed, none lost, no crash
        assert "Traceback" not in stderr
        assert peak < PEAK_BOUND, f"a process peaked at {peak / MiB:.0f} MiB"
        for name in bad:
            assert f"letters/{name}" in stderr, f"{name} not named on stderr"

    # Every good letter once, in the records of each run (the resumed run serves them).
    for blob in (records_first, (tmp_path / "out.jsonl").read_bytes()):
        records = [json.loads(line) for line in blob.decode().splitlines()]
        names = [r["letter"] for r in records]
        assert sorted(names) == sorted([*good, *model, odd]), set(names) ^ {*good, *model, odd}
    by_name = {r["letter"]: r for r in records}
    for name in model:  # whatever the endpoint said, the rules' record stands
        assert by_name[name]["extractor"]["model_error"], name
        assert by_name[name]["items"], name
    for name in good:
        if "invisible" in name or "off-page" in name:
            requests = [i["request"] for i in by_name[name]["items"]]
            assert not any("lumbar fusion" in r.lower() for r in requests), (name, requests)

    # Every bad file named with its code, in --errors and the store; the run finished.
    errors = [json.loads(line) for line in (tmp_path / "errors.jsonl").read_text().splitlines()]
    assert {Path(e["letter"]).name: e["error"] for e in errors} == bad
    with sqlite3.connect(tmp_path / "drill.sqlite") as con:
        runs = con.execute("SELECT status FROM runs").fetchall()
        rows = con.execute("SELECT letter, error_code FROM letters").fetchall()
    assert runs == [("finished",)]
    stored = {Path(letter).name: code for letter, code in rows}
    assert len(rows) == len(stored) == len(good) + len(model) + 1 + len(bad)  # once each
    assert {name: code for name, code in stored.items() if code} == bad

    # No piece of the key in any byte written (outputs, log, store, stdout, stderr).
    for path in tmp_path.rglob("*"):
        if path.is_file() and path.parent != letters:
            assert not leaks(path.read_bytes()), f"the key leaked into {path.name}"
