"""Records as comparable fields: the vocabulary shared by ``evaluate`` and ``compare``.

A record is looked at through its data fields only (``schema.DATA_FIELDS``), in the plain JSON
shape the gold files use, so an extracted ``LetterRecord``, a record read back from a JSONL file
and a gold annotation are all compared the same way. The fields scored are listed once here
(``LETTER_FIELDS``, ``ITEM_FIELDS``), so evaluation against gold and agreement between two
extractors always speak about the same things.

Items have no identity of their own: two records of one letter may list different numbers of
items, split one item in two, or invent one. ``align_items`` pairs them by their request text,
keeping the letter's order, and ``map_path`` carries a field path of one record onto the other
through that alignment.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from .errors import ImrExtractError
from .schema import DATA_FIELDS, LetterRecord
from .text import fold

#: Anything that can be read as a record: a validated record or its JSON shape (or gold's).
RecordLike = LetterRecord | Mapping[str, Any]

#: Two requests whose folded text is this similar (difflib ratio) may be the same item.
ALIGN_MIN_RATIO = 0.6

_PATH_PART = re.compile(r"[^.\[\]]+|\[(?:\d+|\*)\]")
_ITEM_PATH = re.compile(r"^items\[(\d+)\](.*)$")


class RecordsError(ImrExtractError):
    """A results file, record or gold directory that cannot be used for a comparison."""

    code = "records"


# --- records as plain data -------------------------------------------------------------------


def record_data(record: RecordLike) -> dict[str, Any]:
    """The whole record as plain JSON data (a ``LetterRecord`` dumped; a mapping copied).

    Provenance stays in the result, so ``provenance_entries`` can be used on it.
    """
    if isinstance(record, LetterRecord):
        return record.model_dump(mode="json")
    if isinstance(record, Mapping):
        return dict(record)
    raise TypeError(f"not a record: {type(record).__name__}")


def data_fields(record: RecordLike) -> dict[str, Any]:
    """Only the data fields (``schema.DATA_FIELDS``), as the gold files hold them.

    A key the record lacks is ``None`` (``[]`` for ``items``), so a partial record compares as
    one that states nothing for that field rather than raising.
    """
    data = record_data(record)
    out = {key: data.get(key) for key in DATA_FIELDS}
    out["items"] = list(out["items"] or [])
    return out


def letter_name(record: RecordLike) -> str:
    """The ``letter`` a record is about; every comparison is keyed by it.

    Raises:
        RecordsError: the record names no letter.
    """
    name = record_data(record).get("letter")
    if not isinstance(name, str) or not name:
        raise RecordsError("<record>", "record without a 'letter' name")
    return name


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Records from a file written by ``imr-extract extract``: JSON Lines, a JSON array or one
    JSON object; ``-`` reads standard input.

    Raises:
        RecordsError: the file cannot be read, is not JSON, or holds something else than records.
    """
    name = str(path)
    try:
        text = sys.stdin.read() if name == "-" else Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RecordsError(name, f"cannot read results: {exc}") from exc
    stripped = text.lstrip()
    try:
        if stripped.startswith("["):
            loaded: Any = json.loads(text)
        elif not stripped:
            loaded = []
        else:
            try:
                loaded = [json.loads(text)]
            except json.JSONDecodeError:  # not one object: JSON Lines
                loaded = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        raise RecordsError(name, f"not JSON or JSON Lines ({exc})") from exc
    if not all(isinstance(r, dict) and isinstance(r.get("letter"), str) for r in loaded):
        raise RecordsError(name, "expected records (JSON objects with a 'letter' name)")
    return loaded


# --- paths -----------------------------------------------------------------------------------


def resolve(data: Any, path: str) -> list[Any]:
    """Every value at ``path`` in plain data; ``[*]`` matches each element of a list.

    ``resolve(rec, "items[0].imr_guideline.citations[*].pages[*]")`` lists every page the first
    item's reviewer cites. A step that does not exist yields nothing (never raises).
    """
    nodes = [data]
    for part in _PATH_PART.findall(path):
        found: list[Any] = []
        for node in nodes:
            if part == "[*]":
                if isinstance(node, list):
                    found.extend(node)
            elif part.startswith("["):
                index = int(part[1:-1])
                if isinstance(node, list) and index < len(node):
                    found.append(node[index])
            elif isinstance(node, Mapping) and part in node:
                found.append(node[part])
        nodes = found
    return nodes


def value_at(data: Any, path: str) -> Any:
    """The single value at a path without wildcards, or ``None`` where there is none."""
    found = resolve(data, path)
    return found[0] if found else None


def item_path(index: int, rel: str) -> str:
    """``items[index].rel``: the path of an item's field."""
    return f"items[{index}].{rel}"


