"""``LetterFound`` (values with spans) -> ``LetterRecord`` (plain values + provenance map).

Provenance paths follow the gold README: ``items[0].imr_guideline.citations[1].sections[0]``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .errors import SeveralLettersError
from .ingest import Document
from .rules import LetterFound
from .rules.guidelines import GuidelineFound
from .schema import (
    Backend,
    Citation,
    Dates,
    ExtractorInfo,
    Guideline,
    Item,
    LetterRecord,
    Method,
    Patient,
    Reviewer,
    schema_hash,
)
from .text import Found
from .verify.census import letter_starts
from .verify.checks import verify_entries
from .verify.grounding import PROVENANCE_MAP, match_kind


class ProvenanceMap:
    """Collects provenance entries for one record."""

    def __init__(self, doc: Document, method: Method) -> None:
        self.doc = doc
        self.method = method
        self.entries: dict[str, dict[str, Any]] = {}
        self.values: dict[str, Any] = {}  # path -> value, so verification need not look it up

    def add(self, path: str, found: Found[Any]) -> Any:
        """Record where ``found`` came from under ``path``; return its plain value."""
        # Plain dicts, validated once with the whole record: pydantic-core does that in one pass,
        # several times faster than building thousands of small models one by one.
        spans = []
        if found.end > found.start:
            spans = [
                {"start": found.start, "end": found.end, "page": self.doc.page_of(found.start)}
            ]
        self.entries[path] = {
            "method": self.method,
            "rule": found.rule,
            "match": match_kind(self.doc.text, found.start, found.end, found.value),
            "spans": spans,
        }
        self.values[path] = found.value
        return found.value

    def maybe(self, path: str, found: Found[Any] | None) -> Any:
        return None if found is None else self.add(path, found)


def _guideline(
    prov: ProvenanceMap, path: str, g: GuidelineFound | None, warnings: list[str]
) -> Guideline:
    if g is None:
        warnings.append(f"{path}: guideline line not found")
        # The flags still need a provenance entry: with no span, they read as unverified.
        missing = "guideline.line_missing"
        return Guideline(
            cited=prov.add(f"{path}.cited", Found(False, 0, 0, missing)),
            outside_mtus=prov.add(f"{path}.outside_mtus", Found(False, 0, 0, missing)),
            citations=[],
        )
    citations = []
    for c, cit in enumerate(g.citations):
        cp = f"{path}.citations[{c}]"
        citations.append(
            Citation(
                kind=prov.add(f"{cp}.kind", cit.kind),
                source=prov.add(f"{cp}.source", cit.source),
                sections=[prov.add(f"{cp}.sections[{i}]", s) for i, s in enumerate(cit.sections)],
                pages=[prov.add(f"{cp}.pages[{i}]", p) for i, p in enumerate(cit.pages)],
            )
        )
    for left in g.leftovers:
        warnings.append(f"{path}: unrecognised text {left.value[:80]!r}")
    return Guideline(
        cited=prov.add(f"{path}.cited", g.cited),
        outside_mtus=prov.add(f"{path}.outside_mtus", g.outside_mtus),
        citations=citations,
    )


def build_record(
    doc: Document,
    layout: str,
    found: LetterFound,
    method: Method = Method.RULES,
    extractor: ExtractorInfo | None = None,
) -> LetterRecord:
    """The record for ``found``, with one provenance entry per extracted value."""
    record, prov = assemble(doc, layout, found, method, extractor)
    return record.model_copy(update={"provenance": PROVENANCE_MAP.validate_python(prov.entries)})


def assemble(
    doc: Document,
    layout: str,
    found: LetterFound,
    method: Method = Method.RULES,
    extractor: ExtractorInfo | None = None,
) -> tuple[LetterRecord, ProvenanceMap]:
    """The record for ``found`` without its provenance, and the provenance entries unvalidated.

    For ``verify``, which completes the entries and validates them once.
    """
    prov = ProvenanceMap(doc, method)
    if extractor is None:
        extractor = ExtractorInfo(backend=Backend.RULES, schema_hash=schema_hash())
    warnings = [*doc.reading_warnings(), *found.warnings]
    dates: dict[str, dt.date] = {
        name: prov.add(f"dates.{name}", f) for name, f in found.dates.items()
    }
    items = []
    for i, it in enumerate(found.items):
        p = f"items[{i}]"
        items.append(
            Item(
                request=prov.add(f"{p}.request", it.request),
                decision=prov.add(f"{p}.decision", it.decision),
                original_request=prov.maybe(f"{p}.original_request", it.original_request),
                authorized=prov.maybe(f"{p}.authorized", it.authorized),
                claims_administrator_guideline=_guideline(
                    prov,
                    f"{p}.claims_administrator_guideline",
                    it.claims_administrator_guideline,
                    warnings,
                ),
                imr_guideline=_guideline(prov, f"{p}.imr_guideline", it.imr_guideline, warnings),
                rationale=prov.maybe(f"{p}.rationale", it.rationale),
            )
        )
        if it.rationale is None and method is Method.RULES:
            warnings.append(f"{p}: no decision rationale found")
    r = found.reviewer
    return LetterRecord(
        letter=doc.name,
        case_number=prov.maybe("case_number", found.case_number),
        dates=Dates(**dates),
        priority=prov.maybe("priority", found.priority),
        reviewer=Reviewer(
            licensure=[prov.add(f"reviewer.licensure[{i}]", s) for i, s in enumerate(r.licensure)],
            specialty=prov.maybe("reviewer.specialty", r.specialty),
            subspecialty=prov.maybe("reviewer.subspecialty", r.subspecialty),
        ),
        patient=Patient(
            age=prov.maybe("patient.age", found.patient.age),
            sex=prov.maybe("patient.sex", found.patient.sex),
        ),
        items=items,
        layout=layout,
        source=doc.source_info(),
        extractor=extractor,
        warnings=warnings,
    ), prov


def verified_record(
    doc: Document,
    layout: str,
    found: LetterFound,
    method: Method = Method.RULES,
    extractor: ExtractorInfo | None = None,
) -> LetterRecord:
    """``build_record`` then ``verify``, validating the provenance once instead of twice."""
    record, prov = assemble(doc, layout, found, method, extractor)
    return verify_entries(record, prov.entries, prov.values, doc.text, doc.page_of)


def refuse_several_letters(doc: Document) -> None:
    """Raise ``SeveralLettersError`` when ``doc`` holds more than one letter (by the census's
    once-per-letter signals: headings, case numbers after their label)."""
    starts = letter_starts(doc.text)
    if len(starts) > 1:
        shown = ", ".join(str(s) for s in starts[:5])
        raise SeveralLettersError(
            doc.path or doc.name,
            f"the text holds {len(starts)} letters (starting at characters {shown}); "
            "split it into one file per letter",
        )
