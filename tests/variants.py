"""Text variants of the bundled letters: the same letter as other tools and exports print it.

Invariant: every variant is *derived* from a bundled letter (tests/data/letters and the re-laid
letters of the other forms in tests/data/relaid, never edited) by a PDF-to-text tool or by a
mechanical transformation of the default text; nothing is hand-typed. A variant is a function
``letter name -> text`` (pages separated by form feeds) with the letters it applies to (a PDF
tool: the PDFs). The text is read into a ``Document`` exactly as a user's text file would be
(``ingest.read_text_bytes``), and ``judge`` holds the rules' record to gold.

Other PDF-to-text tools (the PDFs only):

- ``pypdf``, ``pypdf_layout``: pypdf's plain and ``extraction_mode="layout"`` text.
- ``pdfminer``: pdfminer.six with its default layout analysis (text boxes in its reading order:
  the header table comes out column by column, labels first, then their values).
- ``pdfminer_raw``: pdfminer.six without layout analysis, characters in content-stream order, a
  line break where the baseline moves (as ``pdftotext -raw`` prints).
- ``pdfminer_layout``: pdfminer.six's characters laid out by position, gaps as runs of spaces
  (as ``pdftotext -layout`` prints: the table's columns kept apart, a row's values that sit a
  hair higher than their labels on a line of their own above them).
- ``pdfminer_layout_below``: the same with such a row's values set below their labels
  (``values_below``): the shape where a date under one label was read for another.

Transformations of the default text (pypdfium2 for PDFs, the file for text letters):

- ``crlf``: Windows line ends. ``padded``: trailing spaces on every line (1 to 7, varying).
  ``indented``: four spaces before every line. ``tabs``: runs of spaces and the space after a
  colon as tabs. ``nbsp``: no-break spaces after colons and between some words. ``ligatures``:
  fi/fl/ff/ffi/ffl as ligature characters. ``nul_chars``: a NUL every 500 characters. ``utf16``, ``cp1252``: the text with CRLF written as
  UTF-16 (with BOM) or Windows-1252 (the letters with non-ASCII characters it can encode).
- ``double_spaced``: every line followed by a blank line (as the two older text letters are
  exported), so a decision word alone on the next line stands two lines below its request;
  for a letter that is already double-spaced, ``single_spaced`` drops the blank lines instead.
- ``running_headers``: at every page break a footer ``Page i of N``, and on the next page a
  running header with the case number and ``Page i+1 of N`` (a text letter without page breaks
  is given one every ``SYNTHETIC_PAGE_LINES`` lines); ``running_headers_pasted``: the same with
  the form feeds gone (text copied out of a PDF viewer keeps headers and footers, not breaks);
  ``letterhead``: a running header without the case number on every page (the first too) and
  a footer line with ``Page i of N`` at the bottom of every page.
- ``hyphenated``: the last long word of every other full line broken with a hyphen across the
  line break (``treat-`` / ``ment ...``); ``soft_hyphens``: the same with U+00AD. Values are
  compared with such breaks folded (gold holds the unbroken word).
- ``date_wrapped``: a line break before every date that follows a colon (a request ``... DOS:``
  / ``11/14/16: Upheld``; header labels with their dates on the next line).
- ``rewrapped``, ``rewrapped_narrow``: soft-wrapped paragraphs reflowed to 62 and 41 columns, so
  requests, labels and decision words wrap at other places (``...for 6:`` / ``Upheld``);
  ``unwrapped``: each paragraph on one line (text copied from a word processor or a web page).
- ``export``: ``date_wrapped``, double-spaced, a padding space on every line, CRLF (a word
  processor's export). ``everything``: running headers, date wraps, a reflow to 70 columns,
  no-break spaces, ligatures, double spacing, padding and CRLF at once, written as UTF-16.

Cost: every tool output is cached per test session (``functools.cache``; pypdf parses a letter
once for both modes, pdfminer once for ``raw`` and both ``layout`` variants). Measured with
bench/text_variants_report.py (CPU seconds for the 64 PDFs): pypdf 3.6, pypdf layout 6.7,
pdfminer 6-8, pdfminer raw + layout 5-6, every other variant under 0.5; each tool well under
the ~60 s budget, so none is limited to a subset of the letters.
"""

