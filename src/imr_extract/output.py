"""Record writers: JSONL (one record per line), JSON (an array), CSV (one row per item).

Writers stream: each record is written as it arrives, so a batch never holds all its records.
A view (``View``) chooses how much of each record a JSON writer writes: the whole record, the
data alone, or the data with a compact provenance (each field's spans and status); the CSV
writes each value's status beside it (a ``<column>_status`` column), never its spans.
The format of an output file follows its name's extension unless one is given (``format_for``).
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
from .schema import DATA_FIELDS, Guideline, LetterRecord, Status


class OutputFormat(StrEnum):
    JSONL = "jsonl"
    JSON = "json"
    CSV = "csv"


#: The format an output file's name asks for (``-o out.csv``), when no ``--format`` is given.
SUFFIX_FORMATS: dict[str, OutputFormat] = {
    ".jsonl": OutputFormat.JSONL,
    ".ndjson": OutputFormat.JSONL,
    ".json": OutputFormat.JSON,
    ".csv": OutputFormat.CSV,
}


def format_for(out: Path | None, fmt: OutputFormat | None) -> OutputFormat:
    """The format to write: ``fmt`` when given, else the one ``out``'s extension names, else
    JSON Lines (standard output, or a name with another extension)."""
    if fmt is not None:
        return fmt
    if out is not None and str(out) != "-":
        return SUFFIX_FORMATS.get(out.suffix.lower(), OutputFormat.JSONL)
    return OutputFormat.JSONL


class View(StrEnum):
    """How much of each record is written (JSON and JSON Lines; CSV: see ``CsvWriter``)."""

    #: The whole record: data, provenance, verification (checks), alternatives, source, extractor.
    FULL = "full"
    #: The data alone: the letter's fields and items, no provenance, checks or metadata.
    DATA = "data"
    #: The whole record with each field's provenance cut to its spans and status, and the
    #: verification's checks to those that did not pass.
    COMPACT = "compact"


#: The record's keys the data view keeps (``schema.DATA_FIELDS`` and the layout read).
DATA_KEYS: tuple[str, ...] = (*DATA_FIELDS[:1], "layout", *DATA_FIELDS[1:])


def view_dict(data: dict[str, Any], view: View) -> dict[str, Any]:
    """The record ``data`` (as ``record_dict`` gives it, or parsed from its JSON) in ``view``."""
    if view is View.DATA:
        return {key: data[key] for key in DATA_KEYS if key in data}
    if view is View.COMPACT:
        out = dict(data)
        out["provenance"] = {
            path: {
                "status": p.get("status"),
                "spans": [[s["start"], s["end"], s["page"]] for s in p.get("spans", [])],
            }
            for path, p in data.get("provenance", {}).items()
        }
        if data.get("verification") is not None:
            v = dict(data["verification"])
            v["checks"] = [c for c in v.get("checks", []) if c.get("result") != "passed"]
            out["verification"] = v
        return out
    return data


def record_dict(record: LetterRecord, view: View = View.FULL) -> dict[str, Any]:
    """The record as plain JSON-ready data (dates as ISO strings, enums as their values)."""
    return view_dict(record.model_dump(mode="json"), view)


def view_json(text: str, view: View) -> str:
    """A record's JSON text (as ``extract`` writes it) in ``view``, on one line."""
    if view is View.FULL:
        return text
    return json.dumps(view_dict(json.loads(text), view), ensure_ascii=False, separators=(",", ":"))


