"""Letter-level fields printed as labelled values: case number, the five dates, priority.

The 2016-17 header block wraps labels across lines ("Priority: Standard Application \\nReceived:
\\n12/01/2016"), so every label pattern allows any whitespace between its words.
"""

from __future__ import annotations

import datetime as dt
import functools
import re

from ..text import Found, phrase

CASE_NUMBER_RX = re.compile(r"Case\s+(?:Number|No\.?)\s*:?\s*(CM\d{2}-\d{5,8})\b")
BARE_CASE_NUMBER_RX = re.compile(r"\b(CM\d{2}-\d{7})\b")

_MONTHS = [
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
]  # fmt: skip
_DATE = (
    r"(\d{1,2}/\d{1,2}/\d{2,4}"
    r"|\d{1,2}-\d{1,2}-\d{4}"
    r"|(?:" + "|".join(_MONTHS) + r")\s+\d{1,2},\s+\d{4})"
)

#: Field name -> label as printed. Order matters only for readability.
DATE_LABELS: dict[str, str] = {
    "assigned": "Date Assigned:",
    "injury": "Date of Injury:",
    "decision": "Decision Date:",
    "ur_denial": "UR Denial Date:",
    "application_received": "Application Received:",
}


def date_label_patterns(labels: dict[str, str]) -> dict[str, re.Pattern[str]]:
    """Field name -> pattern for "<label> <date>", the date in group 1 (for any form's labels)."""
    return {name: re.compile(phrase(label) + r"\s*" + _DATE) for name, label in labels.items()}


DATE_RX = date_label_patterns(DATE_LABELS)
PRIORITY_RX = re.compile(r"Priority:\s*(Standard|Expedited|Urgent|Regular)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=8192)
def parse_date(raw: str) -> dt.date | None:
    """A printed date as a ``date``; None when it is not a real date."""
    raw = " ".join(raw.split())
    for fmt in ("%m/%d/%Y", "%m-%d-%Y", "%B %d, %Y", "%m/%d/%y"):
        try:
            return dt.datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    return None


def find_case_number(text: str, end: int | None = None) -> Found[str] | None:
    m = CASE_NUMBER_RX.search(text, 0, end or len(text))
    if m:
        return Found(m.group(1), m.start(1), m.end(1), "header.case_number")
    m = BARE_CASE_NUMBER_RX.search(text, 0, end or len(text))
    if m:
        return Found(m.group(1), m.start(1), m.end(1), "header.case_number_bare")
    return None


def find_dates(
    text: str,
    end: int | None = None,
    patterns: dict[str, re.Pattern[str]] = DATE_RX,
    rule_prefix: str = "header.date",
) -> dict[str, Found[dt.date]]:
    """Each labelled date found before ``end`` (the header region); another form's labels with
    ``patterns`` (see ``date_label_patterns``) and a ``rule_prefix`` of its own."""
    stop = end or len(text)
    out: dict[str, Found[dt.date]] = {}
    for name, rx in patterns.items():
        m = rx.search(text, 0, stop)
        rule = f"{rule_prefix}.{name}"
        if m is None:
            continue
        value = parse_date(m.group(1))
        if value is not None:
            out[name] = Found(value, m.start(1), m.end(1), rule)
    return out


def find_priority(text: str, end: int | None = None) -> Found[str] | None:
    m = PRIORITY_RX.search(text, 0, end or len(text))
    if not m:
        return None
    return Found(m.group(1), m.start(1), m.end(1), "header.priority")


INJURY_IN_PROSE_RX = re.compile(
    r"\binjury\s+(?:dated|on|of)\s+"
    + _DATE
    + r"|\bdate\s+of\s+injury\s+(?:of\s+|on\s+|is\s+|was\s+)?"
    + _DATE,
    re.IGNORECASE,
)


def find_injury_date_in_prose(text: str, start: int, end: int) -> Found[dt.date] | None:
    """The date of injury as the case summary states it ("a work injury dated 10/22/01")."""
    for m in INJURY_IN_PROSE_RX.finditer(text, start, end):
        group = 1 if m.group(1) else 2
        value = parse_date(m.group(group))
        if value is not None:
            return Found(value, m.start(group), m.end(group), "summary.injury_date")
    return None
