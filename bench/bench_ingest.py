"""What the hostile-file defences of ingest cost, and what they save (issue 12).

Prints, for the bundled PDF letters, letters per CPU-second (best of ``--rounds``) of:
  plain        pdfium's text of every page, joined (ingest before issue 12)
  no-guard     ingest without the content-size guard (invisible text left out only)
  no-hidden    ingest without the invisible-text pass (content-size guard only)
  ingest       ingest as shipped (both)
and, each in its own process (so peak RSS is its own), for the hostile files of
``tests/hostile.py``: seconds, characters and peak RSS, plain against ingest:
  bomb         a PDF whose page content inflates to ``--bomb-mib`` MiB
  amplify      ``--pages`` pages sharing one content stream

    python bench/bench_ingest.py [--rounds 5] [--bomb-mib 1024] [--pages 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PDFS = sorted((ROOT / "tests" / "data" / "letters" / "pdf").glob("*.pdf"))


def plain_text(data: bytes) -> str:
    import pypdfium2 as pdfium

    from imr_extract.ingest import join_pages

    pdf = pdfium.PdfDocument(data, password="")
    try:
        pages = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return join_pages(pages)[0]
    finally:
        pdf.close()


def _rate(read, datas: list[bytes], rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for data in datas:
            read(data)
        best = min(best, time.process_time() - start)
    return len(datas) / best


def speed(rounds: int) -> None:
    from imr_extract import ingest

    datas = [p.read_bytes() for p in PDFS]
    rows = {"plain": lambda d: plain_text(d), "ingest": lambda d: ingest.read_bytes(d, "x.pdf")}
    rates = {name: _rate(fn, datas, rounds) for name, fn in rows.items()}
    check = ingest._ContentGuard.check
    ingest._ContentGuard.check = lambda self, i, n: None  # type: ignore[method-assign]
    rates["no-guard"] = _rate(rows["ingest"], datas, rounds)
    ingest._ContentGuard.check = check  # type: ignore[method-assign]
    find = ingest._HiddenTextFinder.find
    ingest._HiddenTextFinder.find = lambda self, page, box: ([], {})  # type: ignore[method-assign]
    rates["no-hidden"] = _rate(rows["ingest"], datas, rounds)
    ingest._HiddenTextFinder.find = find  # type: ignore[method-assign]
    print(f"bundled PDF letters: {len(datas)}, letters per CPU-second (best of {rounds})")
    for name in ("plain", "no-guard", "no-hidden", "ingest"):
        print(f"  {name:<10} {rates[name]:7.0f}")


def _hostile(kind: str, how: str, size: int) -> dict:
    """Run one hostile read in this process (called in a child) and report it."""
    import resource

    sys.path.insert(0, str(ROOT / "tests"))
    import hostile
    from imr_extract.errors import ImrExtractError
    from imr_extract.ingest import read_bytes

    data = (
        hostile.decompression_bomb(size * 2**20)
        if kind == "bomb"
        else hostile.page_amplification(size)
    )
    start = time.perf_counter()
    try:
        chars = len(plain_text(data) if how == "plain" else read_bytes(data, "h.pdf").text)
        outcome = f"read {chars:,} chars"
    except ImrExtractError as exc:
        outcome = exc.code
    return {
        "seconds": time.perf_counter() - start,
        "outcome": outcome,
        "file_mb": len(data) / 1e6,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def hostile_files(bomb_mib: int, pages: int) -> None:
    print("hostile files (each read in its own process):")
    for kind, size in (("bomb", bomb_mib), ("amplify", pages)):
        for how in ("plain", "ingest"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", kind, how, str(size)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(
                f"  {kind:<8} {how:<7} file {r['file_mb']:5.2f} MB  {r['seconds']:7.2f} s  "
                f"peak {r['peak_mb']:6.0f} MB  {r['outcome']}"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bomb-mib", type=int, default=1024)
    ap.add_argument("--pages", type=int, default=10_000)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        kind, how, size = args.child
        print(json.dumps(_hostile(kind, how, int(size))))
        return
    speed(args.rounds)
    hostile_files(args.bomb_mib, args.pages)


if __name__ == "__main__":
    main()