class RecordWriter(Protocol):
    def write(self, record: LetterRecord) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    def __init__(self, stream: TextIO, view: View = View.FULL) -> None:
        self.stream = stream
        self.view = view

    def write(self, record: LetterRecord) -> None:
        self.write_json(record.model_dump_json())

    def write_json(self, text: str) -> None:
        """A record already written as JSON (the store's text, a worker's): not parsed again
        unless the view asks for less than the whole record."""
        self.stream.write(view_json(text, self.view) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonWriter:
    """A JSON array, written incrementally."""

    def __init__(self, stream: TextIO, view: View = View.FULL) -> None:
        self.stream = stream
        self.view = view
        self.count = 0

    def write(self, record: LetterRecord) -> None:
        self.stream.write("[\n" if self.count == 0 else ",\n")
        self.stream.write(json.dumps(record_dict(record, self.view), indent=2))
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
_GUIDELINES = {"ca": "claims_administrator_guideline", "imr": "imr_guideline"}

#: The field (provenance path) each ``<column>_status`` column reports: a letter's field, or an
#: item's (``{i}``: the item's index). A field with parts (``reviewer.licensure[0]``, each
#: citation's source, sections, pages) reports its worst part: contradicted, then unverified.
LETTER_STATUS: dict[str, str] = {
    "case_number": "case_number",
    "date_assigned": "dates.assigned",
    "date_injury": "dates.injury",
    "date_decision": "dates.decision",
    "date_ur_denial": "dates.ur_denial",
    "date_application_received": "dates.application_received",
    "priority": "priority",
    "reviewer_licensure": "reviewer.licensure",
    "reviewer_specialty": "reviewer.specialty",
    "reviewer_subspecialty": "reviewer.subspecialty",
    "patient_age": "patient.age",
    "patient_sex": "patient.sex",
}
ITEM_STATUS: dict[str, str] = {
    "request": "items[{i}].request",
    "decision": "items[{i}].decision",
    "original_request": "items[{i}].original_request",
    "authorized": "items[{i}].authorized",
    "rationale": "items[{i}].rationale",
    **{
        f"{prefix}_{key}": f"items[{{i}}].{line}.{key}"
        for prefix, line in _GUIDELINES.items()
        for key in ("cited", "outside_mtus", "citations")
    },
}
_WORST = (Status.CONTRADICTED.value, Status.UNVERIFIED.value, Status.VERIFIED.value)


def field_status(statuses: dict[str, str], path: str) -> str | None:
    """The status of the field at ``path``: its own, or its parts' worst (None: no value)."""
    found = {
        status
        for key, status in statuses.items()
        if key == path or key.startswith((f"{path}.", f"{path}["))
    }
    return next((s for s in _WORST if s in found), None)


def item_rows(record: LetterRecord, statuses: bool = True) -> Iterable[dict[str, Any]]:
    """One flat row per item (a letter without items still gets one row); with ``statuses``,
    each value's status in its ``<column>_status`` column and the letter's coverage."""
    d = record.dates
    letter: dict[str, Any] = {
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
    known = {path: p.status.value for path, p in record.provenance.items()}
    if statuses:
        v = record.verification
        letter["coverage"] = round(v.coverage, 4) if v is not None else None
        for column, path in LETTER_STATUS.items():
            letter[f"{column}_status"] = field_status(known, path)
    if not record.items:
        yield {**letter, **_item_columns(None, None, known if statuses else None)}
        return
    for i, item in enumerate(record.items):
        yield {**letter, **_item_columns(i, item, known if statuses else None)}


def _item_columns(index: int | None, item: Any, known: dict[str, str] | None) -> dict[str, Any]:
    if item is None:
        row = {
            "item_index": None,
            "request": None,
            "decision": None,
            "original_request": None,
            "authorized": None,
            "rationale": None,
            **_guideline_columns("ca", None),
            **_guideline_columns("imr", None),
        }
    else:
        row = {
            "item_index": index,
            "request": item.request,
            "decision": item.decision.value,
            "original_request": item.original_request,
            "authorized": item.authorized,
            "rationale": item.rationale,
            **_guideline_columns("ca", item.claims_administrator_guideline),
            **_guideline_columns("imr", item.imr_guideline),
        }
    if known is not None:
        for column, path in ITEM_STATUS.items():
            status = None if index is None else field_status(known, path.format(i=index))
            row[f"{column}_status"] = status
    return row


LETTER_COLUMNS = [
    "letter", "case_number", "layout",
    "date_assigned", "date_injury", "date_decision", "date_ur_denial", "date_application_received",
    "priority", "reviewer_licensure", "reviewer_specialty", "reviewer_subspecialty",
    "patient_age", "patient_sex", "item_count",
]  # fmt: skip
ITEM_COLUMNS = ["item_index", "request", "decision", "original_request", "authorized", "rationale"]
#: The columns of the data view's CSV: the values alone.
DATA_COLUMNS: list[str] = (
    LETTER_COLUMNS
    + ITEM_COLUMNS
    + [f"{prefix}_{key}" for prefix in _GUIDELINES for key in _GUIDELINE_KEYS]
)
#: Every column of the CSV: the values, the letter's coverage and each value's status.
CSV_COLUMNS: list[str] = (
    DATA_COLUMNS + ["coverage"] + [f"{column}_status" for column in (*LETTER_STATUS, *ITEM_STATUS)]
)


class CsvWriter:
    """A row per item. The full and compact views write every column, each value's status
    and the letter's coverage among them; the data view the values alone (``DATA_COLUMNS``)."""

    def __init__(self, stream: TextIO, view: View = View.FULL) -> None:
        self.statuses = view is not View.DATA
        columns = CSV_COLUMNS if self.statuses else DATA_COLUMNS
        # extrasaction="raise": a row key missing from the columns is a bug, not a silent drop.
        self.writer = csv.DictWriter(stream, fieldnames=columns, extrasaction="raise")
        self.writer.writeheader()
        self.stream = stream

    def write(self, record: LetterRecord) -> None:
        for row in item_rows(record, self.statuses):
            self.writer.writerow(row)

    def close(self) -> None:
        self.stream.flush()


WRITERS: dict[OutputFormat, type[JsonlWriter | JsonWriter | CsvWriter]] = {
    OutputFormat.JSONL: JsonlWriter,
    OutputFormat.JSON: JsonWriter,
    OutputFormat.CSV: CsvWriter,
}


def make_writer(fmt: OutputFormat, stream: TextIO, view: View = View.FULL) -> RecordWriter:
    return WRITERS[fmt](stream, view)


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
