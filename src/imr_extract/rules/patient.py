"""Patient age and sex, from the clinical case summary's own statement ("a 48 year old male")."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..forms import SEX_WORDS
from ..schema import Sex
from ..text import Found

AGE_SEX_RX = re.compile(
    r"\b(?P<age>\d{1,3})[\s-]+years?[\s-]+old\b"
    r"(?:[\s,]+(?P<sex>male|female|man|woman|gentleman|lady|boy|girl)\b)?",
    re.IGNORECASE,
)


@dataclass
class PatientFound:
    age: Found[int] | None = None
    sex: Found[Sex] | None = None


def find_patient(text: str, start: int, end: int) -> PatientFound:
    """The first "N year old <sex>" statement in ``[start, end)`` (the case summary)."""
    m = AGE_SEX_RX.search(text, start, end)
    if not m:
        return PatientFound()
    age = int(m.group("age"))
    found = PatientFound()
    if 0 < age <= 120:
        found.age = Found(age, m.start("age"), m.end("age"), "patient.age")
    if m.group("sex"):
        found.sex = Found(
            SEX_WORDS[m.group("sex").lower()], m.start("sex"), m.end("sex"), "patient.sex"
        )
    return found
