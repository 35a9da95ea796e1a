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

What the page shows is what is read: with pypdfium2 (the default engine) text drawn so nobody
sees it -- invisible render mode, white on the white page, off the page, clipped away -- is left
out and counted (``Document.invisible_chars``); with pypdf (the fallback) the same, coarser.
Stray NULs go by one rule over the whole file and are counted (``Document.nuls_stripped``).

Hostile files cost little: a letter past ``limits.Limits`` is refused with that limit's code
before the damage -- pages counted before any is read, text counted page by page, standard
input read in blocks up to its cap, a page whose content inflates past
``MAX_PAGE_CONTENT_BYTES`` refused before an engine loads it; a page no engine can load
refuses the letter (``page-unreadable``), never shortens it. What this layer cannot see: a
font whose ToUnicode map lies (the text layer says one word, the glyphs print another).
"""

from __future__ import annotations

import bisect
import ctypes
import hashlib
import io
import itertools
import os
import re
import sys
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from . import limits as _limits
from .errors import (
    BinaryInputError,
    EmptyInputError,
    EncodingInputError,
    ImrExtractError,
    NoTextLayerError,
    PageUnreadableError,
    PdfError,
    TooLargeInputError,
    TooManyPagesError,
    TooMuchTextError,
)
from .forms import ONE_PER_LETTER_HEADINGS
from .limits import DEFAULT_LIMITS, Limits
from .schema import SourceInfo

#: File suffixes picked up when a directory is walked (explicit files are always read).
LETTER_SUFFIXES = frozenset({".pdf", ".txt", ".text"})
PAGE_BREAK = "\f"
STDIN = "-"
#: Larger files are refused before they are read. A letter is a few pages: the shared ones are
#: 5-100 KB. Without a limit a 50 MB text file took 26 s and 1.3 GB to "extract" 20,462 items.
MAX_TEXT_BYTES, MAX_PDF_BYTES = _limits.MAX_TEXT_BYTES, _limits.MAX_PDF_BYTES
#: Bytes one page's content streams may inflate to (each use of a stream counted). A letter's
#: page is 5-50 KB of content; a decompression bomb's is gigabytes, which pdfium would inflate
#: whole (twice over: 1 GiB inflated took 2 GB) before reading a character.
MAX_PAGE_CONTENT_BYTES = 64 * 2**20
#: Standard input is read in blocks of this size, and stopped at ``Limits.max_stdin_bytes``.
STDIN_BLOCK = 2**20


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
    #: Characters the PDF drew but nobody can see (invisible render mode, white on white, off
    #: the page, clipped away): left out of ``text``, counted here for the record's warnings.
    invisible_chars: int = 0
    #: Stray NUL characters taken out of the text (a converter's unmapped glyphs).
    nuls_stripped: int = 0

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

    def reading_warnings(self) -> list[str]:
        """What reading left out of ``text``, in words for the record's ``warnings``."""
        out = []
        if self.invisible_chars:
            out.append(
                f"{self.invisible_chars} character(s) the PDF draws invisibly (invisible render "
                "mode, white on white, off the page or clipped) left out of the text"
            )
        if self.nuls_stripped:
            out.append(f"{self.nuls_stripped} stray NUL character(s) taken out of the text")
        return out

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
#: Share of the whole file that may be NULs (a converter's unmapped glyphs, stripped and
#: counted) before it is taken for binary data (UTF-16 without a BOM is half NULs).
NUL_SHARE = 0.01


