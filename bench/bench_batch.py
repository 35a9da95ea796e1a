"""A batch at scale: 10,000 letters through ``imr-extract extract``, as a user runs it.

For text letters and for PDF letters, with 1 and with 2 workers, it prints:

  letters/s        wall clock, from the command's start to its exit (start-up included)
  per core         letters per CPU-second, for 1 worker only: the batch process's CPU time
                   (exact, from wait4) and its worker's and forkserver's (sampled from /proc
                   every 20 ms: they are not its children, so wait4 does not count them)
  CPU s            those processes' user + system seconds (1 worker)
  RSS MiB          peak resident memory of the batch process (exact, from wait4), and of the
                   largest worker process (sampled every 20 ms)
  RSS 1/5 -> end   the batch process's memory a fifth of the way through and at the end:
                   flat memory means these are the same

The corpus is the shared letters repeated: text letters are each letter's text with a few
trailing spaces (and PDF letters each PDF with a comment after its %%EOF), so every copy has
its own sha256 and the run store reuses nothing. The run store is on, as by default; each
configuration gets a fresh one.

    python bench/bench_batch.py [--letters 10000] [--workers 1 2] [--inputs text pdf]
                                [--repeat N] [--no-store] [--keep DIR]

Goals (issue 5): rules from text >= 1,000 letters/s per core; PDF >= 35 letters/s per core;
memory flat as the batch grows.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LETTERS = ROOT / "tests" / "data" / "letters"
CLI = [sys.executable, "-c", "from imr_extract.cli import main; main()"]
PAGE = os.sysconf("SC_PAGE_SIZE")


def build_corpus(kind: str, letters: Path, n: int, out: Path) -> Path:
    """``n`` letter files of ``kind`` ("text" or "pdf") under ``out/kind``, all distinct."""
    from imr_extract.ingest import read_path

    d = out / kind
    d.mkdir(parents=True)
    pdfs = sorted(letters.rglob("*.pdf"))
    if kind == "pdf":
        sources = [p.read_bytes() for p in pdfs]
        for i in range(n):
            data = sources[i % len(sources)] + f"\n% copy {i}\n".encode()
            (d / f"{i:05d}.pdf").write_bytes(data)
        return d
    texts = [read_path(p).text for p in [*pdfs, *sorted(letters.rglob("*.txt"))]]
    for i in range(n):
        text = texts[i % len(texts)] + "\n" + " " * (i // len(texts))
        (d / f"{i:05d}.txt").write_text(text, encoding="utf-8")
    return d


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * PAGE
    except (OSError, ValueError, IndexError):
        return 0


TICK = os.sysconf("SC_CLK_TCK")


def _cpu(pid: int) -> float:
    """User + system seconds ``pid`` has used so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, ValueError, IndexError):
        return 0.0


