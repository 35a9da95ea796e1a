"""Model calls against slow and lying endpoints: how long each try is held, and what it is called.

For each hostile endpoint of ``tests/hostile_endpoints.py`` it makes one structured call (the
model schema of a letter) and prints the wall-clock seconds of the whole call, the requests the
endpoint received, the seconds per request, the waits the client asked for between tries (they
are recorded, not slept, so a 100,000 s Retry-After shows without waiting for it), and the error
code and message.

    python bench/hostile_calls.py [--timeout 2] [--retries 1] [--letter-seconds 30]
                                  [--interval 1.0] [--only drip,html]

``--interval`` is the drip's seconds per byte: a completion body is ~300 bytes, so without an
end-to-end timeout one drip try lasts ~300 x interval seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import hostile_endpoints as h
from imr_extract.errors import ImrExtractError
from imr_extract.llm.client import structured_call
from imr_extract.llm.config import LLMConfig, LLMMode
from imr_extract.llm.response import LLMLetter


def modes(interval: float) -> dict[str, h.Hostile]:
    return {
        "drip": h.drip(interval),
        "drip-headers": h.drip_headers(interval),
        "retry-after-100000": h.retry_after("100000"),
        "html-200": h.html(),
        "no-choices-200": h.no_choices(),
        "empty-choices-200": h.empty_choices(),
    }


def main() -> None:
    import instructor  # noqa: F401 - imported before the clock starts (it takes a second)

    logging.disable(logging.CRITICAL)  # instructor logs every failed try
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--retries", type=int, default=1)
    ap.add_argument("--letter-seconds", type=float, default=30.0)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    fields = {f.name for f in dataclasses.fields(LLMConfig)}
    extra = {"letter_seconds": args.letter_seconds} if "letter_seconds" in fields else {}
    print(
        f"timeout {args.timeout} s, {args.retries} transport retr(y/ies), "
        f"letter deadline {extra.get('letter_seconds', 'none (this code has none)')}, "
        f"drip {args.interval} s/byte"
    )
    print(f"{'endpoint':<20} {'call s':>7} {'reqs':>4} {'s/req':>6} {'waits asked':>14}  outcome")
    with tempfile.TemporaryDirectory() as tmp:
        # One call first: the first structured call builds instructor's handlers and the schema
        # (about a second and a half) and would be counted against the first endpoint.
        first = ["warm-up", *modes(args.interval)]
        for name in first:
            reply = h.empty_choices() if name == "warm-up" else modes(args.interval)[name]
            if only and name not in only and name != "warm-up":
                continue
            with h.serve_hostile(reply) as server:
                config = LLMConfig(
                    base_url=server.base_url,
                    model="fake-model",
                    api_key="imr-test-placeholder-not-a-key",
                    mode=LLMMode.MD_JSON,
                    timeout_s=args.timeout,
                    transport_retries=args.retries,
                    backoff_initial_s=0.01,
                    backoff_max_s=0.02,
                    max_reasks=0,
                    use_cache=False,
                    cache_dir=Path(tmp),
                    **extra,  # type: ignore[arg-type]
                )
                waits: list[float] = []
                messages = [{"role": "user", "content": "Read the letter."}]
                start = time.monotonic()
                try:
                    structured_call("bench.txt", config, messages, LLMLetter, sleep=waits.append)
                    outcome = "answered"
                except ImrExtractError as exc:
                    outcome = f"{exc.code}: {exc.cause}"[:110]
                elapsed = time.monotonic() - start
                n = len(server.requests)
            if name == "warm-up":
                continue
            asked = ",".join(f"{w:.3g}" for w in waits) or "-"
            per = elapsed / n if n else 0.0
            print(f"{name:<20} {elapsed:7.2f} {n:4d} {per:6.2f} {asked:>14}  {outcome}")


if __name__ == "__main__":
    main()
