"""How each form's reader does on its bundled letters and their derived variants, rules only.

Prints, per form and variant (the variants of ``tests/test_form_readers.py``): letters, items
found / in gold, gold fields matched exactly / in gold (every leaf value of the gold files),
values verified / extracted, verified values that are wrong, and warnings.

    python bench/form_readers.py
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from imr_extract.extract import extract_text  # noqa: E402
from imr_extract.schema import DATA_FIELDS, Status  # noqa: E402
from test_form_readers import (  # noqa: E402
    MAXIMUS,
    NOTICE_VARIANTS,
    NOTICES,
    PROSE,
    PROSE_VARIANTS,
    SPACING_VARIANTS,
    Variant,
    _gold,
)
from test_verify import wrong_paths  # noqa: E402


def _leaves(gold: Any, got: Any) -> tuple[int, int]:
    """(leaf values of ``gold`` that ``got`` matches, leaf values of ``gold``)."""
    if isinstance(gold, dict):
        pairs = [_leaves(v, got.get(k) if isinstance(got, dict) else None) for k, v in gold.items()]
    elif isinstance(gold, list) and gold:
        got = got if isinstance(got, list) else []
        pairs = [_leaves(v, got[i] if i < len(got) else None) for i, v in enumerate(gold)]
    else:
        return int(gold == got), 1
    return sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def measure(letters: list[Path], variant: Variant | None) -> dict[str, int]:
    row = dict.fromkeys(
        ("letters", "items", "gold_items", "exact", "fields", "verified", "values", "wrong_v"), 0
    )
    row["warnings"] = 0
    for letter in letters:
        gold = _gold(letter)
        text = letter.read_text(encoding="utf-8")
        record = extract_text(variant(text) if variant else text, gold["letter"])
        data = record.model_dump(mode="json", include=set(DATA_FIELDS))
        exact, fields = _leaves({k: v for k, v in gold.items() if k != "letter"}, data)
        wrong = wrong_paths(record, gold)
        statuses = {p: e.status for p, e in record.provenance.items()}
        row["letters"] += 1
        row["items"] += len(record.items)
        row["gold_items"] += len(gold["items"])
        row["exact"] += exact
        row["fields"] += fields
        row["verified"] += sum(s is Status.VERIFIED for s in statuses.values())
        row["values"] += len(statuses)
        row["wrong_v"] += sum(statuses[p] is Status.VERIFIED for p in wrong)
        row["warnings"] += len(record.warnings)
    return row


def main() -> None:
    forms: list[tuple[str, list[Path], dict[str, Variant]]] = [
        ("notice_2013", NOTICES, NOTICE_VARIANTS),
        ("maximus_imr_decisions", MAXIMUS, SPACING_VARIANTS),
        ("final_determination_prose", PROSE, PROSE_VARIANTS),
    ]
    head = f"{'form':<26} {'variant':<28} {'letters':>7} {'items':>7} {'gold-exact':>11}"
    print(head + f" {'verified':>9} {'verified wrong':>14} {'warnings':>8}")
    for form, letters, variants in forms:
        for name, variant in [("bundled", None), *variants.items()]:
            r = measure(letters, variant)
            print(
                f"{form:<26} {name:<28} {r['letters']:>7} {r['items']:>3}/{r['gold_items']:<3}"
                f" {r['exact']:>5}/{r['fields']:<5} {r['verified']:>4}/{r['values']:<4}"
                f" {r['wrong_v']:>14} {r['warnings']:>8}"
            )


if __name__ == "__main__":
    main()