def _looks_binary(data: bytes) -> bool:
    """One rule over the whole file, wherever the bytes are: more than 1% NULs, or more
    control characters (other than tab, newline, CR and form feed) than any letter has."""
    if data.count(b"\x00") > len(data) * NUL_SHARE:
        return True
    controls = len(data) - len(data.translate(None, _CONTROL_BYTES))
    return controls > max(8, len(data) // 50)


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


def _too_much_text(source: str, chars: int, limits: Limits, where: str = "") -> TooMuchTextError:
    return TooMuchTextError(
        source,
        f"more text than a letter has ({chars:,} characters{where}; at most "
        f"{limits.max_chars:,}, --max-chars)",
    )


def read_text_bytes(
    data: bytes, name: str, path: str | None = None, limits: Limits = DEFAULT_LIMITS
) -> Document:
    source = path or name
    if len(data) > MAX_TEXT_BYTES:
        raise _too_large(source, len(data), MAX_TEXT_BYTES, "a text letter is")
    if not data.strip():
        raise EmptyInputError(source, "empty file")
    raw, encoding = decode_text(data, source)
    if limits.max_chars and len(raw) > limits.max_chars:
        raise _too_much_text(source, len(raw), limits)
    nuls = raw.count("\x00")
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
        nuls_stripped=nuls,
    )


# --------------------------------------------------------------------------- pdf


@dataclass
class _PdfText:
    """What an engine read from a PDF: each page's visible text, and what it left out."""

    pages: list[str]
    invisible_chars: int = 0


def _check_page_count(source: str, count: int, limits: Limits) -> None:
    if limits.max_pages and count > limits.max_pages:
        raise TooManyPagesError(
            source,
            f"{count:,} pages, more than a letter has (at most {limits.max_pages:,}, --max-pages)",
        )


def _add_page(pages: list[str], text: str, total: int, source: str, limits: Limits) -> int:
    """Append a page's text, stopping the letter as soon as its text passes the cap."""
    total += len(text)
    if limits.max_chars and total > limits.max_chars:
        where = f" by page {len(pages) + 1}"
        raise _too_much_text(source, total, limits, where)
    pages.append(text)
    return total


def _unreadable(source: str, page: int, count: int, why: str) -> PageUnreadableError:
    return PageUnreadableError(
        source, f"page {page} of {count} cannot be read ({why}); refused rather than read short"
    )


# --- decompression bombs: what a page's content streams inflate to, before pdfium sees it ---


def _inflated_size(raw: bytes, cap: int) -> int:
    """How many bytes zlib ``raw`` inflates to, counting at most ``cap + 1`` (memory stays at
    one block); -1 when it is not zlib data (another filter: left to pdfium)."""
    inflater = zlib.decompressobj()
    size = 0
    try:
        chunk = inflater.decompress(raw, STDIN_BLOCK)
        while True:
            size += len(chunk)
            if size > cap or not inflater.unconsumed_tail:
                return size
            chunk = inflater.decompress(inflater.unconsumed_tail, STDIN_BLOCK)
    except zlib.error:
        return size if size else -1


def _resolve(obj: Any) -> Any:
    """A pypdf object, its indirect reference followed."""
    return obj.get_object() if hasattr(obj, "get_object") else obj


