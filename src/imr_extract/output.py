"""Record writers: JSONL (one record per line), JSON (an array), CSV (one row per item).

Writers stream: each record is written as it arrives, so a batch never holds all its records.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from enum import StrEnum
from typing import Any, Protocol, TextIO

from .schema import Guideline, LetterRecord


class OutputFormat(StrEnum):
    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"


def record_dict(record: LetterRecord) -> dict[str, Any]:
    """The record as plain JSON-ready data (dates as ISO strings, enums as their values)."""
    return record.model_dump(mode="json")


class RecordWriter(Protocol):
    def write(self, record: LetterRecord) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, record: LetterRecord) -> None:
        self.stream.write(record.model_dump_json() + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """A JSON array, written incrementally."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.count = 0

    def write(self, record: LetterRecord) -> None:
        self.stream.write("[\n" if self.count == 0 else ",\n")
        self.stream.write(json.dumps(record_dict(record), indent=2))
        self.count += 1

    def close(self) -> None:
        self.stream.write("[]\n" if self.count == 0 else "\n]\n")
        self.stream.flush()


def _guideline_columns(prefix: str, g: Guideline | None) -> dict[str, Any]:
    if g is None:
        return dict.fromkeys((f"{prefix}_{k}" for k in _GUIDELINE_KEYS), None)
    mtus = [c for c in g.citations if c.kind == "MTUS"]
    non = [c for c in g.citations if c.kind != "MTUS"]
    return {
        f"{prefix}_cited": g.cited,
        f"{prefix}_outside_mtus": g.outside_mtus,
        f"{prefix}_mtus_sources": "; ".join(c.source for c in mtus),
        f"{prefix}_non_mtus_sources": "; ".join(c.source for c in non),
        f"{prefix}_sections": "; ".join(s for c in g.citations for s in c.sections),
        f"{prefix}_pages": "; ".join(str(p) for c in g.citations for p in c.pages),
        f"{prefix}_citations_json": json.dumps(
            [c.model_dump(mode="json") for c in g.citations], separators=(",", ":")
        ),
    }


_GUIDELINE_KEYS = (
    "cited",
    "outside_mtus",
    "mtus_sources",
    "non_mtus_sources",
    "sections",
    "pages",
    "citations_json",
)


def item_rows(record: LetterRecord) -> Iterable[dict[str, Any]]:
    """One flat row per item (a letter without items still gets one row)."""
    d = record.dates
    letter = {
        "letter": record.letter,
        "case_number": record.case_number,
        "layout": record.layout,
        "date_assigned": d.assigned,
        "date_injury": d.injury,
        "date_decision": d.decision,
        "date_ur_denial": d.ur_denial,
        "date_application_received": d.application_received,
        "priority": record.priority,
        "reviewer_licensure": "; ".join(record.reviewer.licensure),
        "reviewer_specialty": record.reviewer.specialty,
        "reviewer_subspecialty": record.reviewer.subspecialty,
        "patient_age": record.patient.age,
        "patient_sex": record.patient.sex.value if record.patient.sex else None,
        "item_count": len(record.items),
    }
    if not record.items:
        yield {**letter, **_item_columns(None, None)}
        return
    for i, item in enumerate(record.items):
        yield {**letter, **_item_columns(i, item)}


def _item_columns(index: int | None, item: Any) -> dict[str, Any]:
    if item is None:
        return {
            "item_index": None,
            "request": None,
            "decision": None,
            "original_request": None,
            "authorized": None,
            **_guideline_columns("ca", None),
            **_guideline_columns("imr", None),
        }
    return {
        "item_index": index,
        "request": item.request,
        "decision": item.decision.value,
        "original_request": item.original_request,
        "authorized": item.authorized,
        **_guideline_columns("ca", item.claims_administrator_guideline),
        **_guideline_columns("imr", item.imr_guideline),
    }


LETTER_COLUMNS = [
    "letter", "case_number", "layout",
    "date_assigned", "date_injury", "date_decision", "date_ur_denial", "date_application_received",
    "priority", "reviewer_licensure", "reviewer_specialty", "reviewer_subspecialty",
    "patient_age", "patient_sex", "item_count",
]  # fmt: skip
ITEM_COLUMNS = ["item_index", "request", "decision", "original_request", "authorized"]
CSV_COLUMNS: list[str] = (
    LETTER_COLUMNS
    + ITEM_COLUMNS
    + [f"{prefix}_{key}" for prefix in ("ca", "imr") for key in _GUIDELINE_KEYS]
)


class CsvWriter:
    def __init__(self, stream: TextIO) -> None:
        # extrasaction="raise": a row key missing from CSV_COLUMNS is a bug, not a silent drop.
        self.writer = csv.DictWriter(stream, fieldnames=CSV_COLUMNS, extrasaction="raise")
        self.writer.writeheader()
        self.stream = stream

    def write(self, record: LetterRecord) -> None:
        for row in item_rows(record):
            self.writer.writerow(row)

    def close(self) -> None:
        self.stream.flush()


WRITERS: dict[OutputFormat, type[JsonlWriter | JsonWriter | CsvWriter]] = {
    OutputFormat.JSONL: JsonlWriter,
    OutputFormat.JSON: JsonWriter,
    OutputFormat.CSV: CsvWriter,
}


def make_writer(fmt: OutputFormat, stream: TextIO) -> RecordWriter:
    return WRITERS[fmt](stream)
