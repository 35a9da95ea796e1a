"""Requests/s and latency of the extraction service (``imr-extract serve``) on loopback.

For each run store (``--stores``: a SQLite file in a temporary directory; a database on a
throwaway PostgreSQL server started as the tests start one, ``tests/pg.py``: Unix socket, fsync
off) and each number of service processes (``--workers``), a real server is started on
127.0.0.1 (``--no-auth``), and a load generator bounded in count (``--requests``) and in time
(``--seconds``) posts a bundled PDF with ``--concurrency`` requests in flight. ``extract``:
every request is a new letter (the PDF with a distinct comment after its end, so its SHA-256
differs and the store cannot answer it), read and extracted with the rules; ``reused``: the same
letters again, answered from the run store. Prints one row per configuration; without
PostgreSQL's server binaries (apt-get install postgresql) or psycopg, its rows are left out
with a note:

    python bench/bench_service.py --stores sqlite postgresql --workers 1 2 --requests 200
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pg import Server, _bindir  # noqa: E402
from service_server import serving  # noqa: E402

PDF = {"Content-Type": "application/pdf"}
LETTER = ROOT / "tests" / "data" / "letters" / "pdf" / "CM16-0231706.pdf"


def variants(data: bytes, n: int) -> list[bytes]:
    """``n`` copies of a PDF that differ in a comment after its end (same text, other hash)."""
    return [data + f"\n% bench {i}\n".encode() for i in range(n)]


def load(
    url: str, letters: list[bytes], concurrency: int, seconds: float
) -> tuple[int, int, float, list[float]]:
    """Post every letter (until ``seconds`` pass): (sent, answered 200, wall seconds, latencies)."""
    deadline = time.monotonic() + seconds
    latencies: list[float] = []
    ok = 0

    with httpx.Client(base_url=url, timeout=120) as client:

        def one(data: bytes) -> tuple[bool, float] | None:
            if time.monotonic() > deadline:
                return None
            started = time.perf_counter()
            r = client.post(
                "/v1/extract", content=data, headers={"Content-Type": "application/pdf"}
            )
            return r.status_code == 200, time.perf_counter() - started

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = [r for r in pool.map(one, letters) if r is not None]
        wall = time.perf_counter() - started
    for good, seconds_taken in results:
        ok += good
        latencies.append(seconds_taken)
    return len(results), ok, wall, latencies


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@contextlib.contextmanager
def postgres() -> Iterator[Server | str]:
    """A throwaway PostgreSQL server (stopped and removed after), or why there is none."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield "psycopg is not installed (pip install -e '.[postgres]')"
        return
    bindir = _bindir()
    if bindir is None:
        yield "no PostgreSQL server binaries (apt-get install postgresql)"
        return
    root = Path(tempfile.mkdtemp(prefix="imr-pg-bench-"))
    os.chmod(root, 0o755)
    server = Server(bindir, root)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def run(
    store: str, target: str | None, workers: int, args: argparse.Namespace, data: bytes
) -> None:
    """Start a service on ``target`` (None: a SQLite file) and print its two rows."""
    extra = ["--workers", str(workers), "--no-auth", "--max-queue", str(args.requests)]
    if args.letter_workers:
        extra += ["--letter-workers", str(args.letter_workers)]
    with tempfile.TemporaryDirectory() as tmp, serving(Path(tmp), *extra, store=target) as server:
        letters = variants(data, args.requests)
        load(server.url, variants(data + b"\n% warm", 4), 2, 30)  # warm the workers
        for mode in ("extract", "reused"):
            sent, ok, wall, lat = load(server.url, letters, args.concurrency, args.seconds)
            rate = sent / wall if wall > 0 else 0.0
            print(
                f"{store:<10} {workers:>7} {mode:<8} {sent:>5} {ok:>5} {rate:>8.1f} "
                f"{percentile(lat, 0.5) * 1000:>8.1f} {percentile(lat, 0.99) * 1000:>8.1f}",
                flush=True,
            )
            if ok != sent:
                raise SystemExit(f"{sent - ok} requests were not answered 200")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--stores", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"]
    )
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="service processes")
    ap.add_argument("--letter-workers", type=int, default=None, help="per service process")
    ap.add_argument("--requests", type=int, default=200, help="requests per configuration")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight")
    ap.add_argument("--seconds", type=float, default=60.0, help="time cap per configuration")
    args = ap.parse_args()
    data = LETTER.read_bytes()
    print(
        f"letter {LETTER.name} ({len(data):,} bytes), {args.requests} requests per row "
        f"(at most {args.seconds:g} s), {args.concurrency} in flight, {os.cpu_count()} cores"
    )
    print(
        f"{'store':<10} {'workers':>7} {'mode':<8} {'sent':>5} {'ok':>5} {'req/s':>8} "
        f"{'p50 ms':>8} {'p99 ms':>8}",
        flush=True,
    )
    if "sqlite" in args.stores:
        for workers in args.workers:
            run("sqlite", None, workers, args, data)
    if "postgresql" in args.stores:
        with postgres() as pg:
            if isinstance(pg, str):
                print(f"postgresql: skipped, {pg}", flush=True)
                return
            for workers in args.workers:
                run("postgresql", pg.database(), workers, args, data)


if __name__ == "__main__":
    main()
