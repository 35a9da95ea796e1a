"""How the rules' records hold up on every text variant of the bundled letters.

For each variant (tests/variants.py: other PDF-to-text tools, exports, CRLF, padding, running
headers, hyphenation, rewraps) it extracts every bundled letter with the rules, holds the record to
gold and prints:

  letters        letters the variant applies to (refused: extraction raised, e.g. no decisions)
  gold-exact     share of scored fields (letter fields + item fields) equal to gold
  verified       values the records mark verified
  verif. wrong   verified values that are not gold's (should be 0)
  precision      verified precision: 1 - verified wrong / verified
  lost silently  gold items missing from a record that says it is complete (should be 0)
  right unverif. values equal to gold that the record does not mark verified (flags a
                 reviewer looks at for nothing: the false alarms of this variant)
  derive s       CPU seconds to derive the variant's texts (a PDF tool's conversion)
  rules s        CPU seconds to read the texts and extract

With --details, every violation is listed under its variant (and with --alarms, every right
value left unverified, with its status).

    python bench/text_variants_report.py [--variants NAME ...] [--details [--alarms]]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import variants as V


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", nargs="*", help="only these variants (default: all)")
    parser.add_argument("--details", action="store_true", help="list every violation")
    parser.add_argument(
        "--alarms", action="store_true", help="with --details, list right values not verified"
    )
    args = parser.parse_args()
    chosen = [v for v in V.VARIANTS if not args.variants or v.name in args.variants]
    names = V.letter_names()

    header = (
        f"{'variant':22} {'letters':>8} {'refused':>7} {'gold-exact':>10} {'verified':>8} "
        f"{'verif. wrong':>12} {'precision':>9} {'lost silently':>13} {'right unverif.':>14} "
        f"{'derive s':>8} {'rules s':>7}"
    )
    print(header)
    print("-" * len(header))
    totals = [0, 0, 0, 0, 0, 0, 0, 0]
    details: list[str] = []
    for variant in chosen:
        letters = [n for n in names if V.applies(variant, n)]
        t0 = time.process_time()
        for name in letters:
            V.variant_text(variant.name, name)
        derive = time.process_time() - t0
        t0 = time.process_time()
        judged = [V.judge_variant(variant.name, name) for name in letters]
        rules = time.process_time() - t0
        refused = sum(1 for j in judged if j is not None and j.error)
        fields = sum(j.fields for j in judged if j is not None)
        exact = sum(j.exact for j in judged if j is not None)
        verified = sum(j.verified for j in judged if j is not None)
        wrong = sum(len(j.verified_wrong) for j in judged if j is not None)
        lost = sum(len(j.silently_lost) for j in judged if j is not None)
        alarms = sum(j.right_unverified for j in judged if j is not None)
        precision = f"{1 - wrong / verified:.4f}" if verified else "-"
        share = f"{100 * exact / fields:.1f}%" if fields else "-"
        print(
            f"{variant.name:22} {len(letters):>8} {refused:>7} {share:>10} {verified:>8} "
            f"{wrong:>12} {precision:>9} {lost:>13} {alarms:>14} {derive:>8.1f} {rules:>7.1f}",
            flush=True,
        )
        counts = (len(letters), refused, fields, exact, verified, wrong, lost, alarms)
        totals = [t + n for t, n in zip(totals, counts, strict=True)]
        for j in judged:
            if j is not None and j.violations:
                details.extend(f"  {variant.name} {j.letter}: {v[:200]}" for v in j.violations)
            if j is not None and j.error:
                details.append(f"  {variant.name} {j.letter}: refused: {j.error}")
            if j is not None and args.alarms:
                details.extend(f"  {variant.name} {j.letter}: right, {a}" for a in j.alarms)
    n, refused, fields, exact, verified, wrong, lost, alarms = totals
    print("-" * len(header))
    precision = f"{1 - wrong / verified:.4f}" if verified else "-"
    share = f"{100 * exact / fields:.1f}%" if fields else "-"
    print(
        f"{'all':22} {n:>8} {refused:>7} {share:>10} {verified:>8} {wrong:>12} {precision:>9} "
        f"{lost:>13} {alarms:>14}"
    )
    if args.details and details:
        print("\nviolations (a verified value that is not gold's, an item lost silently):")
        if args.alarms:
            print("and false alarms (a value equal to gold, not verified):")
        print("\n".join(details))


if __name__ == "__main__":
    main()
