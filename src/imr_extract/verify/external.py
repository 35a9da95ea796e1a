"""Verify a record that another tool made: a plain model call, langextract, a spreadsheet.

``verify_external(data, letter)`` takes a record in the output shape (plain JSON data, with or
without provenance) and the letter it is about, and returns a ``LetterRecord`` whose every value
is located in the letter and judged by ``verify`` like the rules' and the model's own values.

Invariant: nothing the input says about where or how a value was found is trusted. Its
provenance, layout, verification, warnings and extractor block are ignored; every value is
located again in the letter's text (``imr_extract.locate``) and its provenance entry says
``method: external``, so no check takes a shortcut meant for the rules' own readings. A value that
does not fit the schema (a US-format date, an empty source, a decision outside the closed set, a
page given as a string) is left out and reported on its own, as a failed ``value_fits_schema``
check naming its path (and a warning); it never stops the record. Where a value is required (an
item's request and decision, a citation's kind and source), the object that cannot be built
without it is left out too, and the check says so. Like everything in ``imr_extract.verify``,
this module imports nothing from ``imr_extract.rules``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

from .. import layouts
from ..errors import ImrExtractError, InputError
from ..forms import CA_LABEL_RX, IMR_LABEL_RX, RATIONALE_LABEL_RX
from ..ingest import Document, iter_paths, read_path
from ..limits import DEFAULT_LIMITS, Limits
from ..locate import Location, locate, locate_near
from ..names import unescape_name
from ..rows import PROBLEMS_KEY, read_csv_records
from ..schema import (
    Backend,
    Check,
    CheckResult,
    CitationKind,
    Decision,
    ExtractorInfo,
    LetterRecord,
    MatchKind,
    Method,
    Provenance,
    Sex,
    schema_hash,
)
from ..text import fold, trim_span
from .checks import NOVEL_LAYOUT_THRESHOLD, expected_paths, verify
from .grounding import span_holds, value_at

#: The name of the check an invalid value fails (in ``verification.checks``).
FITS_SCHEMA = "value_fits_schema"
#: The rule id every external provenance entry carries.
EXTERNAL_RULE = "external.located"

_STRICT = ConfigDict(strict=True)
_DATE_FIELDS = ("assigned", "injury", "decision", "ur_denial", "application_received")
#: Keys of the output shape that are metadata: accepted and ignored (never trusted).
_METADATA_KEYS = frozenset(
    {
        "provenance",
        "verification",
        "alternatives",
        "source",
        "extractor",
        "warnings",
        "layout",
        PROBLEMS_KEY,
    }
)
_GUIDELINES = ("claims_administrator_guideline", "imr_guideline")
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
#: How far after its request an item's decision word may stand ("X:\n\nUpheld").
_DECISION_WINDOW = 80
_DECISION_WORD_RX = {
    Decision.UPHELD: re.compile(r"\bupheld\b", re.IGNORECASE),
    Decision.OVERTURNED: re.compile(r"\boverturned\b", re.IGNORECASE),
}
_WORD_RX = re.compile(r"[A-Za-z]+")
#: A date as letters print it (the shapes ``_printed_dates`` spells out), not inside a number.
_PRINTED_DATE_RX = re.compile(
    r"(?<![\w/-])(?:\d{1,2}/\d{1,2}/\d{2,4}|\d{1,2}-\d{1,2}-\d{4}"
    r"|(?:" + "|".join(_MONTHS) + r")\s+\d{1,2},\s+\d{4})(?![\w/-])"
)
_PROVENANCE = TypeAdapter(dict[str, Provenance])


def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp, config=_STRICT)


_TEXT = _adapter(str | None)
_NONEMPTY = _adapter(Annotated[str, Field(min_length=1)])
_DATE = _adapter(dt.date | None)
_AGE = _adapter(Annotated[int, Field(ge=0, le=120)] | None)
_SEX = _adapter(Sex | None)
_DECISION = _adapter(Decision)
_KIND = _adapter(CitationKind)
_FLAG = _adapter(bool)
_PAGE = _adapter(Annotated[int, Field(ge=1)])


@dataclass(frozen=True)
class InvalidValue:
    """A value of the input that does not fit the schema, by its path in the input."""

    path: str
    value: Any
    reason: str
    #: Whether it counts against coverage on its own: not a key the schema does not have (it
    #: stands for no expected field), nor a value of an item left out (the census of the letter's
    #: decisions counts that item as missing).
    counts: bool = True

    def check(self) -> Check:
        return Check(
            name=FITS_SCHEMA,
            result=CheckResult.FAILED,
            paths=[self.path],
            detail=f"{_show(self.value)}: {self.reason}",
        )


def _show(value: Any, width: int = 60) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= width else text[: width - 1] + "…"


class LetterNotFoundError(InputError):
    """No letter in ``--letters`` is the one a record names."""

    code = "letter-not-found"


class ExternalRecordError(ImrExtractError):
    """An input that cannot be read as a record at all (not an object, no letter name)."""

    code = "record"


# --- parsing what fits the schema ----------------------------------------------------------------


class _Parser:
    """Keeps what fits the schema, field by field; lists what does not."""

    def __init__(self) -> None:
        self.invalid: list[InvalidValue] = []

    def bad(self, path: str, value: Any, reason: str) -> None:
        self.invalid.append(InvalidValue(path, value, reason))

    def left_out(self, since: int, what: str, *, counts: bool = True) -> None:
        """Say on each value reported since ``since`` that ``what`` is left out with it."""
        for k in range(since, len(self.invalid)):
            v = self.invalid[k]
            reason = f"{v.reason}; {what} is left out"
            self.invalid[k] = InvalidValue(v.path, v.value, reason, counts=v.counts and counts)

    def value(self, path: str, raw: Any, adapter: TypeAdapter[Any]) -> Any:
        """The JSON value of ``raw`` if it fits ``adapter``, else None (and reported)."""
        if isinstance(raw, str):
            raw = fold(raw)  # the output convention: line breaks and space runs folded
            if not raw and adapter is _TEXT:
                return None  # a blank cell states nothing (as null does)
        if isinstance(raw, dt.date) and not isinstance(raw, dt.datetime):
            raw = raw.isoformat()
        try:
            parsed = adapter.validate_json(json.dumps(raw))
        except (ValidationError, TypeError, ValueError) as exc:
            self.bad(path, raw, _reason(exc))
            return None
        return json.loads(json.dumps(parsed, default=_jsonable))

    def obj(self, path: str, raw: Any, known: Iterable[str]) -> dict[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            self.bad(path, raw, "not an object")
            return {}
        for key in raw:
            if key not in known:
                where = f"{path}.{key}" if path else str(key)
                self.invalid.append(
                    InvalidValue(where, raw[key], "not a field of the schema", counts=False)
                )
        return dict(raw)

    def array(self, path: str, raw: Any) -> list[Any]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.bad(path, raw, "not a list")
            return []
        return raw

    def record(self, data: Mapping[str, Any]) -> dict[str, Any]:
        known = {"letter", "case_number", "dates", "priority", "reviewer", "patient", "items"}
        top = self.obj("", data, known | _METADATA_KEYS)
        dates_in = self.obj("dates", top.get("dates"), _DATE_FIELDS)
        reviewer = self.obj(
            "reviewer", top.get("reviewer"), ("licensure", "specialty", "subspecialty")
        )
        patient = self.obj("patient", top.get("patient"), ("age", "sex"))
        licensure = [
            v
            for i, s in enumerate(self.array("reviewer.licensure", reviewer.get("licensure")))
            if (v := self.value(f"reviewer.licensure[{i}]", s, _NONEMPTY)) is not None
        ]
        items = []
        for i, raw in enumerate(self.array("items", top.get("items"))):
            item = self.item(f"items[{i}]", raw)
            if item is not None:
                items.append(item)
        return {
            "letter": top["letter"],
            "case_number": self.value("case_number", top.get("case_number"), _TEXT),
            "dates": {n: self.value(f"dates.{n}", dates_in.get(n), _DATE) for n in _DATE_FIELDS},
            "priority": self.value("priority", top.get("priority"), _TEXT),
            "reviewer": {
                "licensure": licensure,
                "specialty": self.value("reviewer.specialty", reviewer.get("specialty"), _TEXT),
                "subspecialty": self.value(
                    "reviewer.subspecialty", reviewer.get("subspecialty"), _TEXT
                ),
            },
            "patient": {
                "age": self.value("patient.age", patient.get("age"), _AGE),
                "sex": self.value("patient.sex", patient.get("sex"), _SEX),
            },
            "items": items,
        }

    def item(self, path: str, raw: Any) -> dict[str, Any] | None:
        keys = ("request", "decision", "original_request", "authorized", "rationale", *_GUIDELINES)
        if not isinstance(raw, Mapping):
            reason = "not an object: the item is left out"
            self.invalid.append(InvalidValue(path, raw, reason, counts=False))
            return None
        obj = self.obj(path, raw, keys)
        mark = len(self.invalid)
        request = self.value(f"{path}.request", obj.get("request"), _NONEMPTY)
        decision = self.value(f"{path}.decision", obj.get("decision"), _DECISION)
        if request is None or decision is None:
            self.left_out(mark, "the item (it needs a request and a decision)", counts=False)
            return None
        out: dict[str, Any] = {"request": request, "decision": decision}
        for key in ("original_request", "authorized", "rationale"):
            out[key] = self.value(f"{path}.{key}", obj.get(key), _TEXT)
        for g in _GUIDELINES:
            out[g] = self.guideline(f"{path}.{g}", obj.get(g))
        return out

    def guideline(self, path: str, raw: Any) -> dict[str, Any]:
        """A guideline line; flags that are missing or invalid are written False, unplaced."""
        if raw is None:
            self.bad(path, raw, "missing: written as not cited, no citations (unverified)")
        obj = self.obj(path, raw, ("cited", "outside_mtus", "citations"))
        flags = {}
        for flag in ("cited", "outside_mtus"):
            if flag in obj:
                flags[flag] = self.value(f"{path}.{flag}", obj[flag], _FLAG)
            elif raw is not None:
                self.bad(f"{path}.{flag}", None, "missing: written as false (unverified)")
        citations = []
        for c, cit in enumerate(self.array(f"{path}.citations", obj.get("citations"))):
            cp = f"{path}.citations[{c}]"
            if not isinstance(cit, Mapping):
                self.bad(cp, cit, "not an object: the citation is left out")
                continue
            co = self.obj(cp, cit, ("kind", "source", "sections", "pages"))
            mark = len(self.invalid)
            kind = self.value(f"{cp}.kind", co.get("kind"), _KIND)
            source = self.value(f"{cp}.source", co.get("source"), _NONEMPTY)
            if kind is None or source is None:
                self.left_out(mark, "the citation (it needs a kind and a source)")
                continue
            sections = [
                v
                for s, sec in enumerate(self.array(f"{cp}.sections", co.get("sections")))
                if (v := self.value(f"{cp}.sections[{s}]", sec, _NONEMPTY)) is not None
            ]
            pages = [
                v
                for n, page in enumerate(self.array(f"{cp}.pages", co.get("pages")))
                if (v := self.value(f"{cp}.pages[{n}]", page, _PAGE)) is not None
            ]
            citations.append({"kind": kind, "source": source, "sections": sections, "pages": pages})
        return {
            "cited": flags.get("cited") or False,
            "outside_mtus": flags.get("outside_mtus") or False,
            "citations": citations,
            # which flags are the input's own (the others are placeholders, never placed)
            "_given": [f for f, v in flags.items() if v is not None],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errors = exc.errors(include_url=False)
        if errors:
            msg = str(errors[0]["msg"])
            if errors[0]["type"].startswith("date"):
                msg += " (dates are ISO YYYY-MM-DD)"
            return msg
    return str(exc)


def parse_external(data: Mapping[str, Any]) -> tuple[dict[str, Any], list[InvalidValue]]:
    """The data fields of ``data`` that fit the schema, and every value that does not.

    Raises:
        ExternalRecordError: ``data`` is not an object naming its letter.
    """
    if not isinstance(data, Mapping):
        raise ExternalRecordError("<record>", f"not a JSON object ({type(data).__name__})")
    letter = data.get("letter")
    if not isinstance(letter, str) or not letter.strip():
        raise ExternalRecordError("<record>", "a record needs a 'letter' (the letter's file name)")
    parser = _Parser()
    clean = parser.record(data)
    # What a converter (``imr_extract.rows``) could not say, passed on to be reported.
    for p in data.get(PROBLEMS_KEY) or []:
        if isinstance(p, Mapping) and isinstance(p.get("path"), str):
            parser.bad(p["path"], p.get("value"), str(p.get("reason") or "invalid"))
    return clean, parser.invalid


# --- locating each value in the letter -----------------------------------------------------------


def _match(raw: str, value: Any) -> MatchKind:
    if isinstance(value, str):
        if raw == value:
            return MatchKind.EXACT
        if fold(raw) == value:
            return MatchKind.NORMALISED
        if fold(raw).casefold() == value.casefold():
            return MatchKind.FUZZY
    elif isinstance(value, int) and not isinstance(value, bool) and raw == str(value):
        return MatchKind.EXACT
    return MatchKind.DERIVED


class _Placer:
    """Provenance entries (method external) for values located in one letter."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.text = doc.text
        self.entries: dict[str, dict[str, Any]] = {}
        self.dates: list[tuple[str, tuple[int, int]]] | None = None

    def put(self, path: str, value: Any, span: tuple[int, int] | None) -> tuple[int, int] | None:
        spans = []
        match = MatchKind.ABSENT
        if span is not None and span[1] > span[0]:
            spans = [{"start": span[0], "end": span[1], "page": self.doc.page_of(span[0])}]
            match = _match(self.text[span[0] : span[1]], value)
        self.entries[path] = {
            "method": Method.EXTERNAL,
            "rule": EXTERNAL_RULE,
            "match": match,
            "spans": spans,
        }
        return span if spans else None

    def string(
        self, path: str, value: str | None, regions: list[tuple[int, int]] | None = None
    ) -> tuple[int, int] | None:
        if value is None:
            return None
        loc = locate_near(self.text, value, regions or [])
        return self.put(path, value, _span(loc))

    def date(self, path: str, iso: str | None) -> None:
        """A date at the first place the letter prints it, in any of its printed forms."""
        if iso is None:
            return
        day = dt.date.fromisoformat(iso)
        if self.dates is None:  # every printed date of the letter, found once
            self.dates = [(m.group(), m.span()) for m in _PRINTED_DATE_RX.finditer(self.text)]
        forms = set(_printed_dates(day))
        span = next(
            (
                sp
                for printed, sp in self.dates
                if fold(printed) in forms and span_holds(path, day, printed)
            ),
            None,
        )
        self.put(path, day, span)


