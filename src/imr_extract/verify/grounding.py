"""Does the text at a span hold the value a record claims for it?

This is the invariant every extractor's provenance must satisfy, checked the same way for rule
output, LLM output and in the tests: a string value is the span's text folded (gold convention);
a date is the span's printed date; a page is in the span's page range; a flag is supported by the
phrase at its span.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from enum import Enum
from typing import Any

from pydantic import TypeAdapter

from ..forms import SEX_WORDS
from ..schema import CitationKind, Decision, LetterRecord, MatchKind, Provenance, Sex
from ..text import clean, fold
from .labels import parse_date

_RANGE_RX = re.compile(r"^(\d+)(?:\s*[-–]\s*(\d+))?$")


def _page_in(raw: str, page: int) -> bool:
    m = _RANGE_RX.match(raw.strip())
    if not m:
        return False
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else first
    return first <= page <= last


def span_holds(path: str, value: Any, raw: str) -> bool:
    """Whether ``raw`` (the text at a span) supports ``value`` for the field at ``path``."""
    if type(value) is str:  # the common case first (Decision and the other enums are str too)
        return raw == value or fold(raw) == value or clean(raw) == value
    if value is None:
        return False
    if isinstance(value, bool):
        # A flag is read from a phrase (or from the absence of one in the line it spans).
        return bool(raw.strip())
    if isinstance(value, Decision):
        return raw.strip().lower() == value.value
    if isinstance(value, Sex):
        return SEX_WORDS.get(raw.strip().lower()) is value
    if isinstance(value, CitationKind):
        folded = "".join(raw.split()).lower()  # "Non-" / "MTUS" across a line break too
        if value is CitationKind.NON_MTUS:
            return "non-mtus" in folded or "decisionbasedon" in folded
        return "mtus" in folded and "non-mtus" not in folded
    if isinstance(value, dt.date):
        return parse_date(raw) == value
    if isinstance(value, int):
        if path.endswith("]") and ".pages[" in path:
            return _page_in(raw, value)
        return raw.strip() == str(value)
    if isinstance(value, str):
        return raw == value or fold(raw) == value or clean(raw) == value
    return False


@functools.lru_cache(maxsize=16384)
def _path_parts(path: str) -> tuple[str | int, ...]:
    return tuple(
        int(part[1:-1]) if part.startswith("[") else part
        for part in re.findall(r"[^.\[\]]+|\[\d+\]", path)
    )


def value_at(record: LetterRecord, path: str) -> Any:
    """The value at a provenance path such as ``items[0].imr_guideline.citations[1].pages[0]``."""
    obj: Any = record
    for part in _path_parts(path):
        obj = obj[part] if isinstance(part, int) else getattr(obj, part)
    return obj


def ungrounded(record: LetterRecord, text: str) -> list[str]:
    """Provenance entries whose spans fall outside ``text`` or do not hold their value."""
    problems = []
    for path, prov in record.provenance.items():
        value = value_at(record, path)
        for span in prov.spans:
            if not 0 <= span.start < span.end <= len(text):
                problems.append(f"{path}: span {span.start}-{span.end} outside the text")
            elif not span_holds(path, value, text[span.start : span.end]) and not (
                prov.match is MatchKind.FUZZY
                and isinstance(value, str)
                and fold(text[span.start : span.end]).casefold() == value.casefold()
            ):
                raw = text[span.start : span.end]
                problems.append(f"{path}: {value!r} not at span {raw[:60]!r}")
    return problems


def match_kind(text: str, start: int, end: int, value: Any) -> MatchKind:
    """How ``value`` relates to ``text[start:end]`` (see ``MatchKind``)."""
    if end <= start:
        return MatchKind.ABSENT
    raw = text[start:end]
    # A value from a closed set (a decision, a sex, a priority) is read from the printed word:
    # ``upheld`` from "Upheld" is derived, as a date reformatted is, not a near miss.
    chosen = isinstance(value, Enum)
    if chosen:
        value = value.value
    if isinstance(value, str):
        if raw == value:
            return MatchKind.EXACT
        folded = fold(raw)
        if folded == value:
            return MatchKind.NORMALISED
        if folded.casefold() == value.casefold() and not chosen:
            return MatchKind.FUZZY  # located case-insensitively (model output)
        return MatchKind.DERIVED
    if isinstance(value, int) and not isinstance(value, bool) and raw == str(value):
        return MatchKind.EXACT
    return MatchKind.DERIVED


#: Validates a whole provenance map in one pydantic-core pass (much faster than model by model).
PROVENANCE_MAP = TypeAdapter(dict[str, Provenance])
