"""``LetterFound``: everything the rules found in one letter, before it becomes a record."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from ..text import Found
from .items import ItemFound
from .patient import PatientFound
from .reviewer import ReviewerFound


@dataclass
class LetterFound:
    case_number: Found[str] | None = None
    dates: dict[str, Found[dt.date]] = field(default_factory=dict)
    priority: Found[str] | None = None
    reviewer: ReviewerFound = field(default_factory=ReviewerFound)
    patient: PatientFound = field(default_factory=PatientFound)
    items: list[ItemFound] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