class _ContentGuard:
    """Refuses a page whose content streams -- each use counted, the page's own and those of
    the form XObjects it draws -- inflate past ``MAX_PAGE_CONTENT_BYTES``, before any engine
    loads the page: pdfium inflates a page's whole content first (a 4 MB file inflating to
    4 GiB took 5 GB), pypdf joins a page's streams in memory.

    The page objects are read lazily with pypdf (nothing decoded but what is asked for); the
    streams are inflated block by block and counted, never held. Only FlateDecode is measured
    (what a bomb uses: deflate reaches 1:1000); a file pypdf cannot follow is left to the
    engine, with the worker's memory limit as the backstop.
    """

    def __init__(self, reader: object | None, source: str) -> None:
        self.reader = reader
        self.source = source

    @classmethod
    def open(cls, data: bytes, source: str) -> _ContentGuard:
        try:
            import pypdf

            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted and not reader.decrypt(""):
                return cls(None, source)
            return cls(reader, source)
        except Exception:  # pypdf dislikes a file pdfium may read: no guard
            return cls(None, source)

    def _sizes(self, obj: object, depth: int) -> Iterator[int]:
        """Inflated sizes of the streams ``obj`` (a stream or an array of them) names, and of
        the form XObjects in a form's own resources."""
        from pypdf.generic import ArrayObject, StreamObject

        obj = _resolve(obj)
        if isinstance(obj, ArrayObject):
            for item in obj:
                yield from self._sizes(item, depth)
        elif isinstance(obj, StreamObject):
            filters = obj.get("/Filter")
            first = filters[0] if isinstance(filters, ArrayObject) and filters else filters
            raw = obj._data
            yield (
                _inflated_size(raw, MAX_PAGE_CONTENT_BYTES)
                if first in ("/FlateDecode", "/Fl")
                else len(raw)
            )
            if depth < 4:
                yield from self._forms(obj.get("/Resources"), depth + 1)

    def _forms(self, resources: object, depth: int) -> Iterator[int]:
        from pypdf.generic import DictionaryObject

        resources = _resolve(resources)
        if not isinstance(resources, DictionaryObject):
            return
        xobjects = _resolve(resources.get("/XObject"))
        if not isinstance(xobjects, DictionaryObject):
            return
        for ref in xobjects.values():
            xobj = ref.get_object()
            if isinstance(xobj, DictionaryObject) and xobj.get("/Subtype") == "/Form":
                yield from self._sizes(xobj, depth)

    def check(self, index: int, count: int) -> None:
        """Refuse page ``index`` (0-based) if its content inflates past the cap."""
        if self.reader is None:
            return
        from pypdf.errors import LimitReachedError

        total = 0
        try:
            page = self.reader.pages[index]  # type: ignore[attr-defined]
            contents = page.get("/Contents")
            sizes = self._sizes(contents, 0) if contents is not None else iter(())
            for size in itertools.chain(sizes, self._forms(page.get("/Resources"), 1)):
                total += max(size, 0)
                if total > MAX_PAGE_CONTENT_BYTES:
                    break
        except LimitReachedError as exc:
            raise PdfError(self.source, f"refused: past a safety limit of pypdf ({exc})") from exc
        except Exception:  # a page pypdf cannot follow is left to the engine
            return
        if total > MAX_PAGE_CONTENT_BYTES:
            raise TooLargeInputError(
                self.source,
                f"page {index + 1} of {count}: its content inflates past "
                f"{MAX_PAGE_CONTENT_BYTES // 2**20} MiB (a decompression bomb; a letter's page "
                "is a few KB)",
            )


# --- text a reader cannot see ----------------------------------------------------------------

#: A colour this close to white on the white page is not seen.
_WHITE = 0xF0
_TEXT_MODE_INVISIBLE, _TEXT_MODE_CLIP = 3, 7  # Tr 3 draws nothing; Tr 7 only clips
_STROKE_ONLY = (1, 5)


Box = tuple[float, float, float, float]
#: Points a text object's box may stick out of the page or its clip and still count as inside.
_SLACK = 2.0