from __future__ import annotations

import functools
import io
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imr_extract.fields import (
    ITEM_FIELDS,
    LETTER_FIELDS,
    FieldKind,
    FieldSpec,
    align_items,
    data_fields,
    is_null,
    item_path,
    resolve,
    support,
)
from imr_extract.ingest import PAGE_BREAK, Document, normalise, read_text_bytes

DATA = Path(__file__).parent / "data"
LETTERS = DATA / "letters"
GOLD = DATA / "gold"
RELAID = DATA / "relaid"

#: A text letter has no page breaks of its own; running headers are put in every this many lines.
SYNTHETIC_PAGE_LINES = 40


def letter_path(name: str) -> Path:
    if name.startswith("relaid/"):
        return DATA / name
    matches = sorted(LETTERS.glob(f"*/{name}"))
    if not matches:
        raise FileNotFoundError(f"no letter {name} under {LETTERS}")
    return matches[0]


def letter_names() -> list[str]:
    """Every bundled letter that has a gold file: by file name, a re-laid letter (one of the other
    forms, tests/data/relaid) by its path under tests/data."""
    return list(_gold_by_letter())


def is_pdf(name: str) -> bool:
    return name.lower().endswith(".pdf")


# --------------------------------------------------------------------------- PDF tools


@functools.cache  # both pypdf modes read one parse
def _pypdf_reader(name: str):  # type: ignore[no-untyped-def]
    import pypdf

    reader = pypdf.PdfReader(str(letter_path(name)))
    if reader.is_encrypted:
        reader.decrypt("")
    return reader


@functools.cache
def pdfium_pages(name: str) -> tuple[str, ...]:
    from imr_extract.ingest import _pdf_pages_pdfium
    from imr_extract.limits import DEFAULT_LIMITS

    return tuple(_pdf_pages_pdfium(letter_path(name).read_bytes(), name, DEFAULT_LIMITS).pages)


@functools.cache
def pypdf_pages(name: str) -> tuple[str, ...]:
    return tuple(page.extract_text() or "" for page in _pypdf_reader(name).pages)


@functools.cache
def pypdf_layout_pages(name: str) -> tuple[str, ...]:
    return tuple(
        page.extract_text(extraction_mode="layout") or "" for page in _pypdf_reader(name).pages
    )


@functools.cache
def pdfminer_pages(name: str) -> tuple[str, ...]:
    import logging

    from pdfminer.high_level import extract_text

    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = extract_text(str(letter_path(name)), password="")
    pages = text.split(PAGE_BREAK)
    if pages and not pages[-1].strip():
        pages.pop()  # pdfminer ends every page with a form feed
    return tuple(pages)


@functools.cache
def _pdfminer_chars(name: str) -> tuple[tuple[tuple[str, float, float, float, float], ...], ...]:
    """Per page, every character as (text, x0, x1, y0, size), in content-stream order."""
    import logging

    from pdfminer.converter import PDFPageAggregator
    from pdfminer.layout import LTChar
    from pdfminer.pdfinterp import PDFPageInterpreter, PDFResourceManager
    from pdfminer.pdfpage import PDFPage

    logging.getLogger("pdfminer").setLevel(logging.ERROR)
    manager = PDFResourceManager()
    device = PDFPageAggregator(manager, laparams=None)
    interpreter = PDFPageInterpreter(manager, device)
    pages = []
    with io.BytesIO(letter_path(name).read_bytes()) as fh:
        for page in PDFPage.get_pages(fh, password=""):
            interpreter.process_page(page)
            layout = device.get_result()
            pages.append(
                tuple(
                    (o.get_text(), o.x0, o.x1, o.y0, o.size)
                    for o in layout
                    if isinstance(o, LTChar)
                )
            )
    return tuple(pages)