def _children(pid: int) -> list[int]:
    """Every process below ``pid`` (the forkserver and its workers)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


@dataclass
class Sampler:
    """Samples the batch process's and its children's RSS until stopped."""

    pid: int
    interval: float = 0.02
    main: list[tuple[float, int]] = field(default_factory=list)
    worker_peak: int = 0
    #: CPU seconds of each process below the batch process, as last sampled.
    cpu: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        tick = 0
        kids: list[int] = []
        while not self._stop.is_set():
            self.main.append((time.perf_counter(), _rss(self.pid)))
            if tick % 10 == 0:  # walking /proc is the costly part: do it every 0.2 s
                kids = _children(self.pid)
            for kid in kids:
                self.worker_peak = max(self.worker_peak, _rss(kid))
                self.cpu[kid] = max(self.cpu.get(kid, 0.0), _cpu(kid))
            tick += 1
            self._stop.wait(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Row:
    inputs: str
    workers: int
    letters: int
    seconds: float
    cpu_s: float | None
    main_peak_mib: float
    worker_peak_mib: float | None
    rss_fifth_mib: float
    rss_end_mib: float

    @property
    def per_s(self) -> float:
        return self.letters / self.seconds

    @property
    def per_cpu_s(self) -> float | None:
        return self.letters / self.cpu_s if self.cpu_s else None


def run_one(corpus: Path, kind: str, workers: int, n: int, tmp: Path, store: bool) -> Row:
    out = tmp / f"out-{kind}-{workers}.jsonl"
    db = tmp / f"store-{kind}-{workers}.sqlite"
    for stale in tmp.glob(f"{db.name}*"):
        stale.unlink()
    args = [*CLI, "extract", str(corpus), "-o", str(out), "--workers", str(workers)]
    args += ["--no-progress", "--no-summary"]
    args += ["--store", str(db)] if store else ["--no-store"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "IMR_"))}
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stderr=subprocess.PIPE)
    sampler = Sampler(proc.pid)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    sampler.stop()
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.stderr is not None
    if proc.returncode != 0:
        raise SystemExit(f"{kind}/{workers}: exit {proc.returncode}: {proc.stderr.read()[-2000:]}")
    written = sum(1 for _ in out.open(encoding="utf-8"))
    if written != n:
        raise SystemExit(f"{kind}/{workers}: {written} records for {n} letters")
    samples = [rss for t, rss in sampler.main if t <= start + seconds]
    fifth = samples[len(samples) // 5] if samples else 0
    end = max(samples[-5:]) if samples else 0
    return Row(
        inputs=kind,
        workers=workers,
        letters=n,
        seconds=seconds,
        cpu_s=usage.ru_utime + usage.ru_stime + sum(sampler.cpu.values()) if workers == 1 else None,
        main_peak_mib=usage.ru_maxrss / 1024,
        worker_peak_mib=sampler.worker_peak / 2**20 or None,
        rss_fifth_mib=fifth / 2**20,
        rss_end_mib=end / 2**20,
    )


def print_table(rows: list[Row]) -> None:
    head = (
        f"{'inputs':<7}{'workers':>8}{'letters':>9}{'seconds':>9}{'letters/s':>11}"
        f"{'per core':>10}{'CPU s':>8}{'RSS MiB':>9}{'worker':>8}{'RSS 1/5 -> end':>17}"
    )
    print(head)
    for r in rows:
        per_core = f"{r.per_cpu_s:,.0f}" if r.per_cpu_s else "-"
        cpu = f"{r.cpu_s:.1f}" if r.cpu_s else "-"
        worker = f"{r.worker_peak_mib:.0f}" if r.worker_peak_mib else "-"
        print(
            f"{r.inputs:<7}{r.workers:>8}{r.letters:>9,}{r.seconds:>9.1f}{r.per_s:>11,.0f}"
            f"{per_core:>10}{cpu:>8}{r.main_peak_mib:>9.0f}{worker:>8}"
            f"{f'{r.rss_fifth_mib:.0f} -> {r.rss_end_mib:.0f}':>17}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--letters", type=int, default=10_000, help="letters per configuration")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--inputs", nargs="+", choices=["text", "pdf"], default=["text", "pdf"])
    ap.add_argument("--repeat", type=int, default=1, help="runs per configuration")
    ap.add_argument("--no-store", action="store_true", help="run with --no-store")
    ap.add_argument("--source", type=Path, default=DEFAULT_LETTERS, help="letters to repeat")
    ap.add_argument("--keep", type=Path, help="build the corpus here and keep it")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="imr-bench-")) if args.keep is None else args.keep
    try:
        rows = []
        for kind in args.inputs:
            corpus = tmp / kind
            if not corpus.is_dir() or len(list(corpus.iterdir())) != args.letters:
                shutil.rmtree(corpus, ignore_errors=True)
                t = time.perf_counter()
                build_corpus(kind, args.source, args.letters, tmp)
                print(f"built {args.letters:,} {kind} letters in {time.perf_counter() - t:.1f} s")
            for workers in args.workers:
                for _ in range(args.repeat):
                    row = run_one(corpus, kind, workers, args.letters, tmp, not args.no_store)
                    rows.append(row)
                    print(f"  {kind}, {workers} worker(s): {row.per_s:,.0f} letters/s", flush=True)
        print()
        print_table(rows)
        print(f"({os.cpu_count()} CPUs; store {'off' if args.no_store else 'on'})")
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
