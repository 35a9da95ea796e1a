"""Files -> ``Document``: normalised text plus a page map.

Invariant: every offset anywhere in imr-extract (spans, provenance, review pages) indexes
``Document.text``, the normalised text built here, and ``Document.page_of`` turns it into a page.

Normalisation keeps what was printed and only unifies how it is encoded: ``\\r\\n`` and ``\\r``
become ``\\n``; pdfium's end-of-line soft hyphen marker (U+FFFE, which pdfium emits *instead of*
the hyphen and the line break) and a soft hyphen at a line end become ``-\\n``, as printed
(elsewhere a soft hyphen prints nothing); no-break and typographic spaces become spaces,
ligatures their letters; NUL and zero-width characters go; pages are joined by ``\\f``. The one
thing dropped is page furniture that is not the letter's text: page numbers and running headers
or footers at the page breaks (``strip_page_furniture``), taken off each page before the pages
are joined, so the page map stays exact. A text file without form feeds whose pages end with
``Page N of M`` lines is cut into those pages first (``split_at_page_numbers``).
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import limits
from .errors import (
    BinaryInputError,
    EmptyInputError,
    EncodingInputError,
    ImrExtractError,
    NoTextLayerError,
    PdfError,
    TooLargeInputError,
)
from .forms import ONE_PER_LETTER_HEADINGS
from .schema import SourceInfo

#: File suffixes picked up when a directory is walked (explicit files are always read).
LETTER_SUFFIXES = frozenset({".pdf", ".txt", ".text"})
PAGE_BREAK = "\f"
STDIN = "-"
#: Larger files are refused before they are read. A letter is a few pages: the shared ones are
#: 5-100 KB. Without a limit a 50 MB text file took 26 s and 1.3 GB to "extract" 20,462 items.
MAX_TEXT_BYTES, MAX_PDF_BYTES = limits.MAX_TEXT_BYTES, limits.MAX_PDF_BYTES


@dataclass(frozen=True)
class Document:
    """A letter's text as every later stage sees it."""

    name: str  # file name, as reported in the record's "letter" field
    text: str
    page_starts: tuple[int, ...]  # offset of each page's first character; page_starts[0] == 0
    sha256: str  # of the raw bytes read
    media: str  # "pdf" or "text"
    text_engine: str  # pypdfium2 / pypdf / the text encoding
    path: str | None = None

    @property
    def pages(self) -> int:
        return len(self.page_starts)

    def source_info(self) -> SourceInfo:
        """What was read, and how: the ``source`` block of its record."""
        return SourceInfo(
            path=self.path,
            sha256=self.sha256,
            media=self.media,
            text_engine=self.text_engine,
            pages=self.pages,
            chars=len(self.text),
        )

    def page_of(self, offset: int) -> int:
        """1-based page number holding ``offset``."""
        return bisect.bisect_right(self.page_starts, offset)


#: Characters that print as something plainer, unified so that every reader sees one text:
#: no-break and typographic spaces print as a space, ligatures as their letters, zero-width
#: characters and byte-order marks as nothing.
_PLAIN = str.maketrans(
    {
        **dict.fromkeys(
            "\u00a0\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u202f\u3000", " "
        ),
        **dict.fromkeys("\u200b\u200c\u200d\u2060\ufeff", None),
        "\ufb00": "ff",
        "\ufb01": "fi",
        "\ufb02": "fl",
        "\ufb03": "ffi",
        "\ufb04": "ffl",
        "\ufb05": "st",
        "\ufb06": "st",
    }
)
_SOFT_HYPHEN_EOL_RX = re.compile("\u00ad[ \t]*\n")