@functools.cache
def pdfminer_raw_pages(name: str) -> tuple[str, ...]:
    """Characters in stream order; a new line where the baseline moves, a space at a gap."""
    out = []
    for chars in _pdfminer_chars(name):
        lines: list[str] = []
        line: list[str] = []
        prev: tuple[str, float, float, float, float] | None = None
        for ch in chars:
            text, x0, _x1, y0, size = ch
            if prev is not None:
                if abs(y0 - prev[3]) > prev[4] * 0.4 or x0 < prev[1] - prev[4]:
                    lines.append("".join(line))
                    line = []
                elif x0 - prev[2] > size * 0.2 and text != " " and prev[0] != " ":
                    line.append(" ")
            line.append(text)
            prev = ch
        lines.append("".join(line))
        out.append("\n".join(lines) + "\n")
    return tuple(out)


@functools.cache
def pdfminer_layout_pages(name: str) -> tuple[str, ...]:
    """Characters laid out by position: one text line per baseline (top to bottom), characters
    left to right, a gap between them printed as a run of spaces as wide as the gap (so the
    columns of the header table stay apart, as ``pdftotext -layout`` prints them)."""
    out = []
    for chars in _pdfminer_chars(name):
        rows: dict[int, list[tuple[float, float, str, float]]] = {}
        for text, x0, x1, y0, size in chars:
            if text.strip():  # a printed space is a gap like any other
                rows.setdefault(round(y0 / 3), []).append((x0, x1, text, size))
        lines = []
        for key in sorted(rows, reverse=True):
            row = sorted(rows[key])
            x0, _x1, _text, size = row[0]
            line = " " * max(0, round((x0 - 72) / (size * 0.5)))
            prev_x1 = None
            for x0, x1, text, size in row:
                if prev_x1 is not None and x0 - prev_x1 > size * 0.15:
                    line += " " * max(1, round((x0 - prev_x1) / (size * 0.45)))
                line += text
                prev_x1 = x1
            lines.append(line.rstrip())
        out.append("\n".join(lines) + "\n")
    return tuple(out)


_VALUES_ONLY_RX = re.compile(r"[ \t]*(?:(?:\d{1,2}/\d{1,2}/\d{4}|CM\d{2}-\d{7}|Standard)[ \t]*)+")


def values_below(page: str) -> str:
    """A row whose values stand on a line of their own above its labels, set below them instead
    (a layout tool that orders a table's lines by the glyphs' tops rather than their baselines,
    so that values set a hair lower than their labels follow them): the shape where a date under
    one label was read for another."""
    lines = page.split("\n")
    i = 0
    while i < len(lines) - 1:
        if _VALUES_ONLY_RX.fullmatch(lines[i]) and lines[i].strip() and ":" in lines[i + 1]:
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
            i += 1
        i += 1
    return "\n".join(lines)


@functools.cache
def pdfminer_layout_below_pages(name: str) -> tuple[str, ...]:
    pages = pdfminer_layout_pages(name)
    return (values_below(pages[0]), *pages[1:])


# --------------------------------------------------------------------------- default text


@functools.cache
def default_pages(name: str) -> tuple[str, ...]:
    """The letter's pages as the default reader gets them (pdfium; a text file as written)."""
    if is_pdf(name):
        return tuple(normalise(page) for page in pdfium_pages(name))
    raw = letter_path(name).read_bytes().decode("utf-8")
    return tuple(normalise(page) for page in raw.split(PAGE_BREAK))


def _pages_text(pages: tuple[str, ...] | list[str]) -> str:
    return PAGE_BREAK.join(pages)


def _lines_map(text: str, fn: Callable[[str], str]) -> str:
    return "\n".join(fn(line) for line in text.split("\n"))


