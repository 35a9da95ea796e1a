"""Hostile letters, built at test time (nothing big is committed): the files issue 12 was
attacked with, for the ingest tests and for the drill that mixes them into a batch.

Invariant: every generator is deterministic and cheap (well under a second, whatever size the
file claims to inflate to), and returns bytes; nothing here touches the disk or the network.
The PDFs are written by hand (no reportlab): one standard font (Helvetica, WinAnsi), every line
of text drawn at its own position, so a test can add one hostile line to a real letter's text
and compare with the same PDF without it.

Generators:

- ``letter_pdf``: a bundled text letter drawn as a PDF (the baseline the others change).
- ``invisible_text_pdf(way)``: the letter plus an item-shaped line (``HIDDEN_ITEM``) drawn so a
  reader of the page cannot see it: ``render-mode`` (``3 Tr``), ``white`` (white on the white
  page), ``off-page`` (placed right of the page's box), ``clipped`` (outside a clip rectangle).
- ``off_page_tail_pdf``: one text object that starts on the page and runs off it.
- ``white_on_dark_pdf``: the control: the same line white on a black bar (visible).
- ``font_map_pdf``: the letter's first decision word printed with a font whose ToUnicode map
  says something else ("Upheld" drawn, "Overturned" extracted).
- ``decompression_bomb``: a few MB whose content stream inflates to ``inflated`` bytes (4 GiB
  by default) of spaces; built from one flushed deflate block repeated, so it costs nothing.
- ``repeated_contents_pdf``: one page naming one inflating stream many times in its contents.
- ``form_bomb_pdf``: the bomb inside a form XObject the page draws.
- ``declared_length_pdf``: a stream declaring a length past pypdf's limit.
- ``page_amplification``: ``pages`` pages (10,000) sharing one content stream.
- ``unreadable_page_pdf``: a letter whose one page cannot be loaded.
- ``run_length_bomb``: one page drawing a 4 MiB RunLengthDecode stream ``inflated / 4 MiB``
  times: the bomb ingest's Flate guard does not measure, which the worker's memory limit stops.
- ``nul_text``: a text letter with NULs in its head, spread through it, or as UTF-16 without BOM.
- ``corpus``: all of them, named, with the error code each must give (for the drill).
"""

from __future__ import annotations

import zlib
from pathlib import Path

LETTERS = Path(__file__).parent / "data" / "letters"
#: The line every invisible-text attack adds: shaped like a decision item of the bundled letters.
HIDDEN_ITEM = "Extra lumbar fusion surgery, two levels:  Overturned"
INVISIBLE_WAYS = ("render-mode", "white", "off-page", "clipped")
PAGE_W, PAGE_H = 612, 792
_LEADING = 14
_TOP = 750
_DECISIONS_HEADING = "IMR ISSUES, DECISIONS AND RATIONALES"
#: The bundled letter the generators redraw (two pages, one item).
LETTER = "CM16-0231706.pdf"


def letter_pages(name: str = LETTER) -> list[list[str]]:
    """The non-blank lines of each page of a bundled PDF letter, as pdfium reads them (read
    here directly, not through imr_extract, so the generators do not depend on the code under
    test)."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument((LETTERS / "pdf" / name).read_bytes(), password="")
    try:
        pages = []
        for i in range(len(pdf)):
            raw = pdf[i].get_textpage().get_text_range()
            raw = raw.replace("\ufffe", "-\n").replace("\r\n", "\n")
            pages.append([line.rstrip() for line in raw.split("\n") if line.strip()])
        return pages
    finally:
        pdf.close()


def letter_lines(name: str = LETTER) -> list[str]:
    """All the non-blank lines of a bundled PDF letter."""
    return [line for page in letter_pages(name) for line in page]


def _pdf_string(text: str) -> bytes:
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)") + b")"


def _line_ops(text: str, y: float, x: float = 72, font: bytes = b"/F1", pre: bytes = b"") -> bytes:
    return (
        b"BT " + font + b" 10 Tf " + pre + b" 1 0 0 1 %.2f %.2f Tm " % (x, y) + _pdf_string(text)
    ) + b" Tj ET\n"


def _stream(data: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s>>\nstream\n" % (len(data), extra) + data + b"\nendstream"


def build_pdf(objects: list[bytes]) -> bytes:
    """A PDF of ``objects`` (object ``i + 1`` is ``objects[i]``; object 1 is the catalog),
    with a correct cross-reference table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        xref,
    )
    return bytes(out)