def _span(loc: Location | None) -> tuple[int, int] | None:
    return (loc.start, loc.end) if loc is not None else None


def _printed_dates(day: dt.date) -> list[str]:
    """The ways a letter prints ``day``: 11/29/2016, 11/29/16, 11-29-2016, November 29, 2016."""
    months = {str(day.month), f"{day.month:02d}"}
    days = {str(day.day), f"{day.day:02d}"}
    out = [
        f"{m}{sep}{d}{sep}{y}"
        for m in sorted(months)
        for d in sorted(days)
        for sep, y in (("/", f"{day.year}"), ("/", f"{day.year % 100:02d}"), ("-", f"{day.year}"))
    ]
    out += [f"{_MONTHS[day.month - 1]} {d}, {day.year}" for d in sorted(days)]
    return out


def _place_header(placer: _Placer, data: dict[str, Any]) -> None:
    text = placer.text
    placer.string("case_number", data["case_number"])
    placer.string("priority", data["priority"])
    for name in _DATE_FIELDS:
        placer.date(f"dates.{name}", data["dates"][name])
    reviewer = data["reviewer"]
    for i, state in enumerate(reviewer["licensure"]):
        placer.string(f"reviewer.licensure[{i}]", state)
    placer.string("reviewer.specialty", reviewer["specialty"])
    placer.string("reviewer.subspecialty", reviewer["subspecialty"])
    patient = data["patient"]
    age_at = 0
    if patient["age"] is not None:
        age = patient["age"]
        at = locate(text, f"{age} year") or locate(text, f"{age}-year")
        span = (at.start, at.start + len(str(age))) if at else None
        placer.put("patient.age", age, span)
        age_at = at.start if at else 0
    if patient["sex"] is not None:
        sex = Sex(patient["sex"])
        # The word that says it ("female", "woman", "lady" ...), first after the age if stated.
        span = None
        for start, end in ((age_at, min(len(text), age_at + 300)), (0, len(text))):
            for m in _WORD_RX.finditer(text, start, end):
                if span_holds("patient.sex", sex, m.group()):
                    span = m.span()
                    break
            if span is not None:
                break
        placer.put("patient.sex", sex, span)


