"""The 2013 "Notice of Independent Medical Review Determination" with numbered decisions.

"Dated: 9/26/2013" and a labelled header ("IMR Case Number:", "Date of UR Decision:", "Date of
Injury:", "IMR Application Received:") where printed; INDEPENDENT MEDICAL REVIEW DECISION AND
RATIONALE, whose first sentence gives the application, UR denial and assignment dates, then the
numbered decision sentences (``rules.numbered``); "Medical Qualifications of the Expert Reviewer:"
with the credentials in prose; "(Expert Reviewer) Case Summary:", which opens with a disclaimer;
and per item "N. Regarding the request for <request>:", its two guideline lines ("Medical
Treatment Guideline(s) Relied Upon by ...") and "Rationale for the Decision:". The form prints no
priority.

Invariant: each value is read from the part of the notice that states it (a header value after
its label, the notice's or the final determination's; a date of the opening sentence only where
no label gives it; credentials from the qualifications; age and sex from the case summary), and
each item once (see ``rules.numbered``). A notice whose items are printed in another form's way
("X: Upheld") is read by the generic item rules, with a warning.
"""

from __future__ import annotations

import re

from ..forms import (
    NOTICE_DATE_LABELS,
    NOTICE_DECISIONS_HEADING_RX,
    NOTICE_ITEM_HEADING_RX,
    NOTICE_PROSE_DATE_PHRASES,
    NOTICE_QUALIFICATIONS_RX,
    NOTICE_SUMMARY_RX,
)
from ..ingest import Document
from ..rules import (
    LetterFound,
    find_case_number,
    find_credential_lines,
    find_credential_prose,
    find_dates,
    find_injury_date_in_prose,
    find_items,
    find_patient,
    find_priority,
)
from ..rules.header import date_label_patterns
from ..rules.numbered import DECISION_SENTENCE_RX, find_item_sections, find_numbered_items
from . import HEADER_FORM_EXPECTED_FIELDS, Layout, register

# Matched against the lower-cased head: a literal first word is found by a fast substring search,
# where a case-insensitive pattern is tried at every offset.
_TITLE_RX = re.compile(r"notice\s+of\s+independent\s+medical\s+review\s+determination")
_LABEL_RX = date_label_patterns(NOTICE_DATE_LABELS)
_PROSE_RX = date_label_patterns(NOTICE_PROSE_DATE_PHRASES)

#: What the notice prints: the case number and five dates (labelled or in the decisions
#: section's opening sentence), the credentials, the patient's age and sex; no priority.
EXPECTED_FIELDS: tuple[str, ...] = tuple(f for f in HEADER_FORM_EXPECTED_FIELDS if f != "priority")


def detect(text: str) -> float:
    return 0.9 if _TITLE_RX.search(text[:3000].lower()) else 0.0


def _first(text: str, *rxs: re.Pattern[str], start: int = 0) -> int | None:
    found = [m.start() for rx in rxs if (m := rx.search(text, start))]
    return min(found) if found else None


def read(doc: Document) -> LetterFound:
    text = doc.text
    n = len(text)
    # The first item section that has its guideline lines (an item heading alone in the case
    # summary does not end the summary).
    sections = find_item_sections(text)
    first_item = sections[0].start if sections else _first(text, NOTICE_ITEM_HEADING_RX)
    items_at = n if first_item is None else first_item
    quals = NOTICE_QUALIFICATIONS_RX.search(text, 0, items_at)
    summary = NOTICE_SUMMARY_RX.search(text, quals.end() if quals else 0, items_at)
    header_end = _first(text, NOTICE_DECISIONS_HEADING_RX, DECISION_SENTENCE_RX)
    if header_end is None or (quals is not None and quals.start() < header_end):
        header_end = quals.start() if quals else min(n, 1500)

    dates = find_dates(text, header_end, _LABEL_RX, "header.notice_date")
    # A header may print the final determination's labels instead ("UR Denial Date:", ...).
    for name, f in find_dates(text, header_end).items():
        dates.setdefault(name, f)
    # The opening sentence of the decisions section, for the dates no label gives.
    prose_end = quals.start() if quals else items_at
    for name, f in find_dates(text, prose_end, _PROSE_RX, "notice.prose_date").items():
        dates.setdefault(name, f)

    cred = (quals.end(), summary.start() if summary else items_at) if quals else (0, items_at)
    reviewer = find_credential_prose(text, *cred)
    if reviewer.empty():
        reviewer = find_credential_lines(text, *cred)
    # Without its heading, the summary is somewhere after the qualifications (or the title).
    summary_start = summary.end() if summary else quals.end() if quals else 0
    summary_region = (summary_start, items_at)

    # Decision sentences stand in the decisions section, before the qualifications and the
    # case summary; one printed later is not read as a decision.
    sentences_end = quals.start() if quals else summary.start() if summary else None
    items, warnings = find_numbered_items(text, sentences_end)
    if not items:
        items = find_items(text, any_case=True)
        if items:
            warnings.append("no numbered decisions; the generic item rules were used")
    found = LetterFound(
        case_number=find_case_number(text, header_end),
        dates=dates,
        priority=find_priority(text, header_end),  # not expected of the form; read if printed
        reviewer=reviewer,
        patient=find_patient(text, *summary_region),
        items=items,
        warnings=warnings,
    )
    if "injury" not in found.dates:
        injury = find_injury_date_in_prose(text, *summary_region)
        if injury is not None:
            found.dates["injury"] = injury
    return found


LAYOUT = register(
    Layout(
        name="notice_2013",
        description="2013 Notice of Independent Medical Review Determination, numbered decisions",
        detect=detect,
        read=read,
        expected_fields=EXPECTED_FIELDS,
    )
)
