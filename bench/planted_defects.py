"""Planted defects: how many the verifier catches, per kind, on the bundled letters.

Plants every defect kind of ``tests/planted.py`` (record side: the rules' record changed and
re-verified, in the forms ``kept`` / ``located`` / ``rules``; text side: the letter's text
changed and extracted) and prints, per kind and form: planted, caught, catch rate and how they
were caught (flagged / incomplete / corrected / refused / handled). Then, on the untouched
letters, the false-alarm rate (values not verified among all values) and the failed checks.
The goal (issue 11): 100% caught on every kind, false alarms 0.

    python bench/planted_defects.py [--all-sites] [--missed N] [--floors]

``--all-sites`` plants every site (the tests sample up to ``SITES_PER_LETTER`` per letter and
kind); ``--missed N`` lists up to N missed sites per kind; ``--floors`` prints the measured rates
as the ``FLOORS`` entries of ``tests/test_planted_defects.py`` (rounded down to whole percent).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import planted


def report(tallies: dict[str, planted.Tally], missed: int = 0) -> str:
    lines = [f"{'defect kind / form':40} {'planted':>8} {'caught':>8} {'rate':>8}  how"]
    totals: dict[str, planted.Tally] = defaultdict(planted.Tally)
    for name, t in tallies.items():
        how = ", ".join(f"{k} {v}" for k, v in sorted(t.how.items()))
        lines.append(f"{name:40} {t.planted:8} {t.caught:8} {t.rate:8.1%}  {how}")
        total = totals[name.split("/")[0]]
        total.planted += t.planted
        total.caught += t.caught
        lines += [f"    missed: {site}" for site in t.missed[:missed]]
    lines += ["", f"{'defect kind (all forms)':40} {'planted':>8} {'caught':>8} {'rate':>8}"]
    for kind, t in sorted(totals.items()):
        lines.append(f"{kind:40} {t.planted:8} {t.caught:8} {t.rate:8.1%}")
    full = sum(t.rate == 1.0 for t in tallies.values())
    lines.append(f"\n{full} of {len(tallies)} kinds/forms caught in full")
    lines.append("\nuntouched letters (false alarms):")
    for route in ("record", "text"):
        fa = planted.false_alarms(route)
        lines.append(
            f"  {route:6}: {fa.values} values, {fa.not_verified} not verified "
            f"(false-alarm rate {fa.rate:.4%}), {fa.failed_checks} failed checks, "
            f"{len(fa.letters_flagged)} letters flagged"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all-sites", action="store_true", help="plant every site")
    parser.add_argument("--missed", type=int, default=0, help="list up to N missed sites a kind")
    parser.add_argument("--floors", action="store_true", help="print the rates as FLOORS entries")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    letters = planted.letters()
    cap = None if args.all_sites else planted.SITES_PER_LETTER
    tallies = planted.catch_rates(cap)
    seconds = time.perf_counter() - t0
    count = sum(t.planted for t in tallies.values())
    print(report(tallies, args.missed))
    if args.floors:
        print("\nFLOORS entries:")
        for name, t in tallies.items():
            print(f'    "{name}": {math.floor(t.rate * 100) / 100},')
    print(f"\n{len(letters)} letters, {count} defects planted and judged in {seconds:.1f} s")


if __name__ == "__main__":
    main()