@dataclass
class _ItemAt:
    start: int  # where the item's request stands (or where the search was when it was not found)
    decision_end: int


def _place_items(placer: _Placer, items: list[dict[str, Any]]) -> None:
    text = placer.text
    # First pass: each request and its decision word, in order (an item's request is looked
    # for after the previous item's decision word, then anywhere).
    at: list[_ItemAt] = []
    search_from = 0
    for i, item in enumerate(items):
        p = f"items[{i}]"
        loc = locate_near(text, item["request"], [(search_from, len(text))])
        span = placer.put(f"{p}.request", item["request"], _span(loc))
        decision = Decision(item["decision"])
        word = None
        if span is not None:
            word = _DECISION_WORD_RX[decision].search(
                text, span[1], min(len(text), span[1] + _DECISION_WINDOW)
            )
        placer.put(f"{p}.decision", decision, word.span() if word else None)
        start = span[0] if span else search_from
        end = word.end() if word else (span[1] if span else search_from)
        at.append(_ItemAt(start, end))
        if span is not None and span[0] >= search_from:
            search_from = end
    # Second pass: an item's other values within its stretch of the letter (up to the next
    # item's request in text order).
    starts = sorted({a.start for a in at})
    prev_end = 0
    for i, (item, a) in enumerate(zip(items, at, strict=True)):
        p = f"items[{i}]"
        end = next((s for s in starts if s > a.start), len(text))
        sentence = [(prev_end, a.decision_end)]
        for key in ("original_request", "authorized"):
            placer.string(f"{p}.{key}", item[key], sentence)
        lines = _guideline_lines(text, a.decision_end, end)
        for g in _GUIDELINES:
            _place_guideline(placer, f"{p}.{g}", item[g], lines.get(g), (a.start, end))
        rationale_at = lines.get("rationale")
        placer.string(f"{p}.rationale", item["rationale"], [rationale_at or (a.decision_end, end)])
        prev_end = a.decision_end


