"""Header values at their own label: pairing read from the layout, not from the value's shape.

Invariant: a labelled value is verified only when its label and a value are unambiguously
paired in this text's layout: the value follows the label on its line and runs to the end of
the line or to the next label, or the label closes its line and the value stands alone on the
next line. A label that follows another label with no value between (a table laid out as a row
of labels over a row of values, as some PDF-to-text tools print it) pairs with nothing: the
answer is then "unsure" (inconclusive), never a guess. Dates stated in prose are verified only
right after their cue phrase ("filed on", "Denial dated"). No pattern comes from the rules.
"""

from __future__ import annotations

import datetime as dt
import functools
import re
from dataclasses import dataclass

from ..forms import HEADER_LABELS, PROSE_DATE_CUES

#: Labels are looked for in the letter's first characters only.
HEADER_SCAN_CHARS = 3000
# Three spaces or more inside a value: the gap between two columns of a laid-out table.
_WIDE_GAP_RX = re.compile(r"\S[ \t]{3,}\S")
#: How many characters after a prose cue its date may start.
CUE_REACH = 12

_MONTHS = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
]
_DATE_TOKEN_RX = re.compile(
    r"(?P<num>\d{1,2}[/-]\d{1,2}[/-]\d{2,4})|(?P<month>[A-Za-z]{3,9})\.?\s+(?P<day>\d{1,2}),?"
    r"\s+(?P<year>\d{4})"
)


def _phrase(label: str) -> str:
    return r"\s+".join(re.escape(w) for w in label.split())


@functools.cache
def _labels_by_last_word() -> dict[str, list[tuple[re.Pattern[str], int, str]]]:
    """Label patterns (anchored at the end of the searched range) by the label's last word
    (lower case, colon dropped): (pattern, longest printed length, field path), longest label
    first, so "IMR Case Number:" wins over its tail "Case Number:"."""
    out: dict[str, list[tuple[re.Pattern[str], int, str]]] = {}
    labels = sorted(
        {(lab, path) for path, labs in HEADER_LABELS.items() for lab in labs},
        key=lambda lp: -len(lp[0]),
    )
    for lab, path in labels:
        last = lab.split()[-1].rstrip(":").lower()
        rx = re.compile(_phrase(lab) + r"\Z", re.IGNORECASE)
        out.setdefault(last, []).append((rx, 3 * len(lab) + 20, path))
    return out


@dataclass(frozen=True)
class LabelHit:
    path: str
    start: int
    end: int


@dataclass(frozen=True)
class Pairing:
    """What stands at one label: the value's span, or why none can be paired."""

    label: LabelHit
    value: tuple[int, int] | None
    why: str = ""


def label_hits(text: str, limit: int = HEADER_SCAN_CHARS) -> list[LabelHit]:
    """Every header label in the letter's first ``limit`` characters, in text order.

    Every label ends with a colon: the word before each colon picks the labels that may end
    there, and only those are tried (a pattern of all the alternatives, tried at every offset
    of the header, would cost more than the rest of verification).
    """
    by_word = _labels_by_last_word()
    out: list[LabelHit] = []
    stop = min(limit, len(text))
    last_end = 0
    colon = text.find(":", 0, stop)
    while colon >= 0:
        head = text[max(last_end, colon - 24) : colon].split()
        for rx, reach, path in by_word.get(head[-1].lower() if head else "", ()):
            m = rx.search(text, max(last_end, colon - reach), colon + 1)
            if m is not None:
                out.append(LabelHit(path, m.start(), m.end()))
                last_end = m.end()
                break
        colon = text.find(":", colon + 1, stop)
    return out