def normalise(raw: str) -> str:
    """Unify line endings, hyphens, spaces and ligatures; nothing printed is changed.

    A soft hyphen (U+00AD, or pdfium's U+FFFE marker) prints as a hyphen where the line breaks
    and as nothing elsewhere. Only non-ASCII text pays for the character table.
    """
    if "\r" in raw:
        raw = raw.replace("\r\n", "\n").replace("\r", "\n")
    if "\x00" in raw:
        raw = raw.replace("\x00", "")
    if raw.isascii():
        return raw
    if "\ufffe" in raw:
        raw = raw.replace("\ufffe", "-\n")
    if "\u00ad" in raw:
        raw = _SOFT_HYPHEN_EOL_RX.sub("-\n", raw).replace("\u00ad", "")
    return raw.translate(_PLAIN)


# --- page furniture: what a printer or a PDF-to-text tool puts at every page break -------------

#: How many non-blank lines at a page's top and bottom may be page furniture.
FURNITURE_LINES = 3
_PAGE_NUMBER_RX = re.compile(
    r"\s*(?:Page\s+(?P<of>\d{1,4})(?:\s+of\s+\d{1,4})?|-\s*(?P<dash>\d{1,4})\s*-|(?P<bare>\d{1,4}))\s*",
    re.IGNORECASE,
)
_CASE_NUMBER_RX = re.compile(r"\bCM\d{2}-\d{5,8}\b")
# Digits are blind in an edge key (page numbers change), a case number is not (another case
# number at a page's top starts another letter, pasted after this one).
_EDGE_DIGITS_RX = re.compile(r"\bCM\d{2}-\d{5,8}\b|\d+")
#: A running header carries the case number but is no sentence: short, and no decision in it.
_RUNNING_HEADER_MAX = 100
_DECISION_WORD_RX = re.compile(r"\b(?:Upheld|Overturned)\b", re.IGNORECASE)


def _edge_key(line: str) -> str:
    folded = " ".join(line.split())
    return _EDGE_DIGITS_RX.sub(lambda m: m.group() if m.group()[0] == "C" else "#", folded)


@dataclass(frozen=True)
class _Edges:
    """What marks page furniture in one text: lines repeated at the page edges, and the letter's
    own case number (from its first page)."""

    repeated: frozenset[str]
    case_number: str | None


def _is_furniture(line: str, page: int, edges: _Edges) -> bool:
    """Whether a line at a page's edge is a page number, a running header or footer.

    A heading a letter prints once never is: at a page's top it starts another letter.
    """
    if any(rx.search(line) for rx in ONE_PER_LETTER_HEADINGS):
        return False
    m = _PAGE_NUMBER_RX.fullmatch(line)
    if m:
        # A bare number counts only as this page's own number (0- or 1-based).
        return m.group("bare") is None or int(m.group("bare")) in (page, page + 1)
    stripped = line.strip()
    case = _CASE_NUMBER_RX.search(stripped)
    if (
        case is not None
        and case.group() == edges.case_number
        and len(stripped) <= _RUNNING_HEADER_MAX
        and not _DECISION_WORD_RX.search(stripped)
    ):
        return True
    return _edge_key(line) in edges.repeated


def _furniture_run(lines: list[str], order: list[int], page: int, edges: _Edges) -> int:
    """How many lines, from the edge that ``order`` starts at, are furniture (with the blank
    lines around it, so no blank line is left where the page break was)."""
    last = -1
    seen = 0
    for k, idx in enumerate(order):
        if not lines[idx].strip():
            continue
        if seen == FURNITURE_LINES or not _is_furniture(lines[idx], page, edges):
            break
        seen += 1
        last = k
    if last < 0:
        return 0
    drop = last + 1
    while drop < len(order) and not lines[order[drop]].strip():
        drop += 1
    return drop


def _edge_keys(page: str) -> tuple[set[str], set[str]]:
    """The (digit-blind) keys of a page's first and last ``FURNITURE_LINES`` non-blank lines."""
    lines = [line for line in page.split("\n") if line.strip()]
    top = {_edge_key(line) for line in lines[:FURNITURE_LINES]}
    return top, {_edge_key(line) for line in lines[-FURNITURE_LINES:]}


