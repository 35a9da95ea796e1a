"""Planted citation defects: how many the checks catch, and how many right values they flag.

For every bundled letter with gold, a model-like record is built from the gold answer (values
only, located in the letter as a model's would be, then verified). Untouched, every guideline
value must be verified (false alarms: the share that is not). Then one citation value at a
time is made wrong in one way, and the wrong value must come out unverified or contradicted
(caught). Prints the catch rate per defect kind and the false-alarm rate.

    python bench/citation_defects.py [--letters N]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from imr_extract.assemble import build_record
from imr_extract.extract import extract_document
from imr_extract.ingest import Document, read_path
from imr_extract.llm.response import LLMLetter, to_letter_found
from imr_extract.schema import Backend, ExtractorInfo, LetterRecord, Method, Status, schema_hash
from imr_extract.verify import verify

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
_LINES = ("claims_administrator_guideline", "imr_guideline")

#: (kind, path of the planted value, the answer with the defect)
Plant = tuple[str, str, dict[str, Any]]


def _answer(gold: dict[str, Any]) -> dict[str, Any]:
    def us(d: str | None) -> str | None:
        return None if d is None else dt.date.fromisoformat(d).strftime("%m/%d/%Y")

    dates = gold["dates"]
    return {
        "case_number": gold["case_number"],
        "date_assigned": us(dates["assigned"]),
        "date_of_injury": us(dates["injury"]),
        "decision_date": us(dates["decision"]),
        "ur_denial_date": us(dates["ur_denial"]),
        "application_received": us(dates["application_received"]),
        "priority": gold["priority"],
        "reviewer_licensure": gold["reviewer"]["licensure"],
        "reviewer_specialty": gold["reviewer"]["specialty"],
        "reviewer_subspecialty": gold["reviewer"]["subspecialty"],
        "patient_age": gold["patient"]["age"],
        "patient_sex": gold["patient"]["sex"],
        "items": copy.deepcopy(gold["items"]),
    }


def _record(doc: Document, layout: str, answer: dict[str, Any]) -> LetterRecord:
    found = to_letter_found(LLMLetter.model_validate(answer), doc.text, "plant@bench")
    info = ExtractorInfo(backend=Backend.LLM, schema_hash=schema_hash())
    record = build_record(doc, layout, found, Method.LLM, info)
    return verify(record, doc.text, doc.page_of)


def _plants(answer: dict[str, Any]) -> Iterator[Plant]:
    """Every one-value defect this answer allows, each on a fresh copy."""

    def planted(kind: str, path: str, edit: Callable[[dict[str, Any]], None]) -> Plant:
        a = copy.deepcopy(answer)
        edit(a)
        return kind, path, a

    items = answer["items"]
    for i, item in enumerate(items):
        for g in _LINES:
            line = item[g]
            p = f"items[{i}].{g}"
            flipped = _set(i, g, "cited", not line["cited"])
            yield planted("flag cited flipped", f"{p}.cited", flipped)
            yield planted(
                "flag outside_mtus flipped",
                f"{p}.outside_mtus",
                _set(i, g, "outside_mtus", not line["outside_mtus"]),
            )
            cits = line["citations"]
            for c, cit in enumerate(cits):
                cp = f"{p}.citations[{c}]"
                other_kind = "MTUS" if cit["kind"] == "Non-MTUS" else "Non-MTUS"
                yield planted("kind flipped", f"{cp}.kind", _cit(i, g, c, "kind", other_kind))
                words = cit["source"].split()
                if len(words) > 1:
                    cut = " ".join(words[:-1])
                    yield planted("source truncated", f"{cp}.source", _cit(i, g, c, "source", cut))
                if cit["sections"]:
                    yield planted(
                        "source given as a section",
                        f"{cp}.source",
                        _cit(i, g, c, "source", cit["sections"][0]),
                    )
                label = "Non-MTUS Citation " if cit["kind"] == "Non-MTUS" else "MTUS "
                yield planted(
                    "source keeping its label",
                    f"{cp}.source",
                    _cit(i, g, c, "source", label + cit["source"]),
                )
                year = next((w for w in words if w.isdigit() and len(w) == 4), None)
                if year is not None:
                    yield planted(
                        "edition year as a page",
                        f"{cp}.pages[{len(cit['pages'])}]",
                        _cit(i, g, c, "pages", [*cit["pages"], int(year)]),
                    )
                for s, section in enumerate(cit["sections"]):
                    sp = f"{cp}.sections[{s}]"
                    yield planted(
                        "section keeping its label",
                        sp,
                        _section(i, g, c, s, f"Section(s): {section}"),
                    )
                    head, sep, _tail = section.partition(", ")
                    if sep:
                        yield planted("comma title cut", sp, _section(i, g, c, s, head))
                for d, other in enumerate(cits):
                    if d == c:
                        continue
                    for section in other["sections"]:
                        if section not in cit["sections"]:
                            n = len(cit["sections"])
                            yield planted(
                                "section of another citation",
                                f"{cp}.sections[{n}]",
                                _cit(i, g, c, "sections", [*cit["sections"], section]),
                            )
                            break
                    for page in other["pages"]:
                        if page not in cit["pages"]:
                            n = len(cit["pages"])
                            yield planted(
                                "page of another citation",
                                f"{cp}.pages[{n}]",
                                _cit(i, g, c, "pages", [*cit["pages"], page]),
                            )
                            break
            # A value of another item's line that this line does not print.
            for j, other_item in enumerate(items):
                if j == i:
                    continue
                here = {x["source"] for x in cits}
                theirs = [x for x in other_item[g]["citations"] if x["source"] not in here]
                if theirs and cits:
                    yield planted(
                        "source from another item",
                        f"{p}.citations[0].source",
                        _cit(i, g, 0, "source", theirs[0]["source"]),
                    )
                    break


def _set(i: int, g: str, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(a: dict[str, Any]) -> None:
        a["items"][i][g][key] = value

    return edit


def _cit(i: int, g: str, c: int, key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def edit(a: dict[str, Any]) -> None:
        a["items"][i][g]["citations"][c][key] = value

    return edit


def _section(i: int, g: str, c: int, s: int, value: str) -> Callable[[dict[str, Any]], None]:
    def edit(a: dict[str, Any]) -> None:
        a["items"][i][g]["citations"][c]["sections"][s] = value

    return edit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--letters", type=int, default=0, help="only the first N letters (0: all)")
    args = ap.parse_args()
    golds = sorted((DATA / "gold").glob("*.json"))
    if args.letters:
        golds = golds[: args.letters]
    planted: Counter[str] = Counter()
    caught: Counter[str] = Counter()
    values = alarms = 0
    for path in golds:
        gold = json.loads(path.read_text(encoding="utf-8"))
        letter = next((DATA / "letters").glob(f"*/{gold['letter']}"))
        doc = read_path(letter)
        layout = extract_document(doc).layout
        answer = _answer(gold)
        clean = _record(doc, layout, answer)
        for p, prov in clean.provenance.items():
            if "_guideline." in p:
                values += 1
                alarms += prov.status is not Status.VERIFIED
        for kind, p, wrong in _plants(answer):
            record = _record(doc, layout, wrong)
            planted[kind] += 1
            prov = record.provenance.get(p)
            caught[kind] += prov is None or prov.status is not Status.VERIFIED
    print(f"{'defect planted (one value at a time)':<40}{'planted':>9}{'caught':>9}{'rate':>9}")
    for kind in sorted(planted):
        rate = caught[kind] / planted[kind]
        print(f"{kind:<40}{planted[kind]:>9}{caught[kind]:>9}{rate:>9.1%}")
    total, got = sum(planted.values()), sum(caught.values())
    print(f"{'all':<40}{total:>9}{got:>9}{got / total:>9.1%}")
    print(
        f"false alarms: {alarms} of {values} guideline values of the untouched answers "
        f"({len(golds)} letters) not verified ({alarms / max(values, 1):.2%})"
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
