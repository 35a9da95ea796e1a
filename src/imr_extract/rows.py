"""Records back from rows: the CSV that ``imr-extract extract --format csv`` writes (one row per
item, the letter's fields repeated), as a spreadsheet keeps it, read into the output shape.

Invariant: a cell is converted only as far as its column says (a number column to a number, a
``True``/``False`` column to a flag, a ``; ``-list to a list, the ``*_citations_json`` column as
JSON); a cell that does not convert is passed on as it is, so that ``verify_external`` reports it
as an invalid value, never guessed at. The ``*_status`` and ``coverage`` columns say what a
verifier found, not what the letter holds: they are not read back (verifying the record finds
them again). What the rows cannot say is reported under the record's ``_invalid`` key (path,
value, reason): letter fields that differ between the rows of one letter (the first row's value
is kept), a column the output CSV does not have, sections or pages that cannot be tied to one
citation without the citations JSON. A ``letter`` written with ``\\xNN`` escapes (a file name
that is not UTF-8, see ``names``) is read back as that name.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .names import unescape_name
from .output import CSV_COLUMNS, LETTER_STATUS

#: The key under which a converted record carries what the conversion could not say.
PROBLEMS_KEY = "_invalid"

#: A letter's columns, repeated on each of its rows, and the field each one fills: the writer's map.
_LETTER_COLUMNS = LETTER_STATUS
_GUIDELINES = {"ca": "claims_administrator_guideline", "imr": "imr_guideline"}
_INT_RX = re.compile(r"^\s*\d+\s*$")


def _blank(cell: str | None) -> bool:
    return cell is None or not cell.strip()


def _text(cell: str | None) -> str | None:
    return None if _blank(cell) else cell


def _number(cell: str | None) -> Any:
    if _blank(cell):
        return None
    assert cell is not None
    return int(cell) if _INT_RX.match(cell) else cell


def _flag(cell: str | None) -> Any:
    if _blank(cell):
        return None
    assert cell is not None
    folded = cell.strip().lower()
    return {"true": True, "false": False}.get(folded, cell)


def _list(cell: str | None) -> list[str]:
    return [] if _blank(cell) else [p.strip() for p in (cell or "").split(";") if p.strip()]


def _set(data: dict[str, Any], path: str, value: Any) -> None:
    node = data
    *parents, last = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value


def _letter_value(column: str, cell: str | None) -> Any:
    if column == "reviewer_licensure":
        return _list(cell)
    if column == "patient_age":
        return _number(cell)
    return _text(cell)


def _guideline(row: Mapping[str, str | None], prefix: str, path: str, problems: list) -> Any:
    cited, outside = _flag(row.get(f"{prefix}_cited")), _flag(row.get(f"{prefix}_outside_mtus"))
    raw_json = row.get(f"{prefix}_citations_json")
    if cited is None and outside is None and _blank(raw_json):
        return None  # the row says nothing of this line
    line: dict[str, Any] = {"cited": cited, "outside_mtus": outside}
    if not _blank(raw_json):
        assert raw_json is not None
        try:
            line["citations"] = json.loads(raw_json)
        except json.JSONDecodeError as exc:
            problems.append((f"{path}.citations", raw_json, f"not JSON ({exc.msg})"))
        return line
    citations = [
        {"kind": kind, "source": source, "sections": [], "pages": []}
        for kind, column in (("MTUS", "mtus_sources"), ("Non-MTUS", "non_mtus_sources"))
        for source in _list(row.get(f"{prefix}_{column}"))
    ]
    sections = _list(row.get(f"{prefix}_sections"))
    pages = [_number(p) for p in _list(row.get(f"{prefix}_pages"))]
    if len(citations) == 1:
        citations[0].update(sections=sections, pages=pages)
    elif sections or pages:
        problems.append(
            (
                f"{path}.citations",
                {"sections": sections, "pages": pages},
                "sections and pages cannot be tied to one of several citations without the "
                f"{prefix}_citations_json column: left out",
            )
        )
    line["citations"] = citations
    return line


def records_from_rows(
    rows: Iterable[tuple[str, Mapping[str, str | None]]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, record)`` per letter from ``(where, row)`` item rows (``where``: the first row's).

    A row without a ``letter`` is passed on as ``(where, row)`` (the verifier refuses it with its
    cause). Rows of one letter need not be next to each other; items keep ``item_index`` order.
    """
    letters: dict[str, tuple[str, list[Mapping[str, str | None]]]] = {}
    for where, row in rows:
        name = (row.get("letter") or "").strip()
        if not name:
            yield where, dict(row)
            continue
        letters.setdefault(name, (where, []))[1].append(row)
    for name, (where, group) in letters.items():
        yield where, _record(name, group)


def _record(name: str, group: list[Mapping[str, str | None]]) -> dict[str, Any]:
    problems: list[tuple[str, Any, str]] = []
    first = group[0]
    # A name that is not UTF-8 is written \xNN in the CSV: back to the name that opens its file.
    data: dict[str, Any] = {"letter": unescape_name(name)}
    for column, path in _LETTER_COLUMNS.items():
        value = _letter_value(column, first.get(column))
        _set(data, path, value)
        others = {json.dumps(_letter_value(column, r.get(column))) for r in group[1:]}
        others.discard(json.dumps(value))
        if others:
            problems.append((path, value, "the rows of this letter disagree: the first is kept"))
    extra = [c for c in first if c is not None and c not in CSV_COLUMNS]
    problems += [(c, first[c], "not a column of the output CSV") for c in extra]
    items = [r for r in group if not (_blank(r.get("request")) and _blank(r.get("decision")))]
    if all(_INT_RX.match(r.get("item_index") or "") for r in items):
        items.sort(key=lambda r: int(r.get("item_index") or 0))
    data["items"] = []
    for i, row in enumerate(items):
        item: dict[str, Any] = {
            "request": _text(row.get("request")),
            "decision": _text(row.get("decision")),
            "original_request": _text(row.get("original_request")),
            "authorized": _text(row.get("authorized")),
            "rationale": _text(row.get("rationale")),
        }
        for prefix, key in _GUIDELINES.items():
            item[key] = _guideline(row, prefix, f"items[{i}].{key}", problems)
        data["items"].append(item)
    if problems:
        data[PROBLEMS_KEY] = [
            {"path": path, "value": value, "reason": reason} for path, value, reason in problems
        ]
    return data


def read_csv_records(text: str, name: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """``records_from_rows`` over the CSV ``text`` of file ``name`` (rows named ``name:LINE``)."""
    reader = csv.DictReader(io.StringIO(text, newline=""))

    def rows() -> Iterator[tuple[str, Mapping[str, str | None]]]:
        for row in reader:
            yield f"{name}:{reader.line_num}", row

    yield from records_from_rows(rows())
