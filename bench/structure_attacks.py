"""Structure a letter cannot fake: flags on the real letters, and attacks caught, per form.

For every bundled letter (tests/data/letters and the re-laid forms) it prints the structure flags
the untouched letter raises (warnings and checks this feature adds: must be 0), and for the
attacks derived from it (tests/faked_structure.py: a second decisions heading with an item line,
an item line alone, a decision sentence, inserted in the case summary or a rationale) per form
and kind:

  attacks   attacks derived
  caught    the made-up item is not verified, and a failed check names the inserted lines
            (the record is not complete)
  obeyed    the made-up item has a verified request or decision (must be 0)
  warned    a rules warning names the inserted lines
  kept      every value verified on the untouched letter is verified still (rationale of the
            item an attack is inserted in aside)

    python bench/structure_attacks.py
"""

from __future__ import annotations

import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from faked_structure import attacks, baseline, judge, read
from variants import letter_names

STRUCTURE_CHECKS = (
    "decisions_heading_printed_once",
    "decisions_only_where_the_form_states_them",
    "one_decisions_section",
)
STRUCTURE_WARNINGS = ("decisions heading is printed", "item-shaped line", "outside the decisions")


def main() -> None:
    t0 = time.process_time()
    flags = 0
    for name in letter_names():
        record = baseline(name)[1]
        assert record.verification is not None
        flags += sum(c.name in STRUCTURE_CHECKS for c in record.verification.checks)
        flags += sum(any(s in w for s in STRUCTURE_WARNINGS) for w in record.warnings)
    print(f"real letters: {len(letter_names())}, structure flags raised: {flags}")
    rows: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for a in attacks():
        v = judge(a, read(a))
        for row in (rows[(a.layout, a.kind)], totals[a.layout] if a.flag_required else Counter()):
            row["attacks"] += 1
            row["caught"] += v.flagged and not v.obeyed
            row["obeyed"] += v.obeyed
            row["warned"] += v.warned
            row["kept"] += v.real_kept
    cols = ("attacks", "caught", "obeyed", "warned", "kept")
    print(f"{'form':30} {'kind':20} " + " ".join(f"{c:>8}" for c in cols))
    for (form, kind), row in sorted(rows.items()):
        print(f"{form:30} {kind:20} " + " ".join(f"{row[c]:>8}" for c in cols))
    print("\nflagged kinds (heading_item, item_line, decision_sentence), caught / total per form:")
    for form, row in sorted(totals.items()):
        print(f"  {form:30} {row['caught']}/{row['attacks']}  obeyed {row['obeyed']}")
    print(f"\nCPU seconds: {time.process_time() - t0:.1f}")


if __name__ == "__main__":
    main()
