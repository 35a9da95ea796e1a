"""The "MEDICAL PROFESSIONAL REVIEW" form.

A labelled header ("IMR Case No.:", "Review Priority:", "Date of Injury:", "Utilization Review
Date:", "IMR Application Date:", "Assignment Date:", "Date of Review:"); ISSUE AT DISPUTE, which
lists the items ("Item 1: X", a partial authorisation spelt out in full); CASE SUMMARY; MEDICAL
REVIEWER QUALIFICATIONS ("Board Certification(s): X", "Licensure: Y"); and DETERMINATION AND
RATIONALE, an item to a block: "Item 1: X" / "Determination: Upheld" / "Guidelines relied upon by
the Claims Administrator: ..." / "Guidelines relied upon by the Medical Reviewer: ..." /
"Rationale: ...". The item rules know those labels (``rules.items``), so verification ties each
value to its item as on the 2016 form.

Invariant: items are read only after the DETERMINATION AND RATIONALE heading, never from the
list at dispute or the case summary before it.
"""

from __future__ import annotations

import re

from ..ingest import Document
from ..rules import (
    LetterFound,
    find_case_number,
    find_dates,
    find_patient,
    find_priority,
)
from ..rules.header import date_label_patterns
from ..rules.items import ItemFound, find_decided_items, is_double_spaced, parse_request
from ..rules.reviewer import ReviewerFound, split_states
from ..text import found_text
from . import HEADER_FORM_EXPECTED_FIELDS, Layout, register

_TITLE_RX = re.compile(r"MEDICAL\s+PROFESSIONAL\s+REVIEW")
_SECTIONS = [
    re.compile(r"ISSUES?\s+AT\s+DISPUTE"),
    re.compile(r"CASE\s+SUMMARY"),
    re.compile(r"MEDICAL\s+REVIEWER\s+QUALIFICATIONS"),
]
_DISPUTE_RX, _SUMMARY_RX, _QUALIFICATIONS_RX = _SECTIONS
_DETERMINATIONS_RX = re.compile(r"DETERMINATIONS?\s+AND\s+RATIONALES?")

#: Record field -> the label this form prints before it.
DATE_LABELS = {
    "injury": "Date of Injury:",
    "ur_denial": "Utilization Review Date:",
    "application_received": "IMR Application Date:",
    "assigned": "Assignment Date:",
    "decision": "Date of Review:",
}
_DATE_RX = date_label_patterns(DATE_LABELS)
# One value per line, the label at the line's start.
_SPECIALTY_RX = re.compile(r"^[ \t]*Board\s+Certifications?(?:\(s\))?:[ \t]*(.*\S)", re.MULTILINE)
_LICENSURE_RX = re.compile(r"^[ \t]*Licensure:[ \t]*(.*\S)", re.MULTILINE)
_LISTED_ITEM_RX = re.compile(r"^[ \t]*Item\s+(\d{1,3})\s*:[ \t]*", re.MULTILINE)
_BLANK_LINE_RX = re.compile(r"\n[ \t]*\n")
# In double-spaced text every line is followed by a blank one: a paragraph ends at two or more.
_DOUBLE_SPACED_GAP_RX = re.compile(r"\n(?:[ \t]*\n){2,}")
#: A credentials value wraps over at most this many more lines.
_WRAP_LINES = 3


def detect(text: str) -> float:
    if not _TITLE_RX.search(text[:3000]):
        return 0.0
    return 0.4 + 0.2 * sum(1 for rx in _SECTIONS if rx.search(text))


def _value_end(text: str, m: re.Match[str], other: re.Match[str] | None) -> int:
    """Where a credentials value ends: its line, or, when the other credentials label follows
    within a few lines, that label's line (a value wrapped over lines: "Board Certification(s):
    Preventive" / "Medicine, Occupational Medicine" / "Licensure: California")."""
    if other is not None and other.start() > m.end():
        between = text[m.end() : other.start()]
        if between.count("\n") <= _WRAP_LINES and not _BLANK_LINE_RX.search(between):
            return other.start()
    return m.end(1)


def _credentials(text: str, start: int, end: int) -> ReviewerFound:
    found = ReviewerFound()
    spec = _SPECIALTY_RX.search(text, start, end)
    lic = _LICENSURE_RX.search(text, start, end)
    if spec:
        stop = _value_end(text, spec, lic)
        found.specialty = found_text(text, spec.start(1), stop, "reviewer.board_certification")
    if lic:
        stop = _value_end(text, lic, spec)
        found.licensure = split_states(text, lic.start(1), stop, "reviewer.licensure_label")
    return found


def _partial_authorisations(items: list[ItemFound], text: str, start: int, end: int) -> None:
    """The original request and the authorised part, from the items listed at dispute.

    The determination names only what remains at dispute; the list under ISSUE AT DISPUTE spells
    the partial authorisation out ("X was the original request. The Claims Administrator
    authorized Y, leaving ... The original request, Z"). It is taken for the item of the same
    number when its remaining request is the one decided.
    """
    listed = list(_LISTED_ITEM_RX.finditer(text, start, end))
    gap = _DOUBLE_SPACED_GAP_RX if is_double_spaced(text) else _BLANK_LINE_RX
    for k, m in enumerate(listed):
        stop = listed[k + 1].start() if k + 1 < len(listed) else end
        blank = gap.search(text, m.end(), stop)
        _request, original, authorized = parse_request(
            text, m.end(), blank.start() if blank else stop
        )
        index = int(m.group(1)) - 1
        if original is None or authorized is None or not 0 <= index < len(items):
            continue
        item = items[index]
        if item.original_request is None and _request and _request.value == item.request.value:
            item.original_request, item.authorized = original, authorized


def read(doc: Document) -> LetterFound:
    text = doc.text
    n = len(text)
    dispute = _DISPUTE_RX.search(text)
    header_end = dispute.start() if dispute else min(n, 1500)
    summary = _SUMMARY_RX.search(text)
    quals = _QUALIFICATIONS_RX.search(text)
    # The determinations follow the qualifications: a copy of their heading printed earlier
    # (in the case summary) does not open them.
    determinations = _DETERMINATIONS_RX.search(text, quals.end() if quals else 0)
    if determinations is None:
        determinations = _DETERMINATIONS_RX.search(text)
    decisions_start = determinations.start() if determinations else n
    # Items only under DETERMINATION AND RATIONALE: the list at dispute decides nothing, and
    # the case summary between them is no place for an item.
    items, warnings = find_decided_items(
        text, start=determinations.end() if determinations else None
    )
    summary_region = (0, decisions_start)  # the whole letter before the decisions, unheaded
    if summary is not None:
        after = quals.start() if quals and quals.start() > summary.end() else n
        summary_region = (summary.end(), after)
    found = LetterFound(
        case_number=find_case_number(text, header_end),
        dates=find_dates(text, header_end, _DATE_RX, "header.mpr_date"),
        priority=find_priority(text, header_end),
        reviewer=_credentials(text, quals.end() if quals else 0, decisions_start),
        patient=find_patient(text, *summary_region),
        items=items,
        warnings=warnings,
    )
    if dispute is not None:
        list_end = summary.start() if summary and summary.start() > dispute.end() else n
        _partial_authorisations(found.items, text, dispute.end(), min(list_end, decisions_start))
    return found


LAYOUT = register(
    Layout(
        name="medical_professional_review",
        description="MEDICAL PROFESSIONAL REVIEW: ISSUE AT DISPUTE / CASE SUMMARY / QUALIFICATIONS",
        detect=detect,
        read=read,
        expected_fields=HEADER_FORM_EXPECTED_FIELDS,
    )
)
