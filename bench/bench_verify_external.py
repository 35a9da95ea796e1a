"""Outside records through ``verify_external``: what comes out verified, and how fast.

Builds outside records from the gold files (the perfect answer of another tool), then one wrong
value at a time in every letter where it applies, verifies each against its letter (read once) and
prints the eval figures of the untouched records (verified precision, verified recall, false-alarm
rate), then, per kind of wrong value, how many were caught (not verified) and the verified
precision of those records. Then the rate: records verified per CPU-second (letters already read).

    python bench/bench_verify_external.py [--rounds N] [--limit N]
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from imr_extract.evaluate import evaluate
from imr_extract.ingest import Document, read_path
from imr_extract.schema import LetterRecord, Status
from imr_extract.verify.external import LetterIndex, verify_external

ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "tests" / "data" / "gold"
LETTERS = ROOT / "tests" / "data" / "letters"

Perturb = Callable[[dict[str, Any]], str | None]


def _wrong_decision(d: dict[str, Any]) -> str | None:
    if not d["items"]:
        return None
    item = d["items"][-1]
    item["decision"] = "overturned" if item["decision"] == "upheld" else "upheld"
    return f"items[{len(d['items']) - 1}].decision"


def _swapped_dates(d: dict[str, Any]) -> str | None:
    dates = d["dates"]
    if not dates.get("injury") or not dates.get("decision"):
        return None
    dates["injury"], dates["decision"] = dates["decision"], dates["injury"]
    return "dates.decision"


def _citation(d: dict[str, Any], want: str) -> tuple[str, dict[str, Any]] | None:
    for i, item in enumerate(d["items"]):
        for g in ("imr_guideline", "claims_administrator_guideline"):
            for c, cit in enumerate(item[g]["citations"]):
                if cit[want]:
                    return f"items[{i}].{g}.citations[{c}]", cit
    return None


def _source_as_section(d: dict[str, Any]) -> str | None:
    found = _citation(d, "sections")
    if found is None:
        return None
    path, cit = found
    cit["sections"][0] = cit["source"]
    return f"{path}.sections[0]"


def _section_as_source(d: dict[str, Any]) -> str | None:
    found = _citation(d, "sections")
    if found is None:
        return None
    path, cit = found
    cit["source"] = cit["sections"][0]
    return f"{path}.source"


def _page_from_edition(d: dict[str, Any]) -> str | None:
    found = _citation(d, "source")
    if found is None:
        return None
    path, cit = found
    years = [w for w in cit["source"].split() if w.isdigit() and len(w) == 4]
    if not years:
        return None
    cit["pages"] = [int(years[0])]
    return f"{path}.pages[0]"


def _licensure_sentence(d: dict[str, Any]) -> str | None:
    d["reviewer"]["licensure"] = ["active clinical practice for more than five years"]
    return "reviewer.licensure[0]"


def _invented_item(d: dict[str, Any]) -> str | None:
    if not d["items"]:
        return None
    extra = copy.deepcopy(d["items"][0])
    extra["request"] = "Lumbar epidural steroid injection x 3"
    d["items"].append(extra)
    return f"items[{len(d['items']) - 1}].request"


KINDS: dict[str, Perturb] = {
    "wrong decision": _wrong_decision,
    "swapped dates": _swapped_dates,
    "source given as a section": _source_as_section,
    "section given as the source": _section_as_source,
    "edition year as a page": _page_from_edition,
    "licensure from a sentence": _licensure_sentence,
    "invented item": _invented_item,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="Rounds for the rate.")
    parser.add_argument("--limit", type=int, default=None, help="Only the first N gold letters.")
    args = parser.parse_args()
    index = LetterIndex(LETTERS)
    golds = [json.loads(p.read_text()) for p in sorted(GOLD.glob("*.json"))][: args.limit]
    docs: dict[str, Document] = {g["letter"]: read_path(index.find(g["letter"])) for g in golds}

    clean = [verify_external(g, docs[g["letter"]]) for g in golds]
    _print_eval("untouched gold records", clean)

    print(f"\n{'wrong value':<30} {'planted':>8} {'caught':>8} {'rate':>7} {'verified P':>11}")
    for kind, perturb in KINDS.items():
        planted = caught = 0
        perturbed: list[LetterRecord] = []
        for g in golds:
            data = copy.deepcopy(g)
            path = perturb(data)
            if path is None:
                continue
            record = verify_external(data, docs[g["letter"]])
            perturbed.append(record)
            planted += 1
            entry = record.provenance.get(path)
            caught += entry is None or entry.status is not Status.VERIFIED
        rate = f"{caught / planted:.1%}" if planted else "-"
        precision = _r(evaluate(perturbed, GOLD).overall.verified_precision)
        print(f"{kind:<30} {planted:>8} {caught:>8} {rate:>7} {precision:>11}")

    start = time.process_time()
    for _ in range(args.rounds):
        for g in golds:
            verify_external(g, docs[g["letter"]])
    cpu = time.process_time() - start
    n = args.rounds * len(golds)
    print(f"\nverify_external: {n} records in {cpu:.2f} CPU-s = {n / cpu:,.0f} records/CPU-s")


def _print_eval(title: str, records: list[LetterRecord]) -> None:
    overall = evaluate(records, GOLD).overall  # gold letters without a record are not scored
    print(
        f"{title}: {len(records)} records, {overall.verified} verified values, "
        f"verified precision {_r(overall.verified_precision)}, "
        f"verified recall {_r(overall.verified_recall)}, "
        f"false-alarm rate {_r(overall.false_alarm_rate)}"
    )


def _r(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


if __name__ == "__main__":
    main()
