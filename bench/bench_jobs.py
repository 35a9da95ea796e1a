"""Letters/s of a job (``POST /v1/jobs``), on one service process or replicas, on loopback.

Real servers are started on 127.0.0.1 (``--no-auth``, ``--letter-workers`` as given): one on a
SQLite store in a temporary directory; with ``--postgres``, also 1 and 2 replicas on one
throwaway PostgreSQL store (``bench_service.postgres``), sharing each job. Each bundled PDF
letter (``tests/data/letters/pdf``, 64) is sent as one job to the first server, as a multipart
form and as a tar.gz: ``extract``, letters the store has not seen (each PDF with a distinct
comment after its end, so its SHA-256 differs); ``reused``, the same job again, answered from
the run store. The time is from the POST to the job's ``finished``, polled every 20 ms, and its
results read whole. Prints one row per run:

    python bench/bench_jobs.py --letter-workers 2 --repeat 1
    python bench/bench_jobs.py --letter-workers 1 --postgres
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_service import postgres  # noqa: E402
from service_server import serving  # noqa: E402

LETTERS = sorted((ROOT / "tests" / "data" / "letters" / "pdf").glob("*.pdf"))


def tar_gz(letters: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, data in letters:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def run_job(client: httpx.Client, how: str, letters: list[tuple[str, bytes]]) -> tuple[int, float]:
    """(letters ok, seconds from the POST to the results read)."""
    started = time.perf_counter()
    if how == "form":
        r = client.post("/v1/jobs", files=[("files", letter) for letter in letters])
    else:
        r = client.post(
            "/v1/jobs", content=tar_gz(letters), headers={"Content-Type": "application/gzip"}
        )
    r.raise_for_status()
    where = r.headers["location"]
    while client.get(where).json()["status"] != "finished":
        time.sleep(0.02)
    lines = client.get(where + "/results").text.splitlines()
    took = time.perf_counter() - started
    return sum('"error"' not in line[:200] for line in lines), took


def bench(
    label: str, replicas: int, tmp: Path, store: str | None, args: argparse.Namespace
) -> None:
    """Start ``replicas`` servers on ``store`` (None: a SQLite file in ``tmp``); print rows."""
    flags = ("--no-auth", "--letter-workers", str(args.letter_workers))
    with contextlib.ExitStack() as stack:
        servers = []
        for n in range(replicas):
            (tmp / str(n)).mkdir(parents=True)
            servers.append(stack.enter_context(serving(tmp / str(n), *flags, store=store)))
        client = stack.enter_context(httpx.Client(base_url=servers[0].url, timeout=300))
        for run in range(args.repeat):
            for how in ("form", "tar.gz"):
                letters = [
                    (p.name, p.read_bytes() + f"\n% bench {how} {run}\n".encode()) for p in LETTERS
                ]
                for mode in ("extract", "reused"):
                    ok, took = run_job(client, how, letters)
                    print(
                        f"{label:<10} {replicas:>8} {how:>6} {mode:<8} {len(letters):>7} {ok:>4}"
                        f" {took:>8.2f} {len(letters) / took:>10.1f}",
                        flush=True,
                    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--letter-workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="Runs of each configuration.")
    parser.add_argument(
        "--postgres", action="store_true", help="Also 1 and 2 replicas on one PostgreSQL store."
    )
    args = parser.parse_args(argv)
    print(
        f"{'store':<10} {'replicas':>8} {'body':>6} {'mode':<8} {'letters':>7} {'ok':>4}"
        f" {'seconds':>8} {'letters/s':>10}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        bench("sqlite", 1, Path(tmp) / "sqlite", None, args)
    if args.postgres:
        with postgres() as pg:
            if isinstance(pg, str):
                print(f"postgresql: skipped, {pg}", flush=True)
                return
            for replicas in (1, 2):
                with tempfile.TemporaryDirectory() as tmp:
                    bench("postgresql", replicas, Path(tmp), pg.database(), args)


if __name__ == "__main__":
    main()
