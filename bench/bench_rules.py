"""Throughput and peak memory of the rules path over the shared letters.

Prints a table of letters per CPU-second (one process, one thread: the per-core rate; CPU time,
so that other work on a shared machine does not count against it), the wall-clock rate beside
it, and peak RSS, for:
  rules        rules only, on letters already read (the extractor itself)
  text         .txt letters end to end: read + decode + rules
  pdf-ingest   PDF -> text only (pypdfium2, and pypdf for comparison)
  pdf          PDF letters end to end: ingest + rules

Each phase runs in its own process so its peak RSS is its own.
Goals (issue 2): rules from text >= 1,000 letters/s per core; PDF ingest >= 35 letters/s per core.

    python bench/bench_rules.py [--rounds N] [--letters DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LETTERS = ROOT / "tests" / "data" / "letters"


def _phase(name: str, letters: Path, rounds: int, workdir: Path) -> dict:
    from imr_extract.extract import extract_document
    from imr_extract.ingest import read_path
    from imr_extract.runner import settle_heap

    pdfs = sorted(letters.rglob("*.pdf"))
    texts = sorted(workdir.glob("*.txt"))
    # Records are dropped as they are made, as the batch runner does (it streams): holding a
    # round's records would measure the allocator, not the rules.
    if name == "rules":
        docs = [read_path(p) for p in texts]
        work = lambda: deque((extract_document(d) for d in docs), maxlen=0)  # noqa: E731
        n = len(docs)
    elif name == "text":
        work = lambda: deque((extract_document(read_path(p)) for p in texts), maxlen=0)  # noqa: E731
        n = len(texts)
    elif name.startswith("pdf-ingest"):
        engine = name.split(":")[1]
        work = lambda: [read_path(p, pdf_engine=engine) for p in pdfs]  # noqa: E731
        n = len(pdfs)
    elif name == "pdf":
        work = lambda: [extract_document(read_path(p)) for p in pdfs]  # noqa: E731
        n = len(pdfs)
    else:
        raise SystemExit(f"unknown phase {name}")
    work()  # warm-up: imports, regex compilation, page caches
    settle_heap()  # as every batch process and worker does after start-up
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(rounds):
        work()
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return {
        "phase": name,
        "letters": n * rounds,
        "seconds": elapsed,
        "letters_per_s": n * rounds / elapsed,
        "letters_per_cpu_s": n * rounds / cpu,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--letters", type=Path, default=DEFAULT_LETTERS)
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps(_phase(args.phase, args.letters, args.rounds, args.workdir)))
        return

    from imr_extract.ingest import read_path

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        # Text input: every letter's text as a UTF-8 .txt file (PDF letters via ingest).
        for p in sorted(args.letters.rglob("*")):
            if p.suffix.lower() in (".pdf", ".txt"):
                (workdir / f"{p.stem}.txt").write_text(read_path(p).text, encoding="utf-8")
        rows = []
        phases = ["rules", "text", "pdf-ingest:pypdfium2", "pdf-ingest:pypdf", "pdf"]
        for phase in phases:
            rounds = args.rounds if not phase.endswith("pypdf") else max(1, args.rounds // 10)
            out = subprocess.run(
                [sys.executable, __file__, "--phase", phase, "--rounds", str(rounds),
                 "--letters", str(args.letters), "--workdir", str(workdir)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append(json.loads(out.stdout))
    print(
        f"{'phase':<22}{'letters':>9}{'seconds':>10}{'per CPU-s':>11}{'per wall-s':>12}"
        f"{'peak RSS MiB':>14}"
    )
    for r in rows:
        print(
            f"{r['phase']:<22}{r['letters']:>9}{r['seconds']:>10.2f}"
            f"{r['letters_per_cpu_s']:>11.1f}{r['letters_per_s']:>12.1f}{r['peak_rss_mib']:>14.1f}"
        )
    print("(one process, one thread: letters per CPU-second is the per-core rate)")


if __name__ == "__main__":
    main()