def _boxes_meet(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class _HiddenTextFinder:
    """Finds the text objects of a pdfium page that a reader cannot see: render mode
    invisible (3) or clip-only (7); no part inside the page's crop box; no part inside its
    clip path; fill (or, for stroke-only text, stroke) fully transparent or white, unless an
    earlier filled shape or image under it is the background. One pass over the page's
    objects through pdfium's raw API, no text page needed."""

    def __init__(self) -> None:
        import pypdfium2.raw as raw

        self.raw = raw
        self.colour = [ctypes.c_uint() for _ in range(4)]
        self.box = [ctypes.c_float() for _ in range(4)]
        self.point = [ctypes.c_float() for _ in range(2)]
        self.mode = ctypes.c_int()
        self.stroke = ctypes.c_int()

    def _bounds(self, obj: object) -> Box | None:
        b = self.box
        if not self.raw.FPDFPageObj_GetBounds(obj, b[0], b[1], b[2], b[3]):
            return None
        return (b[0].value, b[1].value, b[2].value, b[3].value)

    def _clip_box(self, obj: object) -> Box | None:
        """The box the object's clip path leaves visible (intersection of its paths' boxes)."""
        raw = self.raw
        clip = raw.FPDFPageObj_GetClipPath(obj)
        if not clip:
            return None
        x, y = self.point
        box = None
        for p in range(raw.FPDFClipPath_CountPaths(clip)):
            xs, ys = [], []
            for s in range(raw.FPDFClipPath_CountPathSegments(clip, p)):
                if raw.FPDFPathSegment_GetPoint(raw.FPDFClipPath_GetPathSegment(clip, p, s), x, y):
                    xs.append(x.value)
                    ys.append(y.value)
            if not xs:
                continue
            here = (min(xs), min(ys), max(xs), max(ys))
            box = (
                here
                if box is None
                else (
                    max(box[0], here[0]),
                    max(box[1], here[1]),
                    min(box[2], here[2]),
                    min(box[3], here[3]),
                )
            )
        return box

    def _pale(self, obj: object, stroke: bool) -> bool:
        """Fully transparent, or white."""
        r, g, b, a = self.colour
        get = self.raw.FPDFPageObj_GetStrokeColor if stroke else self.raw.FPDFPageObj_GetFillColor
        if not get(obj, r, g, b, a):
            return False
        return a.value == 0 or min(r.value, g.value, b.value) >= _WHITE

    def _on_background(self, box: Box, under: list[object]) -> bool:
        """Whether a filled, not white, shape or an image drawn before lies under ``box``."""
        raw = self.raw
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        for obj in reversed(under):
            kind = raw.FPDFPageObj_GetType(obj)
            if kind == raw.FPDF_PAGEOBJ_PATH:
                if not raw.FPDFPath_GetDrawMode(obj, self.mode, self.stroke) or not self.mode.value:
                    continue
                if self._pale(obj, stroke=False):
                    continue
            shape = self._bounds(obj)
            if shape and shape[0] <= cx <= shape[2] and shape[1] <= cy <= shape[3]:
                return True
        return False

    def hidden(self, obj: object, page_box: Box, under: list[object]) -> tuple[bool, Box | None]:
        """Whether the text object is unseen; if it is only partly seen (it runs off the page
        or out of its clip), the box in which its characters are seen."""
        raw = self.raw
        mode = raw.FPDFTextObj_GetTextRenderMode(obj)
        if mode in (_TEXT_MODE_INVISIBLE, _TEXT_MODE_CLIP):
            return True, None
        box = self._bounds(obj)
        if box is None:
            return False, None
        seen = page_box
        clip = self._clip_box(obj)
        if clip is not None:
            seen = (
                max(seen[0], clip[0]),
                max(seen[1], clip[1]),
                min(seen[2], clip[2]),
                min(seen[3], clip[3]),
            )
        if not _boxes_meet(box, seen):
            return True, None
        # Fill-and-stroke text (modes 2, 6) is seen if either colour shows.
        pale = self._pale(obj, stroke=mode in _STROKE_ONLY) and (
            mode not in (2, 6) or self._pale(obj, stroke=True)
        )
        if pale and not self._on_background(box, under):
            return True, None
        inside = (
            box[0] >= seen[0] - _SLACK
            and box[1] >= seen[1] - _SLACK
            and box[2] <= seen[2] + _SLACK
            and box[3] <= seen[3] + _SLACK
        )
        return False, None if inside else seen

    def find(
        self, page: object, page_box: Box
    ) -> tuple[list[tuple[object, object | None]], dict[int, Box]]:
        """``(object, form holding it or None)`` for each hidden text object of the page, and
        the box in which each partly seen one (by address) is seen."""
        raw = self.raw
        found: list[tuple[object, object | None]] = []
        partly: dict[int, Box] = {}
        under: list[object] = []

        def walk(count: int, get: object, parent: object | None) -> None:
            for k in range(count):
                obj = get(k)  # type: ignore[operator]
                kind = raw.FPDFPageObj_GetType(obj)
                if kind == raw.FPDF_PAGEOBJ_TEXT:
                    unseen, seen = self.hidden(obj, page_box, under)
                    if unseen:
                        found.append((obj, parent))
                    elif seen is not None:
                        partly[_address(obj)] = seen
                elif kind == raw.FPDF_PAGEOBJ_FORM:
                    walk(
                        raw.FPDFFormObj_CountObjects(obj),
                        lambda i, form=obj: raw.FPDFFormObj_GetObject(form, i),
                        obj,
                    )
                else:
                    under.append(obj)

        walk(raw.FPDFPage_CountObjects(page), lambda i: raw.FPDFPage_GetObject(page, i), None)
        return found, partly


def _address(obj: object) -> int:
    return ctypes.cast(obj, ctypes.c_void_p).value or 0  # type: ignore[arg-type]


def _seen_chars(
    textpage: object, text: str, partly: dict[int, Box], finder: _HiddenTextFinder
) -> tuple[str, int]:
    """``text`` without the characters of partly seen objects whose box lies outside where
    they are seen (pdfium's text is one character per index); the count left out."""
    raw = finder.raw
    tp = textpage.raw  # type: ignore[attr-defined]
    if raw.FPDFText_CountChars(tp) != len(text):
        return text, 0
    left, right, bottom, top = (ctypes.c_double() for _ in range(4))
    keep = []
    dropped = 0
    for i, char in enumerate(text):
        obj = raw.FPDFText_GetTextObject(tp, i)
        seen = partly.get(_address(obj)) if obj else None
        if seen is not None and raw.FPDFText_GetCharBox(tp, i, left, right, bottom, top):
            cx, cy = (left.value + right.value) / 2, (bottom.value + top.value) / 2
            if not (seen[0] <= cx <= seen[2] and seen[1] <= cy <= seen[3]):
                dropped += 1
                continue
        keep.append(char)
    return "".join(keep), dropped


def _visible_text_pdfium(page: object, finder: _HiddenTextFinder) -> tuple[str, int]:
    """A pdfium page's text without what nobody can see, and how many characters that was.

    Text objects wholly unseen are taken off the page in memory before its text is read, so
    the text is pdfium's own assembly of what is left; of an object partly off the page or out
    of its clip, the characters outside are left out one by one.
    """
    raw = finder.raw
    hidden, partly = finder.find(page.raw, tuple(page.get_cropbox()))  # type: ignore[attr-defined]
    dropped = 0
    if hidden:
        textpage = page.get_textpage()  # type: ignore[attr-defined]
        try:
            for obj, _parent in hidden:
                # The length in UTF-16 units with the terminating NUL.
                n = raw.FPDFTextObj_GetText(obj, textpage.raw, None, 0) // 2
                dropped += max(n - 1, 0)
        finally:
            textpage.close()
        for obj, parent in hidden:
            removed = (
                raw.FPDFFormObj_RemoveObject(parent, obj)
                if parent is not None
                else raw.FPDFPage_RemoveObject(page.raw, obj)  # type: ignore[attr-defined]
            )
            if removed:
                raw.FPDFPageObj_Destroy(obj)
    textpage = page.get_textpage()  # type: ignore[attr-defined]
    try:
        text = textpage.get_text_range()
        if partly:
            text, outside = _seen_chars(textpage, text, partly, finder)
            dropped += outside
        return text, dropped
    finally:
        textpage.close()


def _pdf_pages_pdfium(data: bytes, source: str, limits: Limits) -> _PdfText:
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
        count = len(pdf)
        _check_page_count(source, count, limits)
        guard = _ContentGuard.open(data, source)
        finder = _HiddenTextFinder()
        out = _PdfText([])
        total = 0
        for i in range(count):
            guard.check(i, count)
            try:
                page = pdf[i]
            except pdfium.PdfiumError as exc:
                raise _unreadable(source, i + 1, count, f"pdfium: {exc}") from exc
            try:
                text, dropped = _visible_text_pdfium(page, finder)
            except pdfium.PdfiumError as exc:
                raise _unreadable(source, i + 1, count, f"pdfium: {exc}") from exc
            finally:
                page.close()
            out.invisible_chars += dropped
            total = _add_page(out.pages, text, total, source, limits)
        return out
    finally:
        pdf.close()


#: pypdf: a fill this close to white (gray, RGB; CMYK this close to no ink) is not seen.
_PALE_FILL = 0.94


def _pypdf_visible_text(page: Any) -> tuple[str, int]:
    """pypdf's text of a page without what nobody sees, and how many characters that was.

    pypdf hands each piece of text to a visitor with the text and page matrices; the graphics
    state is followed alongside (``q``/``Q``, ``Tr``, ``g``/``rg``/``k``, ``re`` + ``W``) and a
    piece drawn in render mode 3 or 7, in a white fill, with its origin off the page or outside
    its clip rectangle is left out, with the line break after it. Coarser than pdfium's pass
    (colours set through ``sc``/``scn`` and clip paths other than rectangles are not followed);
    the default engine is pypdfium2.
    """
    box = tuple(float(v) for v in page.cropbox)
    state: dict[str, Any] = {"mode": 0, "pale": False, "clip": None}
    saved: list[dict[str, Any]] = []
    rect: list[Box] = []
    parts: list[str] = []
    dropped = [0, False]  # characters left out; whether the last piece was

    def before(op: bytes, args: list[Any], cm: list[float], tm: list[float]) -> None:
        try:
            if op == b"q":
                saved.append(dict(state))
            elif op == b"Q" and saved:
                state.update(saved.pop())
            elif op == b"Tr" and args:
                state["mode"] = int(args[0])
            elif op in (b"g", b"rg") and args:
                state["pale"] = min(float(a) for a in args) >= _PALE_FILL
            elif op == b"k" and args:
                state["pale"] = max(float(a) for a in args) <= 1 - _PALE_FILL
            elif op == b"re" and len(args) == 4:
                x, y, w, h = (float(a) for a in args)
                a, b, c, d, e, f = cm
                corners = [(x, y), (x + w, y), (x, y + h), (x + w, y + h)]
                xs = [a * px + c * py + e for px, py in corners]
                ys = [b * px + d * py + f for px, py in corners]
                rect[:] = [(min(xs), min(ys), max(xs), max(ys))]
            elif op in (b"W", b"W*") and rect:
                r, clip = rect[0], state["clip"]
                state["clip"] = (
                    r
                    if clip is None
                    else (
                        max(clip[0], r[0]),
                        max(clip[1], r[1]),
                        min(clip[2], r[2]),
                        min(clip[3], r[3]),
                    )
                )
        except (TypeError, ValueError):
            pass

    def text(piece: str, cm: list[float], tm: list[float], font: Any, size: Any) -> None:
        if not piece.strip():
            # The line break after a piece left out goes with it.
            if not (dropped[1] and (not parts or parts[-1].endswith("\n"))):
                parts.append(piece)
            return
        a, b, c, d, e, f = cm
        x, y = tm[4] * a + tm[5] * c + e, tm[4] * b + tm[5] * d + f
        clip = state["clip"]
        unseen = (
            state["mode"] in (_TEXT_MODE_INVISIBLE, _TEXT_MODE_CLIP)
            or state["pale"]
            or not (box[0] - _SLACK <= x <= box[2] and box[1] - _SLACK <= y <= box[3])
            or (clip is not None and not (clip[0] <= x <= clip[2] and clip[1] <= y <= clip[3]))
        )
        dropped[1] = unseen
        if unseen:
            dropped[0] += len(piece.strip())
        else:
            parts.append(piece)

    page.extract_text(visitor_operand_before=before, visitor_text=text)
    return "".join(parts), int(dropped[0])


def _pdf_pages_pypdf(data: bytes, source: str, limits: Limits) -> _PdfText:
    """pypdf's text of every page, what nobody sees left out (``_pypdf_visible_text``)."""
    import pypdf
    from pypdf.errors import DependencyError, LimitReachedError, PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfError(source, "password-protected PDF (an empty password did not open it)")
        count = len(reader.pages)
        _check_page_count(source, count, limits)
        # pypdf skips a page-tree entry that is not a page, with only a logged warning.
        declared = _resolve(_resolve(reader.root_object).get("/Pages")).get("/Count")
        if isinstance(declared, int) and declared > count:
            raise PageUnreadableError(
                source,
                f"the page tree lists {declared} pages but only {count} can be read; "
                "refused rather than read short",
            )
        guard = _ContentGuard(reader, source)
        out = _PdfText([])
        total = 0
        for i, page in enumerate(reader.pages):
            guard.check(i, count)
            try:
                text, dropped = _pypdf_visible_text(page)
            except LimitReachedError:
                raise
            except Exception as exc:  # any parser failure on one page
                raise _unreadable(source, i + 1, count, f"pypdf: {exc}") from exc
            out.invisible_chars += dropped
            total = _add_page(out.pages, text, total, source, limits)
        return out
    except PdfError:
        raise
    except LimitReachedError as exc:
        raise PdfError(source, f"refused: past a safety limit of pypdf ({exc})") from exc
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
    data: bytes,
    name: str,
    path: str | None = None,
    engine: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
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
    read = PDF_ENGINES[engine](data, source, limits)
    pages = read.pages
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
        invisible_chars=read.invisible_chars,
        nuls_stripped=sum(page.count("\x00") for page in pages),
    )