def _guideline_lines(text: str, start: int, end: int) -> dict[str, tuple[int, int]]:
    """The item's guideline lines and rationale, between the form's own labels."""
    ca = CA_LABEL_RX.search(text, start, end)
    imr = IMR_LABEL_RX.search(text, ca.end() if ca else start, end)
    labelled = imr or ca
    rat = RATIONALE_LABEL_RX.search(text, labelled.end() if labelled else start, end)
    rat_start = rat.start() if rat else end
    lines: dict[str, tuple[int, int]] = {}
    if ca:
        lines[_GUIDELINES[0]] = trim_span(text, ca.end(), imr.start() if imr else rat_start)
    if imr:
        lines[_GUIDELINES[1]] = trim_span(text, imr.end(), rat_start)
    if rat:
        lines["rationale"] = (rat.end(), end)
    return lines


def _place_guideline(
    placer: _Placer,
    path: str,
    g: dict[str, Any],
    line: tuple[int, int] | None,
    item: tuple[int, int],
) -> None:
    text = placer.text
    given = g.pop("_given")
    for flag in given:
        # A flag is read from its line as a whole (as the model's are from its quote).
        placer.put(f"{path}.{flag}", g[flag], line if line and line[1] > line[0] else None)
    regions = [r for r in (line, item) if r is not None]
    for c, cit in enumerate(g["citations"]):
        cp = f"{path}.citations[{c}]"
        source = placer.string(f"{cp}.source", cit["source"], regions)
        word = "Non-MTUS" if cit["kind"] == CitationKind.NON_MTUS.value else "MTUS"
        kind_regions = [(line[0], source[0] if source else line[1])] if line else []
        kind_loc = locate_near(text, word, [*kind_regions, *regions], fuzzy=False)
        placer.put(f"{cp}.kind", CitationKind(cit["kind"]), _span(kind_loc))
        for s, section in enumerate(cit["sections"]):
            placer.string(f"{cp}.sections[{s}]", section, regions)
        near = [source] if source else []
        for n, page in enumerate(cit["pages"]):
            loc = locate_near(text, str(page), near + regions)
            placer.put(f"{cp}.pages[{n}]", page, _span(loc))


