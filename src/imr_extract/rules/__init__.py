"""Deterministic, regex-based extraction: small rule functions that each return ``Found`` values.

Rule functions are pure (text in, ``Found`` values out) so each can be tested on a string; layout
readers in ``imr_extract.layouts`` decide which rules run on which region of a letter.
"""

from .header import (
    find_case_number,
    find_dates,
    find_injury_date_in_prose,
    find_priority,
    parse_date,
)
from .items import ItemFound, find_items
from .letter import LetterFound
from .patient import PatientFound, find_patient
from .reviewer import ReviewerFound, find_credential_lines, find_credential_prose

__all__ = [
    "ItemFound",
    "LetterFound",
    "PatientFound",
    "ReviewerFound",
    "find_case_number",
    "find_credential_lines",
    "find_credential_prose",
    "find_dates",
    "find_injury_date_in_prose",
    "find_items",
    "find_patient",
    "find_priority",
    "parse_date",
]
