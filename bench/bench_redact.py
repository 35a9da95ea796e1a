"""What redaction costs: ``redact.redact`` on the texts it meets, with a configured key.

Prints microseconds per call for a short error line (what every ``ImrExtractError`` cause and
store row pays) and for a 30 KB DEBUG log line (a request body holding a whole letter, what
``--log-file --log-level DEBUG`` pays per line), with a 100-character key configured.

    python bench/bench_redact.py [--repeat N]
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

from imr_extract.ingest import read_path
from imr_extract.redact import redact

LETTERS = Path(__file__).resolve().parent.parent / "tests" / "data" / "letters"


def per_call_us(text: str, repeat: int) -> float:
    started = time.perf_counter()
    for _ in range(repeat):
        redact(text)
    return (time.perf_counter() - started) / repeat * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    os.environ["OPENAI_API_KEY"] = "sk-" + "proj-" + secrets.token_urlsafe(69)
    letter = read_path(sorted(LETTERS.rglob("*.pdf"))[0]).text
    body = (letter * (30_000 // len(letter) + 1))[:30_000]
    short = "endpoint answered HTTP 401: Error code: 401 - invalid_request_error (no key here)"
    print(f"short error line ({len(short)} chars): {per_call_us(short, args.repeat * 10):8.1f} us")
    print(f"DEBUG log line ({len(body)} chars):   {per_call_us(body, args.repeat):8.1f} us")


if __name__ == "__main__":
    sys.exit(main())