_HELVETICA = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"


def pages_pdf(
    contents: list[bytes | list[bytes]],
    fonts: dict[bytes, bytes] | None = None,
    extra: list[bytes] | None = None,
) -> bytes:
    """A PDF with one page per content (a list of bytes: several content streams), letter size,
    font ``/F1`` Helvetica plus ``fonts`` (name -> object body). ``extra`` objects come first,
    as objects 4, 5, ... (a font's ``/ToUnicode`` map, say)."""
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", _HELVETICA]
    objects.extend(extra or [])
    font_refs = [b"/F1 3 0 R"]
    for name, body in (fonts or {}).items():
        objects.append(body)
        font_refs.append(name + b" %d 0 R" % len(objects))
    kids = []
    for content in contents:
        streams = content if isinstance(content, list) else [content]
        refs = []
        for data in streams:
            objects.append(data if data.startswith(b"<<") else _stream(data))
            refs.append(b"%d 0 R" % len(objects))
        objects.append(b"<< /Type /Page /Parent 2 0 R /Contents [" + b" ".join(refs) + b"] >>")
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = (
        b"<< /Type /Pages /Count %d /Kids [" % len(kids)
        + b" ".join(kids)
        + b"] /MediaBox [0 0 %d %d] /Resources << /Font << " % (PAGE_W, PAGE_H)
        + b" ".join(font_refs)
        + b" >> >> >>"
    )
    return build_pdf(objects)


def _hidden_at(pages: list[list[str]]) -> tuple[int, int]:
    """(page, line) after which an attack puts its item: the decisions section's first
    sentence ("The Final Determination was based on decisions ...")."""
    for p, page in enumerate(pages):
        for k, line in enumerate(page):
            if _DECISIONS_HEADING in line.upper():
                return p, k + 1
    return 0, len(pages[0]) // 2


def _page_ops(page: list[str], hidden: tuple[int, bytes] | None = None) -> bytes:
    """Each line at its own position; ``hidden`` (line index, ops with ``{Y}``) is drawn on a
    line of its own after that line, the lines after it one line lower."""
    ops = []
    y = float(_TOP)
    for k, line in enumerate(page):
        ops.append(_line_ops(line, y))
        y -= _LEADING
        if hidden is not None and hidden[0] == k:
            ops.append(hidden[1].replace(b"{Y}", b"%.2f" % y))
            y -= _LEADING
    return b"".join(ops)


def letter_pdf(name: str = LETTER, hidden: bytes | None = None) -> bytes:
    """A bundled letter redrawn as a plain PDF; ``hidden`` (ops with ``{Y}`` for the y
    position) is drawn after the decisions section's first sentence."""
    pages = letter_pages(name)
    at_page, at_line = _hidden_at(pages)
    return pages_pdf(
        [
            _page_ops(page, (at_line, hidden) if hidden and p == at_page else None)
            for p, page in enumerate(pages)
        ]
    )


def invisible_text_pdf(way: str, name: str = LETTER, line: str = HIDDEN_ITEM) -> bytes:
    """The letter plus ``line`` drawn invisibly, one of ``INVISIBLE_WAYS``."""
    text = _pdf_string(line)
    if way == "render-mode":
        ops = b"q BT /F1 10 Tf 3 Tr 1 0 0 1 72 {Y} Tm " + text + b" Tj ET Q\n"
    elif way == "white":
        ops = b"q BT /F1 10 Tf 1 1 1 rg 1 0 0 1 72 {Y} Tm " + text + b" Tj ET Q\n"
    elif way == "off-page":
        ops = b"BT /F1 10 Tf 1 0 0 1 %d {Y} Tm " % (PAGE_W + 40) + text + b" Tj ET\n"
    elif way == "clipped":
        ops = b"q 0 0 1 1 re W n BT /F1 10 Tf 1 0 0 1 72 {Y} Tm " + text + b" Tj ET Q\n"
    else:
        raise ValueError(f"unknown way {way!r}; one of {INVISIBLE_WAYS}")
    return letter_pdf(name, hidden=ops)