def is_double_spaced(text: str) -> bool:
    lines = text.split("\n")
    blank = sum(1 for line in lines if not line.strip(" \t\f"))
    return len(lines) > 20 and blank / len(lines) > 0.35


def double_space(text: str) -> str:
    return text.replace("\n", "\n\n")


def single_space(text: str) -> str:
    """Drop the blank lines of a double-spaced export (keeping a paragraph gap as one blank)."""
    out = re.sub(r"\n[ \t]*\n", "\n", text)
    return out


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def padded(text: str) -> str:
    counter = iter(range(10**7))
    return _lines_map(text, lambda line: line + " " * (1 + next(counter) % 7))


def _case_number(name: str) -> str:
    m = re.search(r"CM\d{2}-\d{7}", default_text(name))
    return m.group(0) if m else Path(name).stem


def with_running_headers(name: str, pages: list[str]) -> str:
    """Every page break gets a footer (``Page i of N``) and a running header on the next page."""
    if len(pages) == 1:
        lines = pages[0].split("\n")
        pages = [
            "\n".join(lines[i : i + SYNTHETIC_PAGE_LINES])
            for i in range(0, len(lines), SYNTHETIC_PAGE_LINES)
        ]
    n = len(pages)
    case = _case_number(name)
    out = []
    for i, page in enumerate(pages, 1):
        body = page if page.endswith("\n") else page + "\n"
        if i > 1:
            body = f"IMR Case Number: {case}   Final Determination Letter\nPage {i} of {n}\n" + body
        body += f"\nPage {i} of {n}\n"
        out.append(body)
    return _pages_text(out)


def with_letterhead(pages: list[str]) -> str:
    """A running header without the case number on every page, the first included, and a
    footer line and ``Page i of N`` at the bottom of every page (a printer's letterhead)."""
    if len(pages) == 1:
        lines = pages[0].split("\n")
        pages = [
            "\n".join(lines[i : i + SYNTHETIC_PAGE_LINES])
            for i in range(0, len(lines), SYNTHETIC_PAGE_LINES)
        ]
    n = len(pages)
    out = []
    for i, page in enumerate(pages, 1):
        body = page if page.endswith("\n") else page + "\n"
        head = "MAXIMUS Federal Services    Independent Medical Review    Final Determination\n"
        foot = f"Confidential: protected health information\nPage {i} of {n}\n"
        out.append(head + body + foot)
    return _pages_text(out)


_HYPHENATE_RX = re.compile(r"(?<![\w-])([A-Za-z]{4,})([a-z]{4,})([ \t]*)$")
_DECISION_WORDS = ("Upheld", "Overturned")


def hyphenated(text: str) -> str:
    """Break the last long word of every other full line of prose across the line break.

    As a typesetter would: only a line that runs to the right margin (at least 85% of the
    longest line) is broken, its last word's tail moved to the start of the next line, which
    must be a line of the same paragraph (not blank, not a page break). The decision words are
    left whole (a one-word label of the form is never hyphenated).
    """
    lines = text.split("\n")
    lengths = sorted(len(line.rstrip()) for line in lines if line.strip())
    width = lengths[int(len(lengths) * 0.9)] if lengths else 0  # the right margin, roughly
    step = 2 if is_double_spaced(text) else 1  # the paragraph's next line
    eligible = 0
    for i in range(len(lines) - step):
        line, nxt = lines[i], lines[i + step]
        m = _HYPHENATE_RX.search(line)
        if (
            not m
            or len(line.rstrip()) < 0.85 * width
            or not nxt.strip()
            or any(PAGE_BREAK in x for x in lines[i + 1 : i + step + 1])
            or m.group(1) + m.group(2) in _DECISION_WORDS
        ):
            continue
        eligible += 1
        if eligible % 2:
            continue
        lines[i] = line[: m.start()] + m.group(1) + "-"
        lines[i + step] = m.group(2) + " " + nxt.lstrip(" ")
    return "\n".join(lines)