# --------------------------------------------------------------------------- entry points


def read_bytes(
    data: bytes,
    name: str,
    path: str | None = None,
    pdf_engine: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Document:
    """Read a letter from bytes; PDFs are recognised by content, not by name."""
    if data.lstrip()[:5] == b"%PDF-" or name.lower().endswith(".pdf"):
        if not data.strip():
            raise EmptyInputError(path or name, "empty file")
        return read_pdf_bytes(data, name, path, engine=pdf_engine, limits=limits)
    return read_text_bytes(data, name, path, limits=limits)


def read_stdin(stream: BinaryIO | None = None, limits: Limits = DEFAULT_LIMITS) -> bytes:
    """Standard input's bytes, read block by block and refused as soon as they pass
    ``limits.max_stdin_bytes`` (never more than the cap and one block in memory)."""
    stream = stream if stream is not None else sys.stdin.buffer
    cap = limits.max_stdin_bytes
    blocks: list[bytes] = []
    size = 0
    while True:
        block = stream.read(STDIN_BLOCK)
        if not block:
            return b"".join(blocks)
        size += len(block)
        if cap and size > cap:
            raise TooLargeInputError(
                "<stdin>",
                f"more than {cap / 2**20:.1f} MiB on standard input (--max-stdin); "
                "refused after reading that much",
            )
        blocks.append(block)


def read_path(
    path: str | os.PathLike[str],
    pdf_engine: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Document:
    """Read one letter file (or ``-`` for standard input)."""
    if str(path) == STDIN:
        return read_bytes(read_stdin(limits=limits), "<stdin>", None, pdf_engine, limits)
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PDF_BYTES:  # the larger limit; text is checked once its kind is known
            raise _too_large(str(p), size, MAX_PDF_BYTES, "a letter is")
        data = p.read_bytes()
    except OSError as exc:
        raise ImrExtractError(str(p), f"cannot read file ({exc.strerror or exc})") from exc
    return read_bytes(data, p.name, str(p), pdf_engine, limits)


def iter_paths(
    inputs: Iterable[str | os.PathLike[str]], skipped: list[str] | None = None
) -> Iterator[str]:
    """Expand inputs: directories recursively (letter suffixes, sorted); files and ``-`` as is.

    ``skipped`` (when given) gets each file a directory holds that is not read: not a letter's
    suffix (hidden files and directories are not counted).
    """
    for item in inputs:
        if str(item) == STDIN:
            yield STDIN
            continue
        p = Path(item)
        if p.is_dir():
            for root, dirs, files in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for f in sorted(files):
                    if f.startswith("."):
                        continue
                    if Path(f).suffix.lower() in LETTER_SUFFIXES:
                        yield str(Path(root) / f)
                    elif skipped is not None:
                        skipped.append(str(Path(root) / f))
        else:
            yield str(p)