#: What the off-page tail attack prints on the page (its line's visible start).
TAIL_PREFIX = "Decisions follow."


def off_page_tail_pdf(name: str = LETTER, line: str = HIDDEN_ITEM) -> tuple[bytes, bytes]:
    """A line whose start (``TAIL_PREFIX``) is on the page and whose rest, one text object
    with it, is pushed past the page's right edge; and the same PDF with only the start."""
    prefix = _pdf_string(TAIL_PREFIX)
    tail = b"[" + prefix + b" -60000 " + _pdf_string(line) + b"] TJ"
    hostile = letter_pdf(name, hidden=b"BT /F1 10 Tf 1 0 0 1 72 {Y} Tm " + tail + b" ET\n")
    clean = letter_pdf(name, hidden=b"BT /F1 10 Tf 1 0 0 1 72 {Y} Tm " + prefix + b" Tj ET\n")
    return hostile, clean


def white_on_dark_pdf(name: str = LETTER, line: str = HIDDEN_ITEM) -> bytes:
    """The control for ``white``: ``line`` in white on a black bar, which a reader sees."""
    ops = (
        b"q 0 0 0 rg 66 {Y} 460 12 re f Q q BT /F1 10 Tf 1 1 1 rg 1 0 0 1 72 {Y} Tm "
        + _pdf_string(line)
        + b" Tj ET Q\n"
    )
    return letter_pdf(name, hidden=ops)


# --- a font whose ToUnicode map lies --------------------------------------------------------

#: Each glyph of the printed word and what the lying map says it is.
_LIE = {"U": "Ove", "p": "rt", "h": "ur", "e": "n", "l": "e", "d": "d"}


def _tounicode(mapping: dict[str, str]) -> bytes:
    rows = b"".join(
        b"<%02X> <%s>\n" % (ord(code), dest.encode("utf-16-be").hex().upper().encode())
        for code, dest in mapping.items()
    )
    return (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap\n"
        b"/CMapName /Lie def /CMapType 2 def\n1 begincodespacerange <00> <FF> endcodespacerange\n"
        + b"%d beginbfchar\n" % len(mapping)
        + rows
        + b"endbfchar\nendcmap CMapName currentdict /CMap defineresource pop end end"
    )


def font_map_pdf(name: str = LETTER) -> tuple[bytes, str]:
    """The letter with the first decision "Upheld" drawn in a font whose ToUnicode map reads
    it as "Overturned": the page shows Upheld, the text layer says Overturned. Returns the PDF
    and the printed line."""
    pages = letter_pages(name)
    at_page, at_line = _hidden_at(pages)
    where = next(
        (p, k)
        for p, page in enumerate(pages)
        for k, line in enumerate(page)
        if (p, k) >= (at_page, at_line) and line.endswith("Upheld")
    )
    printed = pages[where[0]][where[1]]
    head = printed[: -len("Upheld")]
    contents = []
    for p, page in enumerate(pages):
        ops = []
        for k, line in enumerate(page):
            y = _TOP - k * _LEADING
            if (p, k) == where:
                ops.append(_line_ops(head, y))
                # Helvetica 10pt averages about 5pt a character: the word follows the head.
                ops.append(_line_ops("Upheld", y, x=72 + 5.0 * len(head), font=b"/F2"))
            else:
                ops.append(_line_ops(line, y))
        contents.append(b"".join(ops))
    # The map is object 4 (the first extra object), the lying font points at it.
    lying_font = (
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding "
        b"/ToUnicode 4 0 R >>"
    )
    cmap = _stream(_tounicode(_LIE))
    return pages_pdf(contents, fonts={b"/F2": lying_font}, extra=[cmap]), printed


# --- size attacks ---------------------------------------------------------------------------


def _adler32_combine(adler1: int, adler2: int, len2: int) -> int:
    base = 65521
    rem = len2 % base
    sum1 = adler1 & 0xFFFF
    sum2 = (rem * sum1) % base
    sum1 += (adler2 & 0xFFFF) + base - 1
    sum2 += ((adler1 >> 16) & 0xFFFF) + ((adler2 >> 16) & 0xFFFF) + base - rem
    return (sum1 % base) | ((sum2 % base) << 16)