_DATE_AFTER_COLON_RX = re.compile(r":[ \t]+(?=\d{1,2}[/-]\d{1,2}[/-]\d{2,4}\b)")


def date_wrapped(text: str) -> str:
    """A line break before every date that follows a colon (``DOS:`` / ``11/14/16: Upheld``,
    ``Date Assigned:`` / ``12/07/2016``): the wrap another width or tool may put there."""
    return _DATE_AFTER_COLON_RX.sub(":\n", text)


_PARAGRAPH_ENDS = (".", ":", *_DECISION_WORDS)
_LABEL_START_RX = re.compile(r"[ \t]*[A-Z][A-Za-z()/'& -]{0,40}:[ \t]")
_HEADING_RX = re.compile(r"[ \t]*[A-Z][A-Z ,&()/-]{6,}[ \t]*")


def rewrapped(text: str, width: int = 62) -> str:
    """The letter's paragraphs reflowed to a narrower line (another page width or font).

    A paragraph is a run of lines that each reach the right margin (soft wraps) and the line
    that ends it; short lines (labels, headings, decision lines) and lines that end a sentence
    or a decision end a paragraph, and a line that starts with a label or is a heading
    starts one and so keep their own line breaks (the letters' paragraphs are not known
    from the text: this keeps every paragraph end, and a few sentence ends besides).
    """
    lines = text.split("\n")
    lengths = sorted(len(line.rstrip()) for line in lines if line.strip())
    margin = lengths[int(len(lengths) * 0.9)] if lengths else 0
    out: list[str] = []
    para: list[str] = []

    def flush() -> None:
        words = " ".join(para).split(" ")
        line = ""
        for word in (w for w in words if w):
            if line and len(line) + 1 + len(word) > width:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word
        if para:
            out.append(line)
        para.clear()

    for line in lines:
        if PAGE_BREAK in line or not line.strip():
            flush()
            out.append(line)
            continue
        if _LABEL_START_RX.match(line) or _HEADING_RX.fullmatch(line):
            flush()  # a labelled line or a heading starts its own paragraph
        para.append(line.strip())
        if len(line.rstrip()) < 0.8 * margin or line.rstrip().endswith(_PARAGRAPH_ENDS):
            flush()
    flush()
    return "\n".join(out)


def nbsp(text: str) -> str:
    """No-break spaces where a word processor puts them: after every colon, and one space in
    five besides."""
    text = re.sub(r":[ ]", ":\u00a0", text)
    counter = iter(range(10**8))
    return re.sub(r"(?<=\w) (?=\w)", lambda m: "\u00a0" if next(counter) % 5 == 0 else " ", text)


def tabs(text: str) -> str:
    """Runs of two or more spaces printed as tabs, and a tab after every colon (a tool that
    lays out columns with tab stops)."""
    return re.sub(r":[ ]+", ":\t", re.sub(r"[ ]{2,}", "\t", text))


_LIGATURES = {"ffi": "\ufb03", "ffl": "\ufb04", "ff": "\ufb00", "fi": "\ufb01", "fl": "\ufb02"}
_LIGATURE_RX = re.compile("|".join(_LIGATURES))


def ligatures(text: str) -> str:
    """ "fi", "fl", "ff", "ffi", "ffl" as the ligature characters some PDF tools print."""
    return _LIGATURE_RX.sub(lambda m: _LIGATURES[m.group()], text)


def soft_hyphens(text: str) -> str:
    """``hyphenated`` with the soft hyphen character (U+00AD) where the line breaks a word."""
    return re.sub(r"(?<=[A-Za-z])-\n(?=[a-z])", "\u00ad\n", hyphenated(text))


def _every(text: str, step: int, char: str) -> str:
    """``char`` inserted after every ``step`` characters (a converter's stray NULs)."""
    return char.join(text[i : i + step] for i in range(0, len(text), step))


