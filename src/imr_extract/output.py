"""Record writers: JSONL (one record per line), JSON (an array), CSV (one row per item).

Writers stream: each record is written as it arrives, so a batch never holds all its records.
Output files are opened together (``OutputFiles``): none is emptied before every one is open, and
any failure to write one is an ``OutputError`` naming that file and the cause.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import stat
import sys
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, TextIO

from .errors import ImrExtractError
from .names import escape_name
from .schema import Guideline, LetterRecord


class OutputFormat(StrEnum):
    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"


class ExportFormat(StrEnum):
    """``export``'s formats: the record formats, and two Parquet tables (see ``parquet``)."""

    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"
    PARQUET = "parquet"


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
        "letter": escape_name(record.letter),  # as the JSON writes it (see names)
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


# --------------------------------------------------------------------------- output files


class OutputError(ImrExtractError):
    """An output file cannot be opened or written: the file and the operating system's cause."""

    code = "output"


def _os_cause(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


class NamedStream(io.TextIOBase):
    """A text stream whose every failure is an ``OutputError`` naming its file."""

    def __init__(self, stream: TextIO, name: str, owned: bool = True) -> None:
        super().__init__()
        self.stream = stream
        self.name_shown = name
        self.owned = owned  # closed with this one (a file), or only flushed (standard output)

    def _failed(self, exc: OSError) -> OutputError:
        return OutputError(self.name_shown, f"cannot write ({_os_cause(exc)})")

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        try:
            return self.stream.write(text)
        except OSError as exc:
            raise self._failed(exc) from exc

    def flush(self) -> None:
        if self.stream.closed:  # closed already (``close`` flushes once more)
            return
        try:
            self.stream.flush()
        except OSError as exc:
            raise self._failed(exc) from exc

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self.owned:
                self.stream.close()
            else:
                self.stream.flush()
        except OSError as exc:
            raise self._failed(exc) from exc
        finally:
            super().close()


def make_parent(path: Path) -> None:
    """Make the directory ``path`` goes in, as ``-o`` always has.

    Raises:
        OutputError: it cannot be made (a file of that name, no permission, read-only).
    """
    if path.parent == Path(""):
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:  # a file where a directory should be
        cause = f"cannot create its directory ({os.strerror(errno.ENOTDIR)})"
        raise OutputError(escape_name(str(path)), cause) from exc
    except OSError as exc:
        cause = f"cannot create its directory ({_os_cause(exc)})"
        raise OutputError(escape_name(str(path)), cause) from exc


def stdout_stream() -> TextIO:
    """Standard output, its failures named ``<stdout>`` (flushed, never closed, by its user)."""
    return NamedStream(sys.stdout, "<stdout>", owned=False)  # type: ignore[return-value]


class OutputFiles:
    """Output files opened together, so that none is emptied unless all can be written.

    ``open`` creates each file (and its directory) *without truncating it*; only when every
    one is open (and whatever else must be checked first, the run store, has been) does
    ``commit`` empty them and hand out their streams. ``abandon`` closes them, removing the
    ones ``open`` created: a run that cannot start leaves every earlier output as it was.
    """

    def __init__(self) -> None:
        self._open: list[tuple[Path, int, bool]] = []  # path, descriptor, created here

    def open(self, path: Path) -> int:
        """Open ``path`` for writing, untouched; returns an index for ``commit``'s list.

        Raises:
            OutputError: the file or its directory cannot be made or written.
        """
        shown = escape_name(str(path))
        make_parent(path)
        try:
            existed = os.path.lexists(path)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        except OSError as exc:
            raise OutputError(shown, f"cannot open for writing ({_os_cause(exc)})") from exc
        self._open.append((path, fd, not existed))
        return len(self._open) - 1

    def commit(self) -> list[TextIO]:
        """Empty every file (a regular file; not a device or a pipe) and return its stream."""
        streams: list[TextIO] = []
        for path, fd, _ in self._open:
            shown = escape_name(str(path))
            try:
                if stat.S_ISREG(os.fstat(fd).st_mode):
                    os.ftruncate(fd, 0)
            except OSError as exc:
                raise OutputError(shown, f"cannot empty ({_os_cause(exc)})") from exc
            text = open(fd, "w", encoding="utf-8", newline="", closefd=True)  # noqa: SIM115
            streams.append(NamedStream(text, shown))  # type: ignore[arg-type]
        self._open = []
        return streams

    def abandon(self) -> None:
        for path, fd, created in self._open:
            os.close(fd)
            if created:
                with contextlib.suppress(OSError):
                    path.unlink()
        self._open = []
