"""One record from the rules' and the model's, field by field, by a recorded precedence.

Both inputs must have been through ``verify``. For each field the candidates are ranked by
``PRECEDENCE``: a verified rule value, then a verified model value, then an unverified rule
value, an unverified model value, and a contradicted value last; a missing value never wins.
Ties go to the rules (deterministic, and their spans are exact). The value that lost, where the
two differ, is kept in ``LetterRecord.alternatives`` so nothing the model said is silently lost.

The unit of choice is a field that a reader would not want mixed from two sources: a scalar
(``dates.injury``), a whole list (``reviewer.licensure``), a whole guideline line of an item.
Items are paired by where their requests stand in the letter (or by their text); an item only the
model found is kept when the letter verifies its request and decision, or when the rules found
no items at all, and is otherwise reported in a warning.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .schema import (
    Backend,
    ExtractorInfo,
    LetterRecord,
    Method,
    Provenance,
    Status,
)
from .text import fold

#: (method, status) pairs from most to least trusted; see the module docstring.
PRECEDENCE: tuple[tuple[Method, Status], ...] = (
    (Method.RULES, Status.VERIFIED),
    (Method.LLM, Status.VERIFIED),
    (Method.RULES, Status.UNVERIFIED),
    (Method.LLM, Status.UNVERIFIED),
    (Method.RULES, Status.CONTRADICTED),
    (Method.LLM, Status.CONTRADICTED),
)
_RANK = {pair: i for i, pair in enumerate(PRECEDENCE)}
_MISSING = len(PRECEDENCE)

LETTER_UNITS = (
    "case_number",
    "priority",
    "dates.assigned",
    "dates.injury",
    "dates.decision",
    "dates.ur_denial",
    "dates.application_received",
    "reviewer.licensure",
    "reviewer.specialty",
    "reviewer.subspecialty",
    "patient.age",
    "patient.sex",
)
ITEM_UNITS = (
    "request",
    "decision",
    "original_request",
    "authorized",
    "claims_administrator_guideline",
    "imr_guideline",
    "rationale",
)
_WORST = (Status.CONTRADICTED, Status.UNVERIFIED, Status.VERIFIED)


@dataclass(frozen=True)
class Candidate:
    """One extractor's value for one unit, with the provenance entries under it."""

    method: Method
    value: Any  # JSON-ready (model_dump(mode="json"))
    entries: dict[str, Provenance]  # relative path ("" for the unit itself) -> provenance

    @property
    def status(self) -> Status:
        statuses = {p.status for p in self.entries.values()}
        return next((s for s in _WORST if s in statuses), Status.UNVERIFIED)

    @property
    def rank(self) -> int:
        if _empty(self.value):
            return _MISSING
        return _RANK[(self.method, self.status)]


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def _get(data: dict[str, Any], dotted: str) -> Any:
    obj: Any = data
    for part in dotted.split("."):
        if isinstance(obj, list):
            obj = obj[int(part)] if part.isdigit() and int(part) < len(obj) else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _set(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        data = data.setdefault(part, {})
    data[last] = value


def _entries(record: LetterRecord, prefix: str) -> dict[str, Provenance]:
    """Provenance entries at ``prefix`` or under it, keyed by the rest of their path."""
    out = {}
    for path, prov in record.provenance.items():
        if path == prefix:
            out[""] = prov
        elif path.startswith(prefix) and path[len(prefix)] in ".[":
            out[path[len(prefix) :]] = prov
    return out


def _candidate(record: LetterRecord, data: dict[str, Any], prefix: str, rel: str) -> Candidate:
    method = Method.RULES if record.extractor.backend is Backend.RULES else Method.LLM
    return Candidate(method, _get(data, rel), _entries(record, prefix))


def _pick(a: Candidate, b: Candidate) -> tuple[Candidate, Candidate]:
    """(winner, other); ``a`` (the rules) wins ties."""
    return (a, b) if a.rank <= b.rank else (b, a)


@dataclass
class _Builder:
    data: dict[str, Any]
    provenance: dict[str, dict[str, Any]]
    alternatives: dict[str, dict[str, Any]]

    def put(self, path: str, win: Candidate, other: Candidate | None) -> None:
        for rel, prov in win.entries.items():
            self.provenance[path + rel] = prov.model_dump()
        if other is not None and not _empty(other.value) and other.value != win.value:
            spans = other.entries.get("", None)
            self.alternatives[path] = {
                "method": other.method,
                "value": other.value,
                "status": other.status,
                "spans": [s.model_dump() for s in spans.spans] if spans else [],
            }


def _request_key(request: str) -> str:
    return fold(request).casefold()


def _span_of(record: LetterRecord, path: str) -> tuple[int, int] | None:
    prov = record.provenance.get(path)
    if prov is None or not prov.spans:
        return None
    return prov.spans[0].start, prov.spans[-1].end


def pair_items(rules: LetterRecord, llm: LetterRecord) -> list[tuple[int | None, int | None]]:
    """Pairs of (rules item, model item) indexes; None where only one side has the item."""
    pairs: list[tuple[int | None, int | None]] = []
    taken: set[int] = set()
    for r in range(len(rules.items)):
        r_span = _span_of(rules, f"items[{r}].request")
        match = None
        for m in range(len(llm.items)):
            if m in taken:
                continue
            m_span = _span_of(llm, f"items[{m}].request")
            overlap = (
                r_span is not None
                and m_span is not None
                and m_span[0] < r_span[1]
                and r_span[0] < m_span[1]
            )
            if overlap or _request_key(llm.items[m].request) == _request_key(
                rules.items[r].request
            ):
                match = m
                break
        if match is not None:
            taken.add(match)
        pairs.append((r, match))
    pairs.extend((None, m) for m in range(len(llm.items)) if m not in taken)
    return pairs


def _item_position(
    rules: LetterRecord, llm: LetterRecord, pair: tuple[int | None, int | None]
) -> int:
    r, m = pair
    span = _span_of(rules, f"items[{r}].request") if r is not None else None
    if span is None and m is not None:
        span = _span_of(llm, f"items[{m}].request")
    return span[0] if span else 1 << 62


def _unit_of(path: str) -> str:
    """The merge unit a field path belongs to ("reviewer.licensure[0]" -> "reviewer.licensure",
    "items[2].imr_guideline.cited" -> "items[2]")."""
    if path.startswith("items["):
        return path.split("]")[0] + "]"
    return path.split("[")[0]


def merge(
    rules: LetterRecord,
    llm: LetterRecord,
    extractor: ExtractorInfo,
    only: tuple[str, ...] | None = None,
) -> LetterRecord:
    """The merged record (not yet re-verified: pass it to ``verify``).

    ``only``: the field paths the model was asked about (it was sent the sections that hold
    them); its values for any other field, and items it found that the rules did not, are
    left out: a model that did not see the reviewer's credentials cannot supply them.
    """
    r_data = rules.model_dump(mode="json")
    m_data = llm.model_dump(mode="json")
    out = _Builder(data={}, provenance={}, alternatives={})
    notes = list(rules.warnings) + [f"model: {w}" for w in llm.warnings]
    asked = None if only is None else {_unit_of(p) for p in only}
    other: Candidate | None  # None for an item only one side found

    for unit in LETTER_UNITS:
        model = _candidate(llm, m_data, unit, unit)
        if asked is not None and unit not in asked:
            if not _empty(model.value):
                notes.append(f"model: {unit} was not asked of it; left out")
            model = Candidate(model.method, None, {})
        win, other = _pick(_candidate(rules, r_data, unit, unit), model)
        _set(out.data, unit, win.value)
        if not _empty(win.value):
            out.put(unit, win, other)

    pairs = pair_items(rules, llm)
    kept: list[tuple[int | None, int | None]] = []
    for r, m in pairs:
        if asked is not None and m is not None and (r is None or f"items[{r}]" not in asked):
            if r is None and rules.items:
                notes.append(
                    f"model item {llm.items[m].request[:80]!r} is outside what it was sent; "
                    "left out"
                )
                continue
            if r is not None:
                m = None  # the model's reading of an item it was not asked about
        if r is None and m is not None:
            prov = llm.provenance
            grounded = all(
                (p := prov.get(f"items[{m}].{k}")) is not None and p.status is Status.VERIFIED
                for k in ("request", "decision")
            )
            if not (grounded or not rules.items):
                notes.append(
                    f"model item {llm.items[m].request[:80]!r} is not verified by the letter; "
                    "left out"
                )
                continue
        kept.append((r, m))
    kept.sort(key=lambda pair: _item_position(rules, llm, pair))

    items: list[dict[str, Any]] = []
    for i, (r, m) in enumerate(kept):
        item: dict[str, Any] = {}
        for unit in ITEM_UNITS:
            cands = []
            if r is not None:
                cands.append(_candidate(rules, r_data, f"items[{r}].{unit}", f"items.{r}.{unit}"))
            if m is not None:
                cands.append(_candidate(llm, m_data, f"items[{m}].{unit}", f"items.{m}.{unit}"))
            win, other = _pick(*cands) if len(cands) == 2 else (cands[0], None)
            item[unit] = win.value
            if not _empty(win.value):
                out.put(f"items[{i}].{unit}", win, other)
        items.append(item)
    out.data["items"] = items

    record = {
        "letter": rules.letter,
        **{k: out.data.get(k) for k in ("case_number", "priority")},
        "dates": out.data.get("dates", {}),
        "reviewer": out.data.get("reviewer", {}),
        "patient": out.data.get("patient", {}),
        "items": items,
        "layout": rules.layout,
        "provenance": out.provenance,
        "alternatives": out.alternatives,
        "source": r_data["source"],
        "extractor": extractor.model_dump(),
        "warnings": notes,
    }
    # Through JSON: the values are JSON-ready, and strict JSON validation turns ISO dates and
    # enum strings back into their types.
    return LetterRecord.model_validate_json(json.dumps(record, default=str))