def _line_end(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _line_start(text: str, pos: int) -> int:
    return text.rfind("\n", 0, pos) + 1


def _alone_on_line(text: str, hit: LabelHit) -> bool:
    """Whether ``hit`` is the only thing on its line (its line holds no value)."""
    return (
        not text[_line_start(text, hit.start) : hit.start].strip()
        and not text[hit.end : _line_end(text, hit.end)].strip()
    )


def _stacked(text: str, upper: LabelHit, lower: LabelHit) -> bool:
    """Whether ``lower`` stands alone on the line right below ``upper``'s, itself alone."""
    return (
        _alone_on_line(text, upper)
        and _alone_on_line(text, lower)
        and _line_end(text, upper.end) < lower.start
        and not text[_line_end(text, upper.end) : _line_start(text, lower.start)].strip()
    )


def pair(text: str, hits: list[LabelHit], k: int) -> Pairing:
    """The value paired with ``hits[k]``, or why there is none."""
    hit = hits[k]
    eol = _line_end(text, hit.end)
    nxt = hits[k + 1] if k + 1 < len(hits) else None
    # A label right after another label on its line, with nothing between: a row of labels.
    prev = hits[k - 1] if k > 0 else None
    if (
        prev is not None
        and _line_end(text, prev.end) == _line_end(text, hit.start)
        and not text[prev.end : hit.start].strip()
    ):
        return Pairing(hit, None, "the label follows another label with no value between")
    stop = nxt.start if nxt is not None and nxt.start < eol else eol
    same_line = text[hit.end : stop]
    if same_line.strip():
        start = hit.end + len(same_line) - len(same_line.lstrip())
        end = hit.end + len(same_line.rstrip())
        if _WIDE_GAP_RX.search(text, start, end):
            # "Priority:   Standard      Application    11/21/2016": a table's columns, and the
            # next label not whole on this line; which words are this label's is not sure.
            return Pairing(hit, None, "the value runs into another column of the line")
        return Pairing(hit, (start, end))
    if nxt is not None and nxt.start < eol:
        return Pairing(hit, None, "the label is followed by another label on its line")
    # The label closes its line: the value alone on the next non-blank line, unless the label
    # stands in a column of labels (their values then follow as a column: pairing by order).
    if (prev is not None and _stacked(text, prev, hit)) or (
        nxt is not None and _stacked(text, hit, nxt)
    ):
        return Pairing(hit, None, "the label stands in a column of labels")
    pos = eol + 1
    while pos < len(text):
        line_end = _line_end(text, pos)
        line = text[pos:line_end]
        if line.strip():
            if nxt is not None and pos <= nxt.start < line_end:
                return Pairing(hit, None, "the next line holds another label")
            start = pos + len(line) - len(line.lstrip())
            value = (start, pos + len(line.rstrip()))
            if len(_DATE_TOKEN_RX.findall(line)) > 1 or len(line.split()) > 6:
                return Pairing(hit, None, "the next line holds several values")
            return Pairing(hit, value)
        pos = line_end + 1
    return Pairing(hit, None, "nothing follows the label")


def parse_date(raw: str) -> dt.date | None:
    """The one date ``raw`` holds (m/d/Y, m-d-Y, m/d/y, "Month d, Y"), else None."""
    raw = raw.strip().rstrip(".,;")
    m = _DATE_TOKEN_RX.fullmatch(raw)
    if m is None:
        return None
    try:
        if m.group("num"):
            month, day, year = (int(x) for x in re.split(r"[/-]", m.group("num")))
            if year < 100:
                year += 2000 if year < 70 else 1900
            return dt.date(year, month, day)
        name = m.group("month").lower()
        month = next(k for k, full in enumerate(_MONTHS, 1) if full.startswith(name[:3]))
        return dt.date(int(m.group("year")), month, int(m.group("day")))
    except (ValueError, StopIteration):
        return None


def prose_date(text: str, path: str) -> tuple[dt.date, tuple[int, int]] | bool | None:
    """The date the letter states right after ``path``'s prose cue: (date, span); ``False``
    when no cue is printed; ``None`` when a cue is printed with no date right after it."""
    cues = PROSE_DATE_CUES.get(path, ())
    seen = False
    for cue in cues:
        for m in re.finditer(_phrase(cue), text, re.IGNORECASE):
            seen = True
            d = _DATE_TOKEN_RX.search(text, m.end(), m.end() + CUE_REACH + 30)
            if d is None or d.start() - m.end() > CUE_REACH:
                continue
            value = parse_date(d.group())
            if value is not None:
                return value, d.span()
    return None if seen else False