def inflating_stream(inflated: int, chunk: int = 2**20, fill: bytes = b" ") -> bytes:
    """zlib data that inflates to ``inflated`` bytes of ``fill`` (a multiple of ``chunk``):
    one fully flushed deflate block, repeated, so building 4 GiB costs one block."""
    n = max(1, inflated // chunk)
    block = fill * chunk
    comp = zlib.compressobj(9)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    header, body = first[:2], first[2:]
    # Checksum of n blocks by doubling: the checksum of 2^j blocks combined with itself.
    result: int | None = None
    power, power_len = zlib.adler32(block), chunk
    k = n
    while k:
        if k & 1:
            result = power if result is None else _adler32_combine(result, power, power_len)
        power = _adler32_combine(power, power, power_len)
        power_len *= 2
        k >>= 1
    assert result is not None
    return header + body * n + b"\x03\x00" + result.to_bytes(4, "big")


def decompression_bomb(inflated: int = 4 * 2**30, name: str = LETTER) -> bytes:
    """A one-page letter whose page has a second content stream inflating to ``inflated``
    bytes of spaces (4 GiB: a 4.2 MB file)."""
    lines = letter_pages(name)[0]
    bomb = _stream(inflating_stream(inflated), b"/Filter /FlateDecode ")
    return pages_pdf([[_page_ops(lines), bomb]])


def repeated_contents_pdf(uses: int = 16, inflated: int = 32 * 2**20, name: str = LETTER) -> bytes:
    """A one-page letter whose ``/Contents`` array names one stream (inflating to ``inflated``
    bytes) ``uses`` times: a 40 KB file that pdfium reads as ``uses x inflated`` bytes (16 x
    32 MiB took 1 GB)."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count 1 /Kids [6 0 R] /MediaBox [0 0 %d %d] "
        b"/Resources << /Font << /F1 3 0 R >> >> >>" % (PAGE_W, PAGE_H),
        _HELVETICA,
        _stream(_page_ops(letter_pages(name)[0])),
        _stream(inflating_stream(inflated), b"/Filter /FlateDecode "),
        b"<< /Type /Page /Parent 2 0 R /Contents [4 0 R " + b"5 0 R " * uses + b"] >>",
    ]
    return build_pdf(objects)


def form_bomb_pdf(inflated: int = 4 * 2**30, name: str = LETTER) -> bytes:
    """A one-page letter that draws a form XObject whose content stream is the bomb."""
    form = _stream(
        inflating_stream(inflated),
        b"/Type /XObject /Subtype /Form /BBox [0 0 10 10] /Filter /FlateDecode ",
    )
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count 1 /Kids [6 0 R] /MediaBox [0 0 %d %d] >>" % (PAGE_W, PAGE_H),
        _HELVETICA,
        _stream(_page_ops(letter_pages(name)[0]) + b"q /Fx Do Q\n"),
        form,
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R "
        b"/Resources << /Font << /F1 3 0 R >> /XObject << /Fx 5 0 R >> >> >>",
    ]
    return build_pdf(objects)


def declared_length_pdf(declared: int = 99_999_999, name: str = LETTER) -> bytes:
    """A one-page letter whose content stream declares a ``/Length`` far past its data (pypdf
    refuses a declared length past 75 MB; pdfium reads to ``endstream``)."""
    data = _page_ops(letter_pages(name)[0])
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Count 1 /Kids [5 0 R] /MediaBox [0 0 %d %d] "
        b"/Resources << /Font << /F1 3 0 R >> >> >>" % (PAGE_W, PAGE_H),
        _HELVETICA,
        b"<< /Length %d >>\nstream\n" % declared + data + b"\nendstream",
        b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>",
    ]
    return build_pdf(objects)


def page_amplification(pages: int = 10_000, name: str = LETTER) -> bytes:
    """``pages`` pages that all draw one shared content stream (a letter's first page)."""
    lines = letter_pages(name)[0]
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"",
        _HELVETICA,
        _stream(_page_ops(lines)),
    ]
    kids = []
    for _ in range(pages):
        objects.append(b"<< /Type /Page /Parent 2 0 R /Contents 4 0 R >>")
        kids.append(b"%d 0 R" % len(objects))
    objects[1] = (
        b"<< /Type /Pages /Count %d /Kids [" % pages
        + b" ".join(kids)
        + b"] /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R >> >> >>" % (PAGE_W, PAGE_H)
    )
    return build_pdf(objects)


def unreadable_page_pdf(name: str = LETTER, page: int = 2) -> bytes:
    """The letter as a PDF whose page ``page`` (1-based) is a broken object: listed in the page
    tree, but not a page dictionary, so no reader can load it."""
    data = letter_pdf(name)
    assert 1 <= page <= len(letter_pages(name))
    # Page objects are written in order; the page's dictionary is replaced by a bare number of
    # the same length so the cross-reference table stays right.
    seen = 0
    start = 0
    marker = b"<< /Type /Page /Parent 2 0 R"
    while True:
        start = data.index(marker, start)
        seen += 1
        if seen == page:
            break
        start += 1
    end = data.index(b"\nendobj", start)
    return data[:start] + b"0".ljust(end - start) + data[end:]


# --- text ------------------------------------------------------------------------------------


def nul_text(how: str, nuls: int = 50, name: str = LETTER) -> bytes:
    """A letter's text with NULs: ``head`` (``nuls`` of them in the first 4 KB), ``tail`` (as
    many after it), ``stray`` (one NUL at the end of every third line), or ``utf16`` (UTF-16-LE
    without a BOM: every other byte a NUL)."""
    text = "\n".join(letter_lines(name)) + "\n"
    data = text.encode("utf-8")
    if how == "head":
        return data[:100] + b"\x00" * nuls + data[100:]
    if how == "tail":
        return data[:-100] + b"\x00" * nuls + data[-100:]
    if how == "stray":
        lines = data.split(b"\n")
        return b"\n".join(line + b"\x00" * (i % 3 == 2) for i, line in enumerate(lines))
    if how == "utf16":
        return text.encode("utf-16-le")
    raise ValueError(how)


# --- the corpus, for a drill ---------------------------------------------------------------


_MIB = 2**20


def run_length_bomb(inflated: int = 2**30) -> bytes:
    """A small PDF whose one page draws the same 4 _MIB content stream ``inflated / 4 _MIB``
    times: pdfium decodes every copy into memory (a decompression bomb, 64 KB on disk per GiB
    drawn). The stream is RunLengthDecode (128 spaces in 2 bytes), which ingest's content guard
    does not measure (it measures FlateDecode): what no guard sees, the memory limit must stop.
    """
    stream = bytes([129, 0x20]) * (4 * _MIB // 128) + b"\x80"
    copies = b" ".join(b"4 0 R" for _ in range(max(1, inflated // (4 * _MIB))))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents [" + copies + b"] "
        b"/Resources << >> >>",
        b"<< /Length %d /Filter /RunLengthDecode >>\nstream\n" % len(stream)
        + stream
        + b"\nendstream",
    ]
    return build_pdf(objects)


def corpus() -> list[tuple[str, bytes, str | None]]:
    """Every hostile file with the error code reading it must give under the default limits
    and engine (``None``: read, its hostile part left out or, for the font map, not seen)."""
    files: list[tuple[str, bytes, str | None]] = [
        ("bomb-4gib.pdf", decompression_bomb(), "too-large"),
        ("bomb-in-form.pdf", form_bomb_pdf(), "too-large"),
        ("one-stream-16-uses.pdf", repeated_contents_pdf(), "too-large"),
        ("10000-pages.pdf", page_amplification(), "too-many-pages"),
        ("unreadable-page.pdf", unreadable_page_pdf(), "page-unreadable"),
        ("declared-length.pdf", declared_length_pdf(), "pdf"),
        ("utf16-without-bom.txt", nul_text("utf16"), "binary"),
        ("nuls-in-head.txt", nul_text("head"), None),
        ("nuls-in-tail.txt", nul_text("tail"), None),
        ("off-page-tail.pdf", off_page_tail_pdf()[0], None),
        ("font-map.pdf", font_map_pdf()[0], None),
    ]
    files += [(f"invisible-{way}.pdf", invisible_text_pdf(way), None) for way in INVISIBLE_WAYS]
    return files
