"""Readers shared by layouts: compositions of rule functions over a letter's regions."""

from __future__ import annotations

from ..ingest import Document
from ..rules import (
    LetterFound,
    find_case_number,
    find_credential_lines,
    find_credential_prose,
    find_dates,
    find_injury_date_in_prose,
    find_patient,
    find_priority,
)
from ..rules.items import find_decided_items
from ..rules.numbered import find_numbered_items
from ._regions import find_regions


def _injury_from_summary(found: LetterFound, text: str, summary: tuple[int, int]) -> None:
    """Without a header block, the date of injury is only stated in the case summary."""
    if "injury" not in found.dates:
        injury = find_injury_date_in_prose(text, *summary)
        if injury is not None:
            found.dates["injury"] = injury


def read_header_form(doc: Document) -> LetterFound:
    """2016-17 letters: a labelled header block and labelled credentials lines."""
    text = doc.text
    r = find_regions(text)
    items, warnings = find_decided_items(text)
    found = LetterFound(
        case_number=find_case_number(text, r.header_end),
        dates=find_dates(text, r.header_end),
        priority=find_priority(text, r.header_end),
        reviewer=find_credential_lines(text, *r.credentials),
        patient=find_patient(text, *r.summary),
        items=items,
        warnings=warnings,
    )
    if found.reviewer.empty():
        found.reviewer = find_credential_prose(text, *r.credentials)
    return found


def read_prose_form(doc: Document) -> LetterFound:
    """Older letters: no header block; credentials stated in a sentence."""
    text = doc.text
    r = find_regions(text)
    items, warnings = find_decided_items(text)
    found = LetterFound(
        reviewer=find_credential_prose(text, *r.credentials),
        patient=find_patient(text, *r.summary),
        items=items,
        warnings=warnings,
    )
    if found.reviewer.empty():
        found.reviewer = find_credential_lines(text, *r.credentials)
    _injury_from_summary(found, text, r.summary)
    return found


def read_generic(doc: Document) -> LetterFound:
    """Any other form: every rule, over the widest region where it can apply, case-insensitive."""
    text = doc.text
    r = find_regions(text)
    head = max(r.header_end, min(len(text), 1500))
    items, warnings = find_decided_items(text, any_case=True)
    found = LetterFound(
        case_number=find_case_number(text, head),
        dates=find_dates(text, head),
        priority=find_priority(text, head),
        reviewer=find_credential_lines(text, 0, len(text)),
        patient=find_patient(text, *r.summary),
        items=items,
        warnings=warnings,
    )
    if found.reviewer.empty():
        found.reviewer = find_credential_prose(text, 0, len(text))
    numbered_fallback(found, text)
    _injury_from_summary(found, text, r.summary)
    return found


def numbered_fallback(found: LetterFound, text: str) -> None:
    """Where a form's item rules found nothing, decisions stated as numbered sentences (the 2013
    notice's way, under another title or none) are read, with a warning."""
    if found.items:
        return
    found.items, warnings = find_numbered_items(text)
    found.warnings.extend(warnings)
    if found.items:
        found.warnings.append("items read as the 2013 notice numbers them")
