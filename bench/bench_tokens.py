"""Model tokens per letter: the LLM backend vs the hybrid backend, on the recorded letters.

Replays the recorded calls in cassettes/ (no network, no key): the LLM backend reads each letter
whole; the hybrid backend runs the rules and asks the model only for what they could not verify.
Prints tokens per letter for each and the hybrid's share of the LLM's tokens.
Goal (issue 5): on known layouts the hybrid spends at most 10% of the LLM's tokens.

    python bench/bench_tokens.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    from imr_extract.hybrid import HybridExtractor
    from imr_extract.ingest import read_path
    from imr_extract.llm import LLMExtractor
    from imr_extract.schema import Usage
    from llm_cassettes import make_vcr
    from test_llm_replay import FULL_LETTERS, LONG_ANSWERS, cassette_name, replay_config

    rows = []
    totals = {"llm": Usage(), "hybrid": Usage()}
    with tempfile.TemporaryDirectory() as tmp:
        for letter in FULL_LETTERS:
            path = next((ROOT / "tests" / "data" / "letters").glob(f"*/{letter}"))
            doc = read_path(path)
            config = replay_config(Path(tmp), max_tokens=LONG_ANSWERS.get(letter, 2048))
            llm = LLMExtractor(config)
            cassette = f"{cassette_name(letter)}.yaml"
            with make_vcr("none").use_cassette(cassette, allow_playback_repeats=True):
                llm_usage = llm(doc).extractor.usage
                hybrid = HybridExtractor(LLMExtractor(config))(doc)
            totals["llm"] += llm_usage
            totals["hybrid"] += hybrid.extractor.usage
            rows.append(
                (
                    letter,
                    hybrid.layout,
                    llm_usage.total_tokens,
                    hybrid.extractor.usage.total_tokens,
                    hybrid.extractor.routed,
                )
            )
    print(f"{'letter':<28} {'layout':<26} {'llm tokens':>10} {'hybrid':>8}  sent")
    for letter, layout, llm_t, hyb_t, routed in rows:
        print(f"{letter:<28} {layout:<26} {llm_t:>10,} {hyb_t:>8,}  {routed}")
    n = len(rows)
    llm_t, hyb_t = totals["llm"].total_tokens, totals["hybrid"].total_tokens
    share = hyb_t / llm_t if llm_t else 0.0
    print(f"{'per letter':<55} {llm_t / n:>10,.0f} {hyb_t / n:>8,.0f}")
    print(
        f"hybrid spends {share:.1%} of the LLM backend's tokens on these {n} letters (goal <= 10%)"
    )


if __name__ == "__main__":
    main()
