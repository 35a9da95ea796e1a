"""The "MAXIMUS FEDERAL SERVICES, INC. / Independent Medical Review" form.

Letterhead; a padded, labelled header ("IMR Case Number:", "Date of Injury:", "UR Denial Date:",
"Application Received:", "Date Assigned:", "Decision Date:", "Priority:") in its own order;
DOCUMENTS REVIEWED; EXPERT REVIEWER QUALIFICATIONS with the credentials lines ("State(s) of
Licensure:", "Certification(s)/Specialty:"); EXPERT REVIEWER CASE SUMMARY; and IMR DECISION(S)
AND RATIONALE(S), whose items are the 2016 form's ("<request>:" with the decision word on that
line or alone one or two lines below, the guideline lines and "Decision rationale:").

Invariant: header values are read only before the first section heading, credentials only in
the qualifications, age and sex only in the case summary, items only in the decisions section.
"""

from __future__ import annotations

import re

from ..ingest import Document
from ..rules import (
    LetterFound,
    find_case_number,
    find_credential_lines,
    find_credential_prose,
    find_dates,
    find_patient,
    find_priority,
)
from ..rules.items import find_decided_items
from . import HEADER_FORM_EXPECTED_FIELDS, Layout, register
from ._readers import numbered_fallback
from ._regions import find_regions

# Matched against the lower-cased head (see notice_2013: a literal start is searched fast).
_HEAD_RX = re.compile(r"maximus\s+federal\s+services,?\s+inc")
_IMR_RX = re.compile(r"independent\s+medical\s+review")
_NOTICE_TITLE_RX = re.compile(r"notice\s+of\s+independent\s+medical\s+review\s+determination")
_MARKS_RX = re.compile(r"DOCUMENTS\s+REVIEWED|IMR\s+DECISION\(S\)\s+AND\s+RATIONALE\(S\)")
_SUMMARY_RX = re.compile(r"(?:EXPERT\s+REVIEWER\s+)?CASE\s+SUMMARY")
_FIRST_SECTION_RX = re.compile(
    r"DOCUMENTS\s+REVIEWED|EXPERT\s+REVIEWER\s+QUALIFICATIONS|IMR\s+DECISION\(S\)"
)


def detect(text: str) -> float:
    head = text[:1500].lower()
    if not _HEAD_RX.search(head):
        return 0.0
    if _NOTICE_TITLE_RX.search(text[:3000].lower()):
        return 0.5  # the 2013 notice shares the letterhead; its title says which form it is
    score = 0.5 + (0.2 if _IMR_RX.search(head) else 0.0)
    return score + (0.3 if _MARKS_RX.search(text) else 0.0)


def read(doc: Document) -> LetterFound:
    text = doc.text
    r = find_regions(text)
    first = _FIRST_SECTION_RX.search(text)
    header_end = first.start() if first else r.header_end
    # The qualifications run to the case summary's heading (find_regions gives them the rest).
    summary = _SUMMARY_RX.search(text, r.credentials[0])
    cred = (r.credentials[0], summary.start() if summary else r.credentials[1])
    items, warnings = find_decided_items(text)
    found = LetterFound(
        case_number=find_case_number(text, header_end),
        dates=find_dates(text, header_end),
        priority=find_priority(text, header_end),
        reviewer=find_credential_lines(text, *cred),
        patient=find_patient(text, *r.summary),
        items=items,
        warnings=warnings,
    )
    if found.reviewer.empty():
        found.reviewer = find_credential_prose(text, *cred)
    numbered_fallback(found, text)  # its letterhead is the 2013 notice's too
    return found


LAYOUT = register(
    Layout(
        name="maximus_imr_decisions",
        description="MAXIMUS letterhead, DOCUMENTS REVIEWED, IMR DECISION(S) AND RATIONALE(S)",
        detect=detect,
        read=read,
        expected_fields=HEADER_FORM_EXPECTED_FIELDS,
    )
)
