"""Records as two typed Parquet tables, ``letters.parquet`` and ``items.parquet`` (``export
--format parquet -o DIR``), for analysts who load them into DuckDB, pandas, polars or Spark.

Invariants:

- One ``letters`` row per record given, then one per failed letter (``status = 'error'``, its
  ``error_code`` and ``cause``, no record fields); one ``items`` row per item of every record, in
  record order, joined to its letter by ``letter_id`` (the letter row's 0-based number in this
  export).
- Every column has the type ``LETTERS_SCHEMA`` / ``ITEMS_SCHEMA`` declares, whatever the records
  hold: dates are ``date32``, counts ``int32``/``int64``, flags ``bool``, coverage ``float64``,
  the few-valued columns (decision, layout, statuses, ...) dictionary-encoded strings (a
  category in pandas, a VARCHAR in DuckDB), lists are lists. An absent value is null, never ``""``.
- A ``<column>_status`` column holds the verification status of the field the column is read
  from (``verified``/``unverified``/``contradicted``); a column drawn from several provenance
  entries (a list, the citations) holds the worst of theirs; null where the field has no entry
  (no value, or a record that was not verified).
- Both files are written to temporary files in ``DIR`` and renamed into place only when both are
  complete: a failed export leaves earlier files as they were, and no half-written table.
- Rows are written in batches (``BATCH_LETTERS`` letters), so a large store is never held whole.

pyarrow is an optional dependency (the ``parquet`` extra): this module imports it only when a
table is written; ``unavailable()`` says, in one line, what to install when it is missing.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .names import escape_name
from .output import OutputError
from .schema import Guideline, Item, LetterRecord, Status

if TYPE_CHECKING:
    import pyarrow as pa

    from .store import FailedLetter, RunStore

LETTERS_FILE = "letters.parquet"
ITEMS_FILE = "items.parquet"
#: Letters per row group (and per batch held in memory while writing).
BATCH_LETTERS = 1000
#: What to run when pyarrow is missing.
INSTALL_HINT = "pip install 'imr-extract[parquet]'"

_WORST = {Status.CONTRADICTED: 2, Status.UNVERIFIED: 1, Status.VERIFIED: 0}


def unavailable() -> str | None:
    """None when Parquet can be written here; else one line naming what to install."""
    if importlib.util.find_spec("pyarrow") is None:
        return f"--format parquet needs pyarrow, which is not installed: {INSTALL_HINT}"
    return None


# --- the columns ---------------------------------------------------------------------------------

# (name, type, meaning): the type as a pyarrow constructor's name, so the columns can be listed
# (docs, tests) without pyarrow. ``category`` is a dictionary-encoded string.
_Col = tuple[str, str, str]

_LETTER_FIELDS: list[tuple[str, str, str, str]] = [
    # column, type, field path (its provenance), meaning
    ("case_number", "string", "case_number", "The IMR case number, e.g. CM16-0231706."),
    ("date_assigned", "date", "dates.assigned", "Date the case was assigned for review."),
    ("date_injury", "date", "dates.injury", "Date of the worker's injury."),
    ("date_decision", "date", "dates.decision", "Date of the IMR final determination."),
    ("date_ur_denial", "date", "dates.ur_denial", "Date of the utilization review denial."),
    (
        "date_application_received",
        "date",
        "dates.application_received",
        "Date the IMR application was received.",
    ),
    ("priority", "category", "priority", "Review priority as printed (e.g. Standard)."),
    (
        "reviewer_licensure",
        "list<string>",
        "reviewer.licensure",
        "States the reviewer is licensed in.",
    ),
    ("reviewer_specialty", "string", "reviewer.specialty", "The reviewer's specialty."),
    ("reviewer_subspecialty", "string", "reviewer.subspecialty", "The reviewer's subspecialty."),
    ("patient_age", "int16", "patient.age", "The patient's age in years."),
    ("patient_sex", "category", "patient.sex", "female or male."),
]

LETTER_COLUMNS: list[_Col] = [
    ("letter_id", "int32", "This row's number in the export (items.letter_id points here)."),
    ("letter", "string", "The letter's file name."),
    ("path", "string", "The file as it was given to extract."),
    ("status", "category", "ok (a record) or error (the letter gave none)."),
    ("error_code", "category", "Why the letter failed (error rows; see the error codes)."),
    ("cause", "string", "The failure's cause in words (error rows)."),
    ("sha256", "string", "SHA-256 of the letter file's bytes."),
    *((name, kind, meaning) for name, kind, _, meaning in _LETTER_FIELDS),
    ("layout", "category", "The letter form it was read as, or unknown."),
    ("item_count", "int32", "Items (decided services) in the record."),
    ("items_upheld", "int32", "Items whose denial was upheld."),
    ("items_overturned", "int32", "Items whose denial was overturned."),
    ("fields_verified", "int32", "Field values the letter supports (verification.verified)."),
    ("fields_unverified", "int32", "Field values nothing but the extractor vouches for."),
    ("fields_contradicted", "int32", "Field values a cross-check says the letter contradicts."),
    ("checks_failed", "int32", "Cross-checks that failed."),
    ("coverage", "float64", "Share of the fields expected of the layout present and verified."),
    ("expected_fields", "int32", "Fields expected of this layout."),
    ("novel_layout", "bool", "A form the rules do not know (coverage below the threshold)."),
    ("complete", "bool", "Every decision the letter states is an item, and no item is extra."),
    ("unaccounted_decisions", "int32", "Decisions the letter states that no item holds."),
    ("warnings", "int32", "Warnings on the record."),
    ("backend", "category", "rules, llm, hybrid or external."),
    ("model", "string", "The model, for llm and hybrid records."),
    ("routed", "category", "Hybrid: what went to the model (none, sections, letter)."),
    ("model_error", "string", "Hybrid: why the model's answer was not used."),
    ("requests", "int32", "Model requests made for this letter."),
    ("prompt_tokens", "int64", "Prompt tokens spent on this letter."),
    ("completion_tokens", "int64", "Completion tokens spent on this letter."),
    ("cost_usd", "float64", "Cost from the configured price table."),
    ("pages", "int32", "Pages of the letter."),
    ("chars", "int64", "Characters of its text."),
    *(
        (f"{name}_status", "category", f"Verification status of {path}.")
        for name, _, path, _ in _LETTER_FIELDS
    ),
]

_GUIDELINE_COLUMNS: list[tuple[str, str, str]] = [
    ("cited", "bool", "False when the line says no medical evidence was cited."),
    ("outside_mtus", "bool", "True when the decision rests on guidance outside the MTUS."),
    ("sources", "list<string>", "Each citation's guideline name, in order."),
    ("mtus_sources", "list<string>", "The MTUS citations' names."),
    ("non_mtus_sources", "list<string>", "The non-MTUS citations' names."),
    ("sections", "list<string>", "Every cited section, in order."),
    ("pages", "list<int32>", "Every cited page, ranges expanded."),
    ("citations", "list<citation>", "The citations whole (kind, source, sections, pages)."),
]
_GUIDELINES = {
    "ca": ("claims_administrator_guideline", "Claims administrator's guideline line"),
    "imr": ("imr_guideline", "IMR reviewer's (MAXIMUS) guideline line"),
}
_ITEM_FIELDS: list[tuple[str, str, str, str]] = [
    ("request", "string", "request", "The item as the decision line names it."),
    ("decision", "category", "decision", "upheld or overturned."),
    (
        "original_request",
        "string",
        "original_request",
        "The request before a partial authorisation.",
    ),
    ("authorized", "string", "authorized", "The part the claims administrator authorised."),
    ("rationale", "string", "rationale", "The decision rationale text."),
]

ITEM_COLUMNS: list[_Col] = [
    ("letter_id", "int32", "The item's letter: letters.letter_id."),
    ("letter", "string", "The letter's file name."),
    ("case_number", "string", "The letter's case number."),
    ("date_decision", "date", "The letter's decision date."),
    ("item_index", "int32", "0-based position of the item in the letter."),
    *((name, kind, meaning) for name, kind, _, meaning in _ITEM_FIELDS),
    *(
        (f"{prefix}_{name}", kind, f"{where}: {meaning[0].lower()}{meaning[1:]}")
        for prefix, (_, where) in _GUIDELINES.items()
        for name, kind, meaning in _GUIDELINE_COLUMNS
    ),
    *(
        (f"{name}_status", "category", f"Verification status of items[].{path}.")
        for name, _, path, _ in _ITEM_FIELDS
    ),
    *(
        (f"{prefix}_{name}_status", "category", f"Verification status of items[].{field}.{what}.")
        for prefix, (field, _) in _GUIDELINES.items()
        for name, what in (
            ("cited", "cited"),
            ("outside_mtus", "outside_mtus"),
            ("citations", "citations (the worst of them)"),
        )
    ),
]


def _arrow_type(kind: str) -> pa.DataType:
    import pyarrow as pa

    citation = pa.struct(
        [
            ("kind", pa.string()),
            ("source", pa.string()),
            ("sections", pa.list_(pa.string())),
            ("pages", pa.list_(pa.int32())),
        ]
    )
    types: dict[str, pa.DataType] = {
        "string": pa.string(),
        "category": pa.dictionary(pa.int32(), pa.string()),
        "date": pa.date32(),
        "bool": pa.bool_(),
        "int16": pa.int16(),
        "int32": pa.int32(),
        "int64": pa.int64(),
        "float64": pa.float64(),
        "list<string>": pa.list_(pa.string()),
        "list<int32>": pa.list_(pa.int32()),
        "list<citation>": pa.list_(citation),
    }
    return types[kind]


def arrow_schema(columns: list[_Col]) -> pa.Schema:
    """The pyarrow schema of a table (each field's meaning kept as its ``description``)."""
    import pyarrow as pa

    return pa.schema(
        [
            pa.field(name, _arrow_type(kind), metadata={"description": meaning})
            for name, kind, meaning in columns
        ]
    )


# --- rows ----------------------------------------------------------------------------------------


def _statuses(record: LetterRecord) -> dict[str, Status]:
    """The worst status of each provenance path and of every path it is part of
    (``items[0].imr_guideline.citations[1].sections[0]`` also counts for
    ``items[0].imr_guideline.citations``, ``items[0].imr_guideline`` and ``items[0]``)."""
    worst: dict[str, Status] = {}
    for path, prov in record.provenance.items():
        cut = len(path)
        while cut > 0:
            key = path[:cut]
            held = worst.get(key)
            if held is None or _WORST[prov.status] > _WORST[held]:
                worst[key] = prov.status
            cut = max(key.rfind("."), key.rfind("["))
    return worst


def _status(statuses: Mapping[str, Status], path: str) -> str | None:
    found = statuses.get(path)
    return found.value if found is not None else None


def _guideline(prefix: str, g: Guideline) -> dict[str, Any]:
    return {
        f"{prefix}_cited": g.cited,
        f"{prefix}_outside_mtus": g.outside_mtus,
        f"{prefix}_sources": [c.source for c in g.citations],
        f"{prefix}_mtus_sources": [c.source for c in g.citations if c.kind == "MTUS"],
        f"{prefix}_non_mtus_sources": [c.source for c in g.citations if c.kind != "MTUS"],
        f"{prefix}_sections": [s for c in g.citations for s in c.sections],
        f"{prefix}_pages": [p for c in g.citations for p in c.pages],
        f"{prefix}_citations": [
            {"kind": c.kind.value, "source": c.source, "sections": c.sections, "pages": c.pages}
            for c in g.citations
        ],
    }


def _item_row(
    letter_id: int, record: LetterRecord, index: int, item: Item, statuses: Mapping[str, Status]
) -> dict[str, Any]:
    at = f"items[{index}]"
    row: dict[str, Any] = {
        "letter_id": letter_id,
        "letter": escape_name(record.letter),
        "case_number": record.case_number,
        "date_decision": record.dates.decision,
        "item_index": index,
        "request": item.request,
        "decision": item.decision.value,
        "original_request": item.original_request,
        "authorized": item.authorized,
        "rationale": item.rationale,
    }
    for prefix, (field, _) in _GUIDELINES.items():
        row.update(_guideline(prefix, getattr(item, field)))
        for name in ("cited", "outside_mtus", "citations"):
            row[f"{prefix}_{name}_status"] = _status(statuses, f"{at}.{field}.{name}")
    for name, _, path, _ in _ITEM_FIELDS:
        row[f"{name}_status"] = _status(statuses, f"{at}.{path}")
    return row


def _letter_row(
    letter_id: int, record: LetterRecord, statuses: Mapping[str, Status]
) -> dict[str, Any]:
    v, x, d = record.verification, record.extractor, record.dates
    decisions = [item.decision.value for item in record.items]
    row: dict[str, Any] = {
        "letter_id": letter_id,
        "letter": escape_name(record.letter),
        "path": escape_name(record.source.path) if record.source.path is not None else None,
        "status": "ok",
        "error_code": None,
        "cause": None,
        "sha256": record.source.sha256,
        "case_number": record.case_number,
        "date_assigned": d.assigned,
        "date_injury": d.injury,
        "date_decision": d.decision,
        "date_ur_denial": d.ur_denial,
        "date_application_received": d.application_received,
        "priority": record.priority,
        "reviewer_licensure": list(record.reviewer.licensure),
        "reviewer_specialty": record.reviewer.specialty,
        "reviewer_subspecialty": record.reviewer.subspecialty,
        "patient_age": record.patient.age,
        "patient_sex": record.patient.sex.value if record.patient.sex is not None else None,
        "layout": record.layout,
        "item_count": len(record.items),
        "items_upheld": decisions.count("upheld"),
        "items_overturned": decisions.count("overturned"),
        "fields_verified": v.verified if v is not None else None,
        "fields_unverified": v.unverified if v is not None else None,
        "fields_contradicted": v.contradicted if v is not None else None,
        "checks_failed": sum(c.result == "failed" for c in v.checks) if v is not None else None,
        "coverage": v.coverage if v is not None else None,
        "expected_fields": v.expected_fields if v is not None else None,
        "novel_layout": v.novel_layout if v is not None else None,
        "complete": v.complete if v is not None else None,
        "unaccounted_decisions": v.unaccounted_decisions if v is not None else None,
        "warnings": len(record.warnings),
        "backend": x.backend.value,
        "model": x.model,
        "routed": x.routed,
        "model_error": x.model_error,
        "requests": x.usage.requests,
        "prompt_tokens": x.usage.prompt_tokens,
        "completion_tokens": x.usage.completion_tokens,
        "cost_usd": x.cost_usd,
        "pages": record.source.pages,
        "chars": record.source.chars,
    }
    for name, _, path, _ in _LETTER_FIELDS:
        row[f"{name}_status"] = _status(statuses, path)
    return row


def _failure_row(letter_id: int, failure: FailedLetter) -> dict[str, Any]:
    return {
        "letter_id": letter_id,
        "letter": failure.letter,
        "path": failure.path,
        "status": "error",
        "error_code": failure.error_code,
        "cause": failure.cause,
        "sha256": failure.sha256,
        "backend": failure.backend,
    }


@dataclass(frozen=True)
class Written:
    """What ``write_tables`` wrote."""

    letters: int  # rows of letters.parquet (records and failures)
    failures: int
    items: int
    letters_path: Path
    items_path: Path


def _batches(
    records: Iterable[LetterRecord], failures: Iterable[FailedLetter]
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    letters: list[dict[str, Any]] = []
    items: list[dict[str, Any]] = []
    letter_id = 0
    for record in records:
        statuses = _statuses(record)
        letters.append(_letter_row(letter_id, record, statuses))
        items += (
            _item_row(letter_id, record, i, it, statuses) for i, it in enumerate(record.items)
        )
        letter_id += 1
        if len(letters) >= BATCH_LETTERS:
            yield letters, items
            letters, items = [], []
    for failure in failures:
        letters.append(_failure_row(letter_id, failure))
        letter_id += 1
        if len(letters) >= BATCH_LETTERS:
            yield letters, items
            letters, items = [], []
    if letters or items:
        yield letters, items


def _prepare(directory: Path) -> None:
    shown = escape_name(str(directory))
    if directory.exists() and not directory.is_dir():
        raise OutputError(shown, "not a directory (--format parquet writes two files into one)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(shown, f"cannot create it ({exc.strerror or exc})") from exc


def _new_temp(target: Path) -> str:
    """A new empty file beside ``target``, with the mode a plain new file gets (umask)."""
    while True:
        name = str(target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp"))
        try:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        os.close(fd)
        return name


def write_tables(
    records: Iterable[LetterRecord],
    directory: str | os.PathLike[str],
    failures: Iterable[FailedLetter] = (),
) -> Written:
    """Write ``letters.parquet`` and ``items.parquet`` of ``records`` (then ``failures``) into
    ``directory`` (made if missing), replacing earlier ones only once both are written.

    Raises:
        OutputError: the directory or a file cannot be made or written (named, with the cause).
        ModuleNotFoundError: pyarrow is not installed (see ``unavailable``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    where = Path(directory)
    _prepare(where)
    targets = (where / LETTERS_FILE, where / ITEMS_FILE)
    schemas = (arrow_schema(LETTER_COLUMNS), arrow_schema(ITEM_COLUMNS))
    temps: list[Path] = []
    counts = [0, 0]
    failed = 0
    writing = targets[0]  # the file named if writing fails
    try:
        with contextlib.ExitStack() as closing:
            writers = []
            for target, schema in zip(targets, schemas, strict=True):
                writing = target
                name = _new_temp(target)
                temps.append(Path(name))
                writer = pq.ParquetWriter(name, schema, compression="zstd")
                closing.callback(writer.close)
                writers.append(writer)
            for batch in _batches(records, failures):
                for n, rows in enumerate(batch):
                    writing = targets[n]
                    if rows:
                        table = pa.RecordBatch.from_pylist(rows, schema=schemas[n])
                        writers[n].write_batch(table)
                        counts[n] += len(rows)
                failed += sum(row["status"] == "error" for row in batch[0])
            writing = targets[0]
        for temp, target in zip(temps, targets, strict=True):
            writing = target
            os.replace(temp, target)
        temps = []
    except OSError as exc:  # pyarrow's IO errors are OSErrors too
        cause = exc.strerror or str(exc) or type(exc).__name__
        raise OutputError(escape_name(str(writing)), f"cannot write ({cause})") from exc
    finally:
        for temp in temps:
            with contextlib.suppress(OSError):
                temp.unlink()
    return Written(counts[0], failed, counts[1], *targets)


def export_store(
    store: RunStore, directory: str | os.PathLike[str], run_id: str | None = None
) -> Written:
    """``write_tables`` of a run store's records and failures (only ``run_id``'s, if given)."""
    return write_tables(store.records(run_id), directory, store.failures(run_id))
