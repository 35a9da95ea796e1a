"""The 2016-17 final determination letter.

Header block ("Case Number:", "Date Assigned:", ..., "Priority: Standard Application Received:"),
"HOW THE IMR FINAL DETERMINATION WAS MADE", credentials lines ("State(s) of Licensure:",
"Certification(s)/Specialty:"), "CLINICAL CASE SUMMARY", "IMR ISSUES, DECISIONS AND RATIONALES".
"""

from __future__ import annotations

import re

from . import HEADER_FORM_EXPECTED_FIELDS, Layout, register
from ._readers import read_header_form

_CASE_RX = re.compile(r"Case\s+Number:\s*CM\d{2}-\d+")
_HOW_RX = re.compile(r"HOW\s+THE\s+IMR\s+FINAL\s+DETERMINATION\s+WAS\s+MADE")
_CRED_RX = re.compile(r"State\(s\)\s+of\s+Licensure:|Certification\(s\)/Specialty:")


def detect(text: str) -> float:
    score = 0.0
    if _CASE_RX.search(text, 0, 400):
        score += 0.4
    if _HOW_RX.search(text):
        score += 0.3
    if _CRED_RX.search(text):
        score += 0.3
    return score


LAYOUT = register(
    Layout(
        name="final_determination_2016",
        description="2016-17 final determination: header block, credentials lines",
        detect=detect,
        read=read_header_form,
        expected_fields=HEADER_FORM_EXPECTED_FIELDS,
    )
)