def _cp1252_letter(name: str) -> bool:
    """A letter with characters outside ASCII that Windows-1252 can encode (else the file would
    be plain ASCII, read as UTF-8, and test nothing)."""
    text = default_text(name)
    try:
        text.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return not text.isascii()


def _cp1252_text(name: str) -> str:
    return crlf(default_text(name))


def _everything(name: str) -> str:
    """Every transformation at once, as a long chain of exports might leave a letter."""
    text = with_running_headers(name, list(default_pages(name)))
    text = rewrapped(date_wrapped(text), width=70)
    text = ligatures(nbsp(text))
    if not is_double_spaced(text):
        text = double_space(text)
    return crlf(padded(text))


@functools.cache
def default_text(name: str) -> str:
    return _pages_text(default_pages(name))


# --------------------------------------------------------------------------- the variants


def _always(name: str) -> bool:
    return True


def _single_spaced_letter(name: str) -> bool:
    return not is_double_spaced(default_text(name))


def _double_spaced_letter(name: str) -> bool:
    return is_double_spaced(default_text(name))


@dataclass(frozen=True)
class Variant:
    name: str
    derive: Callable[[str], str]
    #: Which letters the variant applies to (a PDF tool: the PDFs).
    applies: Callable[[str], bool] = _always
    #: Compare string values with line-end hyphenation folded (``treat- ment`` == ``treatment``).
    dehyphenate: bool = False
    #: How the text is written to the "file" the user feeds.
    encoding: str = "utf-8"

    def __str__(self) -> str:
        return self.name


def applies(variant: Variant, name: str) -> bool:
    return variant.applies(name)


def _pdf_tool(name: str, pages: Callable[[str], tuple[str, ...]]) -> Variant:
    return Variant(name, lambda letter: _pages_text(pages(letter)), is_pdf)


def _export(name: str) -> str:
    text = date_wrapped(default_text(name))
    if not is_double_spaced(text):
        text = double_space(text)
    return crlf(_lines_map(text, lambda line: line.rstrip(" ") + " "))


VARIANTS: tuple[Variant, ...] = (
    Variant("default", default_text),
    _pdf_tool("pypdf", pypdf_pages),
    _pdf_tool("pypdf_layout", pypdf_layout_pages),
    _pdf_tool("pdfminer", pdfminer_pages),
    _pdf_tool("pdfminer_raw", pdfminer_raw_pages),
    _pdf_tool("pdfminer_layout", pdfminer_layout_pages),
    _pdf_tool("pdfminer_layout_below", pdfminer_layout_below_pages),
    Variant("crlf", lambda name: crlf(default_text(name))),
    Variant("double_spaced", lambda name: double_space(default_text(name)), _single_spaced_letter),
    Variant("single_spaced", lambda name: single_space(default_text(name)), _double_spaced_letter),
    Variant("export", _export),
    Variant("padded", lambda name: padded(default_text(name))),
    Variant("running_headers", lambda name: with_running_headers(name, list(default_pages(name)))),
    Variant(
        "running_headers_pasted",
        lambda name: with_running_headers(name, list(default_pages(name))).replace(
            PAGE_BREAK, "\n"
        ),
    ),
    Variant("letterhead", lambda name: with_letterhead(list(default_pages(name)))),
    Variant("hyphenated", lambda name: hyphenated(default_text(name)), dehyphenate=True),
    Variant("soft_hyphens", lambda name: soft_hyphens(default_text(name)), dehyphenate=True),
    Variant("date_wrapped", lambda name: date_wrapped(default_text(name))),
    Variant("nbsp", lambda name: nbsp(default_text(name))),
    Variant("tabs", lambda name: tabs(default_text(name))),
    Variant("ligatures", lambda name: ligatures(default_text(name))),
    Variant("nul_chars", lambda name: _every(default_text(name), 500, "\x00")),
    Variant("indented", lambda name: _lines_map(default_text(name), lambda line: "    " + line)),
    Variant("utf16", lambda name: crlf(default_text(name)), encoding="utf-16"),
    Variant("cp1252", _cp1252_text, _cp1252_letter, encoding="cp1252"),
    Variant("rewrapped", lambda name: rewrapped(default_text(name))),
    Variant("rewrapped_narrow", lambda name: rewrapped(default_text(name), width=41)),
    Variant("unwrapped", lambda name: rewrapped(default_text(name), width=10**6)),
    Variant("everything", _everything, encoding="utf-16"),
)
VARIANTS_BY_NAME = {v.name: v for v in VARIANTS}