def _repeated_edge_lines(pages: list[str]) -> set[str]:
    """Lines that a printer repeats at the page edges: at the same edge (top or bottom) of every
    page, or, in a letter of three pages or more, at an edge of most pages."""
    edges = [_edge_keys(page) for page in pages]
    repeated = set.intersection(*(top for top, _ in edges)) | set.intersection(
        *(bottom for _, bottom in edges)
    )
    if len(pages) >= 3:
        counts: dict[str, int] = {}
        for top, bottom in edges:
            for key in top | bottom:
                counts[key] = counts.get(key, 0) + 1
        need = max(3, -(-2 * len(pages) // 3))
        repeated |= {key for key, n in counts.items() if n >= need}
    return {key for key in repeated if len(key) >= 4}


def strip_page_furniture(pages: list[str]) -> list[str]:
    """Drop page numbers, running headers and running footers from the edges of the pages.

    Only lines at a page break are looked at (the first ``FURNITURE_LINES`` non-blank lines of
    every page but the first, the last ones of every page), and only a run of them from the edge:
    a page number (``Page 2 of 5``, ``- 2 -``, the page's own number alone), a short line with the
    letter's own case number (a running header; the first page's own header is never touched;
    another case number starts another letter), or a line
    that stands, digits aside, at the same edge of every page or at an edge of most pages of a
    letter of three pages or more (``_repeated_edge_lines``).
    A letter's own text never stands there: its pages break mid-sentence, as printed.
    """
    if len(pages) < 2:
        return pages
    own = _CASE_NUMBER_RX.search(pages[0])
    edges = _Edges(frozenset(_repeated_edge_lines(pages)), own.group() if own else None)
    out = []
    # The first page's header (up to its case number's line) is the letter's, however short
    # the page.
    header_lines = pages[0].count("\n", 0, own.start()) + 1 if own else 0
    for i, page in enumerate(pages):
        lines = page.split("\n")
        top = _furniture_run(lines, list(range(len(lines))), i, edges) if i else 0
        rest = list(range(len(lines) - 1, (top if i else header_lines) - 1, -1))
        bottom = _furniture_run(lines, rest, i, edges)
        kept = lines[top : len(lines) - bottom]
        out.append("\n".join(kept) + ("\n" if bottom and kept else ""))
    return out


_PAGE_OF_LINE_RX = re.compile(
    r"^[ \t]*Page[ \t]+(\d{1,4})[ \t]+of[ \t]+(\d{1,4})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE
)


def split_at_page_numbers(raw: str) -> list[str]:
    """A text without form feeds whose pages still say where they end (``Page 1 of 3`` on a line
    of its own: text copied out of a PDF viewer), cut into those pages.

    Page N ends after the last ``Page N of M`` line; the numbers must run in order under one M,
    else the text stays one page. Its furniture then goes as at any page break.
    """
    marks = [(int(m.group(1)), int(m.group(2)), m.end()) for m in _PAGE_OF_LINE_RX.finditer(raw)]
    if not marks or len({total for _n, total, _end in marks}) != 1:
        return [raw]
    numbers = [n for n, _total, _end in marks]
    if numbers != sorted(numbers) or numbers[-1] > marks[0][1]:
        return [raw]
    ends = {n: end for n, _total, end in marks}  # the last line of each page number
    cuts = sorted(end for end in ends.values() if raw[end:].strip())
    pages, start = [], 0
    for cut in cuts:
        nl = raw.find("\n", cut)
        stop = len(raw) if nl < 0 else nl + 1
        pages.append(raw[start:stop])
        start = stop
    pages.append(raw[start:])
    return pages


def join_pages(pages: list[str]) -> tuple[str, tuple[int, ...]]:
    """Join page texts with a form feed at the start of every page after the first.

    Page furniture (``strip_page_furniture``) is dropped page by page before the join, so every
    offset still falls on the page it was printed on.
    """
    parts: list[str] = []
    starts: list[int] = []
    pos = 0
    pages = strip_page_furniture([normalise(page) for page in pages])
    for i, page in enumerate(pages):
        if i > 0:
            if parts and not parts[-1].endswith("\n"):
                parts.append("\n")
                pos += 1
            parts.append(PAGE_BREAK)
            pos += 1
        starts.append(pos if i else 0)
        parts.append(page)
        pos += len(page)
    return "".join(parts), tuple(starts) or (0,)


# --------------------------------------------------------------------------- text


_CONTROL_BYTES = bytes(b for b in range(32) if b not in (9, 10, 12, 13))


def _looks_binary(data: bytes) -> bool:
    sample = data[:4096]
    # A stray NUL (some converters leave one for a glyph they could not map) is dropped by
    # normalise; many are UTF-16 without a BOM, an image or an archive.
    if sample.count(b"\x00") > len(sample) // 100:
        return True
    # Control characters other than tab, newline, CR and form feed are rare in any letter.
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    return controls > max(8, len(sample) // 50)


def decode_text(data: bytes, source: str) -> tuple[str, str]:
    """Decode letter bytes: UTF-8 (with or without BOM), UTF-16 with BOM, else cp1252.

    Returns the text and the encoding used.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16"), "utf-16"
        except UnicodeDecodeError as exc:
            raise EncodingInputError(source, f"invalid UTF-16 text ({exc.reason})") from exc
    if _looks_binary(data):
        raise BinaryInputError(source, "binary data, not a text letter or PDF")
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8"), "utf-8-sig"
        except UnicodeDecodeError as exc:
            raise EncodingInputError(
                source, f"has a UTF-8 BOM but invalid UTF-8 at byte {exc.start + 3}"
            ) from exc
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as utf8_exc:
        try:
            return data.decode("cp1252"), "cp1252"
        except UnicodeDecodeError as exc:
            raise EncodingInputError(
                source,
                f"neither UTF-8 (bad byte at {utf8_exc.start}) nor cp1252 "
                f"(undefined byte 0x{data[exc.start]:02x} at {exc.start})",
            ) from exc


def _too_large(source: str, size: int, limit: int, kind: str) -> TooLargeInputError:
    return TooLargeInputError(
        source,
        f"file too large for a letter ({size / 2**20:.1f} MiB; {kind} at most "
        f"{limit // 2**20} MiB)",
    )


def read_text_bytes(data: bytes, name: str, path: str | None = None) -> Document:
    source = path or name
    if len(data) > MAX_TEXT_BYTES:
        raise _too_large(source, len(data), MAX_TEXT_BYTES, "a text letter is")
    if not data.strip():
        raise EmptyInputError(source, "empty file")
    raw, encoding = decode_text(data, source)
    pages = raw.split(PAGE_BREAK) if PAGE_BREAK in raw else split_at_page_numbers(raw)
    text, starts = join_pages(pages)
    if not text.strip():
        raise EmptyInputError(source, "no text")
    return Document(
        name=name,
        text=text,
        page_starts=starts,
        sha256=hashlib.sha256(data).hexdigest(),
        media="text",
        text_engine=encoding,
        path=path,
    )


# --------------------------------------------------------------------------- pdf


def _pdf_pages_pdfium(data: bytes, source: str) -> list[str]:
    import pypdfium2 as pdfium

    try:
        # The published letters are AES-encrypted with an empty owner password.
        pdf = pdfium.PdfDocument(data, password="")
    except pdfium.PdfiumError as exc:
        message = str(exc)
        if "password" in message.lower():
            raise PdfError(
                source, "password-protected PDF (an empty password did not open it)"
            ) from exc
        raise PdfError(source, f"corrupt or truncated PDF ({message})") from exc
    try:
        pages = []
        for i in range(len(pdf)):
            page = pdf[i]
            textpage = page.get_textpage()
            pages.append(textpage.get_text_range())
            textpage.close()
            page.close()
        return pages
    finally:
        pdf.close()


def _pdf_pages_pypdf(data: bytes, source: str) -> list[str]:
    import io

    import pypdf
    from pypdf.errors import DependencyError, PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfError(source, "password-protected PDF (an empty password did not open it)")
        return [page.extract_text() or "" for page in reader.pages]
    except PdfError:
        raise
    except DependencyError as exc:
        raise PdfError(source, f"pypdf cannot decrypt this PDF: {exc}") from exc
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise PdfError(source, f"corrupt or truncated PDF ({exc})") from exc


PDF_ENGINES = {"pypdfium2": _pdf_pages_pdfium, "pypdf": _pdf_pages_pypdf}


def default_pdf_engine() -> str:
    """pypdfium2 (fast, native) when importable, else pypdf (pure Python)."""
    try:
        import pypdfium2  # noqa: F401
    except ImportError:
        return "pypdf"
    return "pypdfium2"


def read_pdf_bytes(
    data: bytes, name: str, path: str | None = None, engine: str | None = None
) -> Document:
    source = path or name
    engine = engine or default_pdf_engine()
    if len(data) > MAX_PDF_BYTES:
        raise _too_large(source, len(data), MAX_PDF_BYTES, "a PDF letter is")
    if not data.lstrip()[:5] == b"%PDF-":
        raise PdfError(source, "not a PDF (no %PDF- header)")
    if b"%%EOF" not in data[-2048:]:
        # pdfium repairs some truncated files silently; a letter cut short must not pass as whole.
        raise PdfError(source, "truncated PDF (no %%EOF trailer)")
    pages = PDF_ENGINES[engine](data, source)
    if not pages:
        raise PdfError(source, "PDF has no pages")
    text, starts = join_pages(pages)
    if not text.strip():
        raise NoTextLayerError(
            source, f"PDF has {len(pages)} page(s) but no text layer (scanned?); run OCR first"
        )
    return Document(
        name=name,
        text=text,
        page_starts=starts,
        sha256=hashlib.sha256(data).hexdigest(),
        media="pdf",
        text_engine=engine,
        path=path,
    )


# --------------------------------------------------------------------------- entry points


def read_bytes(
    data: bytes, name: str, path: str | None = None, pdf_engine: str | None = None
) -> Document:
    """Read a letter from bytes; PDFs are recognised by content, not by name."""
    if data.lstrip()[:5] == b"%PDF-" or name.lower().endswith(".pdf"):
        if not data.strip():
            raise EmptyInputError(path or name, "empty file")
        return read_pdf_bytes(data, name, path, engine=pdf_engine)
    return read_text_bytes(data, name, path)


def read_path(
    path: str | os.PathLike[str],
    pdf_engine: str | None = None,
    *,
    limits: limits.Limits | None = None,
) -> Document:
    """Read one letter file (or ``-`` for standard input), within ``limits`` (default:
    ``limits.DEFAULT_LIMITS``)."""
    if str(path) == STDIN:
        return read_bytes(sys.stdin.buffer.read(), "<stdin>", None, pdf_engine)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PDF_BYTES:  # the larger limit; text is checked once its kind is known
            raise _too_large(str(p), size, MAX_PDF_BYTES, "a letter is")
        data = p.read_bytes()
    except OSError as exc:
        raise ImrExtractError(str(p), f"cannot read file ({exc.strerror or exc})") from exc
    return read_bytes(data, p.name, str(p), pdf_engine)


def iter_paths(inputs: Iterable[str | os.PathLike[str]]) -> Iterator[str]:
    """Expand inputs: directories recursively (letter suffixes, sorted); files and ``-`` as is."""
    for item in inputs:
        if str(item) == STDIN:
            yield STDIN
            continue
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if not f.startswith(".") and Path(f).suffix.lower() in LETTER_SUFFIXES:
                        yield str(Path(root) / f)
        else:
            yield str(p)
