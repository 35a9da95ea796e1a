"""What isolation costs a small batch: every letter read in a worker process vs in this one.

For a batch of the first N bundled letters (tests/data/letters; PDFs then the text letters), in
a fresh interpreter per run (as the CLI runs), with the rules, it prints the median of
``--repeat`` runs of:

  process s     the interpreter's start to its exit: imports, the forkserver's start (it
                loads the rules once; workers fork from it), the batch, shutdown
  batch s       ``run_batch`` alone, first letter in to last result out
  letters/s     letters / batch s
  vs inline     batch s minus the in-process batch's (what isolation adds)

for ``inline`` (``isolate=False``: the batch process reads every letter itself, as batches
under 200 letters did before isolation) and ``isolated`` with 1 and 2 workers. Then the cost of a
crash: a batch of the same letters where every fifth letter kills its worker (SIGKILL in a
test extractor), in ms per replaced worker over the clean isolated batch.

    python bench/bench_isolation.py [--letters 10 66] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LETTERS = ROOT / "tests" / "data" / "letters"

RUN = """
import json, os, signal, sys, time
from imr_extract.extract import extract_document
from imr_extract.runner import run_batch

class Crashing:
    def __call__(self, doc):
        if doc.name.startswith("crash-"):
            os.kill(os.getpid(), signal.SIGKILL)
        return extract_document(doc)

if __name__ == "__main__":
    paths, isolate, workers, crash = json.loads(sys.argv[1])
    extractor = Crashing() if crash else extract_document
    start = time.perf_counter()
    out = list(run_batch(paths, extractor, isolate=isolate, workers=workers, total=len(paths)))
    batch = time.perf_counter() - start
    bad = [o.error.code for o in out if o.error is not None]
    print(json.dumps({"batch": batch, "ok": len(out) - len(bad), "bad": bad}))
"""


def letters(n: int) -> list[str]:
    found = sorted(LETTERS.glob("pdf/*.pdf")) + sorted(LETTERS.glob("txt/*.txt"))
    return [str(p) for p in found[:n]]


def one_run(
    script: Path, paths: list[str], isolate: bool, workers: int, crash: bool
) -> tuple[float, float]:
    """(process seconds, batch seconds) of one fresh interpreter running ``script``."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(script), json.dumps([paths, isolate, workers, crash])],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    wall = time.perf_counter() - start
    result = json.loads(done.stdout)
    expect_bad = sum(Path(p).name.startswith("crash-") for p in paths)
    assert len(result["bad"]) == expect_bad, result
    assert all(code == "worker-crashed" for code in result["bad"]), result
    return wall, result["batch"]


def crash_copies(paths: list[str], out: Path) -> list[str]:
    """``paths`` with every fifth letter a copy named ``crash-...`` (the test extractor kills
    its worker on it)."""
    out.mkdir(parents=True, exist_ok=True)
    mixed = []
    for i, path in enumerate(paths):
        if i % 5 == 4:
            copy = out / f"crash-{Path(path).name}"
            copy.write_bytes(Path(path).read_bytes())
            mixed.append(str(copy))
        else:
            mixed.append(path)
    return mixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--letters", type=int, nargs="+", default=[10, 66])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    import tempfile

    configs = [
        ("inline", False, 1),
        ("isolated, 1 worker", True, 1),
        ("isolated, 2 workers", True, 2),
    ]
    print(f"{'batch':>6}  {'configuration':<22}{'process s':>10}{'batch s':>9}"
          f"{'letters/s':>11}{'vs inline':>11}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        # a script, not -c: the workers import its test extractor from the main module
        script = Path(tmp) / "bench_isolation_run.py"
        script.write_text(RUN)
        for n in args.letters:
            paths = letters(n)
            inline = 0.0
            clean: dict[int, float] = {}
            for name, isolate, workers in configs:
                runs = [one_run(script, paths, isolate, workers, False) for _ in range(args.repeat)]
                wall = statistics.median(r[0] for r in runs)
                batch = statistics.median(r[1] for r in runs)
                if not isolate:
                    inline = batch
                else:
                    clean[workers] = batch
                extra = f"{(batch - inline) * 1000:+.0f} ms" if isolate else ""
                print(f"{len(paths):>6}  {name:<22}{wall:>10.2f}{batch:>9.2f}"
                      f"{len(paths) / batch:>11.1f}{extra:>11}")  # fmt: skip
            mixed = crash_copies(paths, Path(tmp) / str(n))
            crashes = sum(Path(p).name.startswith("crash-") for p in mixed)
            for workers in (1, 2):
                runs = [one_run(script, mixed, True, workers, True) for _ in range(args.repeat)]
                batch = statistics.median(r[1] for r in runs)
                per = (batch - clean[workers]) / crashes * 1000 if crashes else 0.0
                print(f"{len(paths):>6}  {f'{crashes} crashes, {workers} worker(s)':<22}"
                      f"{statistics.median(r[0] for r in runs):>10.2f}{batch:>9.2f}"
                      f"{len(paths) / batch:>11.1f}{f'{per:+.0f} ms/crash':>15}")  # fmt: skip


if __name__ == "__main__":
    main()