# --- the fields that are scored --------------------------------------------------------------


class FieldKind(StrEnum):
    """How a field's value is read and compared."""

    VALUE = "value"  # one scalar (string, date, number, enum value)
    LIST = "list"  # a list compared whole, order included (reviewer.licensure)
    OBJECT = "object"  # an object compared whole (a guideline line)
    SET = "set"  # every value a wildcard path reaches, compared as a set


@dataclass(frozen=True)
class FieldSpec:
    """One scored field.

    ``name`` labels the field in reports (``items.imr_guideline.pages``); ``path`` reads it from
    a letter (``priority``) or, for item fields, from one item (``imr_guideline.citations[*]
    .pages[*]``; see ``item_path``).
    """

    name: str
    path: str
    kind: FieldKind = FieldKind.VALUE

    def read(self, data: Any) -> Any:
        """The field's value in ``data`` (a letter or an item), ``None`` when absent.

        A SET field is returned as a sorted list of distinct values, so it is JSON-ready and
        two sets are equal exactly when the lists are.
        """
        if data is None:
            return [] if self.kind is FieldKind.SET else None
        if self.kind is not FieldKind.SET:
            return value_at(data, self.path)
        distinct = {json.dumps(v, sort_keys=True): v for v in resolve(data, self.path)}
        values = list(distinct.values())
        try:
            return sorted(values)
        except TypeError:  # mixed types in a malformed record: any stable order will do
            return sorted(values, key=lambda v: json.dumps(v, sort_keys=True))


def is_null(value: Any) -> bool:
    """Whether a field states nothing: ``None``, or an empty list, set or object."""
    return value is None or (isinstance(value, list | dict) and not value)


_DATES = ("assigned", "injury", "decision", "ur_denial", "application_received")

LETTER_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("case_number", "case_number"),
    *(FieldSpec(f"dates.{d}", f"dates.{d}") for d in _DATES),
    FieldSpec("priority", "priority"),
    FieldSpec("reviewer.licensure", "reviewer.licensure", FieldKind.LIST),
    FieldSpec("reviewer.specialty", "reviewer.specialty"),
    FieldSpec("reviewer.subspecialty", "reviewer.subspecialty"),
    FieldSpec("patient.age", "patient.age"),
    FieldSpec("patient.sex", "patient.sex"),
)

_GUIDELINES = ("claims_administrator_guideline", "imr_guideline")

ITEM_FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("items.request", "request"),
    FieldSpec("items.decision", "decision"),
    FieldSpec("items.original_request", "original_request"),
    FieldSpec("items.authorized", "authorized"),
    *(FieldSpec(f"items.{g}", g, FieldKind.OBJECT) for g in _GUIDELINES),
    *(
        spec
        for g in _GUIDELINES
        for spec in (
            FieldSpec(f"items.{g}.sources", f"{g}.citations[*].source", FieldKind.SET),
            FieldSpec(f"items.{g}.sections", f"{g}.citations[*].sections[*]", FieldKind.SET),
            FieldSpec(f"items.{g}.pages", f"{g}.citations[*].pages[*]", FieldKind.SET),
        )
    ),
)


# --- item alignment --------------------------------------------------------------------------


def fold_request(text: str) -> str:
    """A request as alignment compares it: whitespace runs folded to one space, casefolded."""
    return fold(text).casefold()


@dataclass(frozen=True)
class ItemPair:
    """One row of an alignment: an item of each record, or of one only.

    ``score`` is 1.0 for requests equal once folded, the difflib ratio for a fuzzy match, and
    0.0 for an item the other record lacks.
    """

    left: int | None
    right: int | None
    score: float = 0.0

    @property
    def matched(self) -> bool:
        return self.left is not None and self.right is not None


def _crosses(i: int, j: int, accepted: Iterable[tuple[int, int]]) -> bool:
    return any(i == a or j == b or (i < a) != (j < b) for a, b in accepted)