@functools.cache
def variant_text(variant: str, name: str) -> str | None:
    """The variant's text of a letter; None when the variant does not apply to it."""
    v = VARIANTS_BY_NAME[variant]
    return v.derive(name) if v.applies(name) else None


def variant_document(variant: str, name: str) -> Document | None:
    """The variant's text read as a user's text file would be (``None``: does not apply)."""
    text = variant_text(variant, name)
    if text is None:
        return None
    return read_text_bytes(text.encode(VARIANTS_BY_NAME[variant].encoding), name)


__all__ = [
    "VARIANTS",
    "VARIANTS_BY_NAME",
    "Variant",
    "applies",
    "judge",
    "judge_variant",
    "letter_names",
    "variant_document",
    "variant_text",
]


# --------------------------------------------------------------------------- judging a record


_HYPHEN_BREAK_RX = re.compile(r"(?<=\w)- (?=\w)")


def _dehyphenate(value: Any) -> Any:
    if isinstance(value, str):
        return _HYPHEN_BREAK_RX.sub("", value)
    if isinstance(value, list):
        return [_dehyphenate(v) for v in value]
    if isinstance(value, dict):
        return {k: _dehyphenate(v) for k, v in value.items()}
    return value


@dataclass
class Judgement:
    """One record of one variant against gold: what is right, verified, wrong, lost."""

    letter: str
    variant: str
    fields: int = 0  # scored fields (letter fields + item fields of gold's and the record's items)
    exact: int = 0  # of those, equal to gold
    verified: int = 0  # fields the record marks verified
    right_unverified: int = 0  # fields equal to gold the record does not mark verified
    alarms: list[str] = field(default_factory=list)  # those fields, with their status
    verified_wrong: list[str] = field(default_factory=list)  # verified but not gold's value
    lost_items: list[str] = field(default_factory=list)  # gold items the record lacks
    incomplete: bool = False  # the record says it is not complete
    error: str | None = None  # the letter was refused (no record)

    @property
    def silently_lost(self) -> list[str]:
        return [] if self.incomplete or self.error else self.lost_items

    @property
    def violations(self) -> list[str]:
        return [f"verified but wrong: {w}" for w in self.verified_wrong] + [
            f"item lost silently: {x}" for x in self.silently_lost
        ]


def record_incomplete(data: dict[str, Any]) -> bool:
    """Whether a record says it is not complete: coverage < 1 or a failed check."""
    verification = data.get("verification") or {}
    if verification.get("coverage", 0.0) < 1.0:
        return True
    return any(c.get("result") == "failed" for c in verification.get("checks") or [])


def _concrete_paths(data: Any, path: str, prefix: str) -> list[tuple[str, Any]]:
    """Every (``prefix`` + concrete path, value) that a path with ``[*]`` reaches in ``data``."""
    head, star, rest = path.partition("[*]")
    if not star:
        found = resolve(data, path)
        return [(prefix + path, found[0])] if found else []
    listed = resolve(data, head)
    out: list[tuple[str, Any]] = []
    for i in range(len(listed[0]) if listed and isinstance(listed[0], list) else 0):
        out.extend(_concrete_paths(data, f"{head}[{i}]{rest}", prefix))
    return out