# --- the entry points ----------------------------------------------------------------------------


def verify_external(
    data: Mapping[str, Any],
    letter: Document | str | os.PathLike[str],
    *,
    pdf_engine: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> LetterRecord:
    """``data`` (a record in the output shape, from any tool) verified against its letter
    (read within ``limits``).

    Every value that fits the schema is located in the letter and judged by ``verify``; each that
    does not is reported as a failed ``value_fits_schema`` check (``verification.checks``, with
    its path and why) and a warning, and left out. The record's ``letter`` is the input's;
    ``layout`` is detected from the letter; ``extractor.backend`` is ``external``.

    Raises:
        ExternalRecordError: ``data`` is not a record naming its letter.
        ImrExtractError: the letter cannot be read (given as a path).
    """
    clean, invalid = parse_external(data)
    doc = letter if isinstance(letter, Document) else read_path(letter, pdf_engine, limits=limits)
    layout, _score = layouts.detect(doc.text)
    placer = _Placer(doc)
    _place_header(placer, clean)
    _place_items(placer, clean["items"])
    warnings = [f"{v.path}: invalid value {_show(v.value)}: {v.reason}" for v in invalid]
    record = LetterRecord.model_validate_json(
        json.dumps(
            {
                **clean,
                "layout": layout.name,
                "source": doc.source_info().model_dump(mode="json"),
                "extractor": ExtractorInfo(
                    backend=Backend.EXTERNAL, schema_hash=schema_hash()
                ).model_dump(mode="json"),
                "warnings": warnings,
            }
        )
    )
    record = record.model_copy(update={"provenance": _PROVENANCE.validate_python(placer.entries)})
    verified = verify(record, doc.text, doc.page_of)
    assert verified.verification is not None
    if not invalid:
        return verified
    v = verified.verification
    # A value left out is a field the record does not cover: where it is not already among the
    # expected fields (a citation left out), it counts against coverage on its own. An item left
    # out is a decision of the letter no item holds: the census counts it (and the record is not
    # complete).
    expected = expected_paths(verified)
    extra = sum(
        i.counts and not any(e.startswith(i.path) or i.path.startswith(e) for e in expected)
        for i in invalid
    )
    coverage = v.coverage
    if extra:
        coverage = round(v.coverage * v.expected_fields / (v.expected_fields + extra), 3)
    update = {
        "checks": [i.check() for i in invalid] + v.checks,
        "coverage": coverage,
        "expected_fields": v.expected_fields + extra,
        "novel_layout": v.novel_layout or coverage < NOVEL_LAYOUT_THRESHOLD,
    }
    return verified.model_copy(update={"verification": v.model_copy(update=update)})


def invalid_checks(record: LetterRecord) -> list[Check]:
    """The ``value_fits_schema`` checks of a record ``verify_external`` returned."""
    if record.verification is None:
        return []
    return [c for c in record.verification.checks if c.name == FITS_SCHEMA]


# --- batches: records matched to the letters of a directory --------------------------------------


@dataclass
class ExternalOutcome:
    """One input record: verified, or the error that kept it from being verified."""

    source: str  # the letter the record names, or where the record stands in its file
    record: LetterRecord | None = None
    error: ImrExtractError | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None


class LetterIndex:
    """The letters under a directory, by file name (and by stem, when that is unambiguous)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.by_name: dict[str, str] = {}
        by_stem: dict[str, list[str]] = {}
        for path in iter_paths([self.root]):
            name = Path(path).name
            self.by_name.setdefault(name, path)
            by_stem.setdefault(Path(path).stem, []).append(path)
        self.by_stem = {stem: paths[0] for stem, paths in by_stem.items() if len(paths) == 1}

    def find(self, letter: str) -> str:
        """The path of the letter named ``letter`` (a file name, or its stem).

        Raises:
            LetterNotFoundError: no such letter under the directory.
        """
        name = Path(unescape_name(letter)).name  # a name written \xNN: see ``names``
        path = self.by_name.get(name) or self.by_stem.get(Path(name).stem)
        if path is None:
            raise LetterNotFoundError(letter, f"no letter named {name!r} under {self.root}")
        return path


def iter_record_file(path: str | os.PathLike[str]) -> Iterator[tuple[str, Any]]:
    """``(where, data)`` for each record of a JSON Lines file (or a JSON array / object), or of
    a ``.csv`` file of item rows as ``extract --format csv`` writes them (``imr_extract.rows``);
    ``-`` reads JSON from standard input.

    A line that is not JSON yields ``(where, error)`` with an ``ExternalRecordError``, so one
    bad line never stops the others.

    Raises:
        ImrExtractError: the file cannot be read at all.
    """
    name = str(path)
    try:
        text = sys.stdin.read() if name == "-" else Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImrExtractError(name, f"cannot read records ({exc})") from exc
    if Path(path).suffix.lower() == ".csv":
        yield from read_csv_records(text, name)
        return
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            loaded = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ImrExtractError(name, f"not a JSON array ({exc})") from exc
        for i, data in enumerate(loaded):
            yield f"{name}[{i}]", data
        return
    if stripped.startswith("{") and "\n" in stripped:
        try:  # one pretty-printed object
            yield f"{name}", json.loads(stripped)
            return
        except json.JSONDecodeError:
            pass  # JSON Lines
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{name}:{number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as exc:
            yield where, ExternalRecordError(where, f"not JSON ({exc.msg})")


def verify_records(
    records: Iterable[tuple[str, Any]],
    letters: str | os.PathLike[str] | LetterIndex,
    *,
    pdf_engine: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Iterator[ExternalOutcome]:
    """Verify each ``(where, data)`` against its letter under ``letters``; never raises per record.

    A record that is not one, names no letter, or whose letter is missing or unreadable becomes
    an ``ExternalOutcome`` with its error; the others are verified.
    """
    index = letters if isinstance(letters, LetterIndex) else LetterIndex(letters)
    for where, data in records:
        if isinstance(data, ImrExtractError):
            yield ExternalOutcome(where, error=data)
            continue
        try:
            parse_external(data)
        except ExternalRecordError as exc:
            yield ExternalOutcome(where, error=ExternalRecordError(where, exc.cause))
            continue
        letter = data["letter"]
        try:
            record = verify_external(data, index.find(letter), pdf_engine=pdf_engine, limits=limits)
        except ImrExtractError as exc:
            yield ExternalOutcome(letter, error=exc)
        else:
            yield ExternalOutcome(letter, record=record)


# --- a row per value (the CSV of ``imr-extract verify``) -----------------------------------------

#: Columns of ``value_rows``: one row per value, per invalid value, or per record that failed.
VALUE_COLUMNS = (
    "letter",
    "path",
    "value",
    "status",
    "match",
    "failed_checks",
    "detail",
    "coverage",
)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_jsonable, ensure_ascii=False)


def value_rows(outcome: ExternalOutcome) -> Iterator[dict[str, str]]:
    """One row per value of a verified record (its status, match and failed checks), one per
    invalid value (status ``invalid``), or one ``error`` row for a record that failed."""
    if outcome.record is None:
        error = outcome.error
        yield {
            "letter": outcome.source,
            "path": "",
            "value": "",
            "status": "error",
            "match": "",
            "failed_checks": error.code if error is not None else "",
            "detail": error.cause if error is not None else "",
            "coverage": "",
        }
        return
    record = outcome.record
    coverage = str(record.verification.coverage) if record.verification else ""
    details: dict[str, list[str]] = {}
    for check in record.verification.checks if record.verification else []:
        if check.result is CheckResult.FAILED and check.name != FITS_SCHEMA:
            for p in check.paths:
                details.setdefault(p, []).append(check.detail)
    for path, prov in record.provenance.items():
        yield {
            "letter": record.letter,
            "path": path,
            "value": _cell(value_at(record, path)),
            "status": prov.status.value,
            "match": prov.match.value,
            "failed_checks": "; ".join(prov.failed_checks),
            "detail": "; ".join(d for d in details.get(path, []) if d),
            "coverage": coverage,
        }
    for check in invalid_checks(record):
        yield {
            "letter": record.letter,
            "path": check.paths[0] if check.paths else "",
            "value": "",
            "status": "invalid",
            "match": "",
            "failed_checks": FITS_SCHEMA,
            "detail": check.detail,
            "coverage": coverage,
        }