def align_requests(left: Sequence[str], right: Sequence[str]) -> list[ItemPair]:
    """Align two lists of requests, keeping both orders (no two pairs cross).

    Greedy, in two passes, because items are nearly always in the letter's order and most
    requests are copied verbatim: first requests equal after ``fold_request`` (in order), then,
    between those anchors, the most similar remaining requests with difflib ratio >=
    ``ALIGN_MIN_RATIO`` (a model's rewording, a split request). Every item appears exactly
    once in the result; an item with no partner is paired with ``None``, placed where it stands
    in its own list.
    """
    lf = [fold_request(s) for s in left]
    rf = [fold_request(s) for s in right]
    accepted: dict[tuple[int, int], float] = {}
    for i, a in enumerate(lf):
        for j, b in enumerate(rf):
            if a == b and not _crosses(i, j, accepted):
                accepted[(i, j)] = 1.0
    left_free = [i for i in range(len(lf)) if all(i != a for a, _ in accepted)]
    right_free = [j for j in range(len(rf)) if all(j != b for _, b in accepted)]
    fuzzy = []
    for i in left_free:
        for j in right_free:
            matcher = difflib.SequenceMatcher(None, lf[i], rf[j], autojunk=False)
            # The quick upper bounds skip most hopeless pairs before the full (quadratic) ratio.
            if (
                matcher.real_quick_ratio() < ALIGN_MIN_RATIO
                or matcher.quick_ratio() < ALIGN_MIN_RATIO
            ):
                continue
            ratio = matcher.ratio()
            if ratio >= ALIGN_MIN_RATIO:
                fuzzy.append((-ratio, abs(i - j), i, j))
    for neg_ratio, _, i, j in sorted(fuzzy):
        if not _crosses(i, j, accepted):
            accepted[(i, j)] = -neg_ratio
    pairs: list[ItemPair] = []
    next_left = next_right = 0
    for (i, j), score in sorted(accepted.items()):
        pairs.extend(ItemPair(k, None) for k in range(next_left, i))
        pairs.extend(ItemPair(None, k) for k in range(next_right, j))
        pairs.append(ItemPair(i, j, score))
        next_left, next_right = i + 1, j + 1
    pairs.extend(ItemPair(k, None) for k in range(next_left, len(lf)))
    pairs.extend(ItemPair(None, k) for k in range(next_right, len(rf)))
    return pairs


def align_items(
    left: Sequence[Mapping[str, Any]], right: Sequence[Mapping[str, Any]]
) -> list[ItemPair]:
    """Align two records' ``items`` (plain data) by their requests; see ``align_requests``."""

    def request(item: Mapping[str, Any]) -> str:
        value = item.get("request") if isinstance(item, Mapping) else None
        return value if isinstance(value, str) else ""

    return align_requests([request(i) for i in left], [request(i) for i in right])


def map_path(path: str, pairs: Sequence[ItemPair], *, from_left: bool = True) -> str | None:
    """The path in the other record that corresponds to ``path`` in this one.

    Letter-level paths are the same in both; ``items[i]...`` becomes ``items[j]...`` for the
    item aligned with ``i``. ``None`` when the item has no partner (or is not in ``pairs``).
    ``from_left=False`` maps a right-hand path onto the left record.
    """
    m = _ITEM_PATH.match(path)
    if m is None:
        return path
    index = int(m.group(1))
    for pair in pairs:
        here, there = (pair.left, pair.right) if from_left else (pair.right, pair.left)
        if here == index:
            return None if there is None else f"items[{there}]{m.group(2)}"
    return None


# --- provenance ------------------------------------------------------------------------------

_STATUS_ORDER = {"verified": 0, "unverified": 1, "contradicted": 2}


@dataclass(frozen=True)
class Support:
    """What a record's provenance says about a field: its spans and its verification status.

    A field that is an object or a set (a guideline line, its pages) gathers every provenance
    entry beneath it; ``status`` is then the worst of theirs (contradicted over unverified over
    verified), ``None`` when no entry carries one.
    """

    spans: tuple[tuple[int, int, int], ...] = ()
    status: str | None = None


def support(data: Mapping[str, Any], path: str) -> Support:
    """The spans (``(start, end, page)``) and status recorded for ``path`` and beneath it.

    ``path`` may hold ``[*]`` wildcards (``items[0].imr_guideline.citations[*].pages[*]``).
    """
    provenance = data.get("provenance") or {}
    pattern = re.escape(path).replace(r"\[\*\]", r"\[\d+\]")
    rx = re.compile(rf"^{pattern}(?:$|[.\[])")
    spans: list[tuple[int, int, int]] = []
    statuses: list[str] = []
    for key in sorted(provenance, key=_path_sort_key):
        if not rx.match(key):
            continue
        entry = provenance[key] or {}
        for span in entry.get("spans") or []:
            triple = (int(span["start"]), int(span["end"]), int(span["page"]))
            if triple not in spans:  # a guideline's flags often share one span
                spans.append(triple)
        if isinstance(entry.get("status"), str):
            statuses.append(entry["status"])
    status = max(statuses, key=lambda s: _STATUS_ORDER.get(s, 1)) if statuses else None
    return Support(tuple(spans), status)


def _path_sort_key(path: str) -> list[tuple[int, Any]]:
    # items[10] after items[9]: numbers compare as numbers.
    return [(0, int(p[1:-1])) if p.startswith("[") else (1, p) for p in _PATH_PART.findall(path)]