def judge(record: dict[str, Any], gold: dict[str, Any], variant: str = "default") -> Judgement:
    """Hold a record (plain JSON) to gold: every field gold's value or not verified; every gold
    item present unless the record says it is incomplete."""
    dehyph = VARIANTS_BY_NAME[variant].dehyphenate if variant in VARIANTS_BY_NAME else False
    norm = _dehyphenate if dehyph else (lambda v: v)
    j = Judgement(letter=gold["letter"], variant=variant, incomplete=record_incomplete(record))

    def score(spec: FieldSpec, g: Any, r: Any, rpath: str | None, gpath: str) -> None:
        expected, got = norm(spec.read(g)), norm(spec.read(r))
        if spec.kind is FieldKind.SET and dehyph:  # folding may change a set's order
            expected, got = sorted(expected, key=str), sorted(got, key=str)
        j.fields += 1
        right = expected == got
        j.exact += right
        if rpath is None or is_null(got):
            return
        status = support(record, rpath).status
        j.verified += status == "verified"
        if right and status != "verified":
            j.right_unverified += 1
            j.alarms.append(f"{gpath}: {status or 'no status'}")
        if status == "verified" and not right:
            j.verified_wrong.append(f"{gpath}: {got!r} (gold {expected!r})")
        elif spec.kind is FieldKind.SET and not right:
            # A set whose worst status is not verified may still hold a verified stray value.
            base = rpath[: -len(spec.path)] if rpath.endswith(spec.path) else ""
            item = r if base else record
            for path, value in _concrete_paths(item, spec.path, base):
                if norm(value) not in expected and support(record, path).status == "verified":
                    j.verified_wrong.append(f"{path}: {value!r} (gold {expected!r})")

    g_data, r_data = data_fields(gold), data_fields(record)
    for spec in LETTER_FIELDS:
        score(spec, g_data, r_data, spec.path, spec.path)
    g_items, r_items = g_data["items"], r_data["items"]
    for pair in align_items([norm(i) for i in g_items], [norm(i) for i in r_items]):
        gi = g_items[pair.left] if pair.left is not None else None
        ri = r_items[pair.right] if pair.right is not None else None
        for spec in ITEM_FIELDS:
            rpath = item_path(pair.right, spec.path) if pair.right is not None else None
            if pair.left is not None:
                where = item_path(pair.left, spec.path)
            else:
                where = f"{rpath} (an item gold does not have)"
            score(spec, gi, ri, rpath, where)
        if ri is None and gi is not None:
            j.lost_items.append(f"items[{pair.left}] {gi.get('request')!r}")
    return j


@functools.cache
def judge_variant(variant: str, name: str) -> Judgement | None:
    """Extract the variant's text with the rules and judge the record (None: no such variant)."""
    from imr_extract.errors import ImrExtractError
    from imr_extract.extract import extract_document

    doc = variant_document(variant, name)
    if doc is None:
        return None
    gold = load_gold_for(name)
    try:
        record = extract_document(doc).model_dump(mode="json")
    except ImrExtractError as exc:
        j = Judgement(letter=name, variant=variant, error=str(exc))
        j.lost_items = [f"items[{i}]" for i in range(len(gold["items"]))]
        return j
    judgement = judge(record, gold, variant)
    judgement.letter = name  # a re-laid letter by its path (its gold names the source letter)
    return judgement


@functools.cache
def _gold_by_letter() -> dict[str, dict[str, Any]]:
    import json

    out = {}
    for p in sorted(GOLD.glob("*.json")):
        data = json.loads(p.read_text(encoding="utf-8"))
        out[data["letter"]] = data
    # The re-laid letters (real letters' content in the other forms), by their path under data.
    for p in sorted((RELAID / "gold").glob("*__*.json")):
        form, stem = p.stem.split("__", 1)
        out[f"relaid/{form}/{stem}.txt"] = json.loads(p.read_text(encoding="utf-8"))
    return out


def load_gold_for(name: str) -> dict[str, Any]:
    return _gold_by_letter()[name]
