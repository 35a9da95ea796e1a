"""The rules pipeline: file -> ``Document`` -> layout -> rules -> ``LetterRecord``.

``extract_many`` is the batch entry point: it never raises for a bad file. Each input yields one
``Outcome`` holding either a record or the ``ImrExtractError`` that names the file and the cause.

Invariant: no record leaves here with more decided items than its ``Limits.max_items``: a letter
past it is ``TooManyItemsError`` (``too-many-items``), refused before its items are verified (the
expensive part), so a 10,000-item letter costs the time to find its items, no more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from . import layouts
from .assemble import refuse_several_letters, verified_record
from .errors import ImrExtractError, NoDecisionsError, TooManyItemsError
from .ingest import Document, iter_paths, read_bytes, read_path
from .limits import DEFAULT_LIMITS, Limits
from .schema import LetterRecord, Method


@dataclass(frozen=True)
class Outcome:
    """What became of one input."""

    source: str
    record: LetterRecord | None = None
    error: ImrExtractError | None = None

    @property
    def ok(self) -> bool:
        return self.record is not None


def check_items(source: str, count: int, limits: Limits = DEFAULT_LIMITS) -> None:
    """Raise ``TooManyItemsError`` when ``count`` decided items are past ``limits.max_items``
    (0: no limit). Every extractor's record is held to it (the batch runner checks the records
    of the others; ``extract_document`` checks before it verifies)."""
    if limits.max_items and count > limits.max_items:
        raise TooManyItemsError(
            source,
            f"{count} decided items, more than the limit of {limits.max_items} "
            "(--max-items; a real letter has 1-30)",
        )


def extract_document(doc: Document, limits: Limits = DEFAULT_LIMITS) -> LetterRecord:
    """Read ``doc`` with the rules of its detected layout.

    Raises:
        NoDecisionsError: the text holds no decided item the rules can find.
        SeveralLettersError: the text holds more than one letter.
        TooManyItemsError: more decided items than ``limits.max_items``.
    """
    refuse_several_letters(doc)
    layout, _score = layouts.detect(doc.text)
    found = layout.read(doc)
    if not layout.dedicated_reader:
        found.warnings.append(
            f"layout {layout.name!r} has no dedicated reader; generic rules were used"
        )
    if not found.items:
        raise NoDecisionsError(
            doc.path or doc.name, f"no decisions found (read as layout {layout.name!r})"
        )
    check_items(doc.path or doc.name, len(found.items), limits)
    return verified_record(doc, layout.name, found, Method.RULES)


def extract_text(text: str, name: str = "<text>") -> LetterRecord:
    """Extract from a letter's text (as it would be read from a UTF-8 file)."""
    return extract_document(read_bytes(text.encode("utf-8"), name))


def extract_path(path: str | os.PathLike[str], pdf_engine: str | None = None) -> LetterRecord:
    """Extract one letter file (PDF or text)."""
    return extract_document(read_path(path, pdf_engine=pdf_engine))


#: Anything that turns a read letter into a record: ``extract_document`` or an ``LLMExtractor``.
Extractor = Callable[[Document], LetterRecord]


def extract_one(
    path: str, pdf_engine: str | None = None, extractor: Extractor = extract_document
) -> Outcome:
    """Read and extract one file; an ``ImrExtractError`` becomes the outcome, never raised."""
    try:
        return Outcome(path, record=extractor(read_path(path, pdf_engine=pdf_engine)))
    except ImrExtractError as exc:
        return Outcome(path, error=exc)


def extract_many(
    inputs: Iterable[str | os.PathLike[str]],
    pdf_engine: str | None = None,
    extractor: Extractor = extract_document,
) -> Iterator[Outcome]:
    """One ``Outcome`` per letter under ``inputs`` (files, directories, ``-``), in order."""
    for path in iter_paths(inputs):
        yield extract_one(path, pdf_engine, extractor)
