"""Reading letters: encodings, PDFs (published, broken, locked, scanned), directories, stdin."""

from __future__ import annotations

import io
import subprocess
import sys

import pypdf
import pytest

from conftest import LETTERS, letter_path
from imr_extract.errors import (
    BinaryInputError,
    EmptyInputError,
    EncodingInputError,
    NoTextLayerError,
    PdfError,
)
from imr_extract.ingest import iter_paths, join_pages, normalise, read_bytes, read_path

SAMPLE = "Case Number: CM16-0231706\r\nState(s) of Licensure: California\r\nNurse’s café — 10°\r\n"


@pytest.mark.parametrize(
    ("data", "encoding"),
    [
        (SAMPLE.encode("utf-8"), "utf-8"),
        (b"\xef\xbb\xbf" + SAMPLE.encode("utf-8"), "utf-8-sig"),
        (SAMPLE.encode("cp1252"), "cp1252"),
        (SAMPLE.encode("utf-16"), "utf-16"),
    ],
)
def test_text_encodings_decode_to_the_same_text(data, encoding):
    doc = read_bytes(data, "letter.txt")
    assert doc.text_engine == encoding
    assert doc.text == SAMPLE.replace("\r\n", "\n")
    assert doc.media == "text"


def test_bytes_neither_utf8_nor_cp1252_are_an_encoding_error():
    # 0x81 is undefined in cp1252 and invalid as a UTF-8 start byte.
    with pytest.raises(EncodingInputError, match=r"bad\.txt: neither UTF-8"):
        read_bytes(b"Case Number \x81\x81 text", "bad.txt")


def test_empty_and_whitespace_files_are_rejected(tmp_path):
    for content in (b"", b"  \n\t\n"):
        p = tmp_path / "empty.txt"
        p.write_bytes(content)
        with pytest.raises(EmptyInputError, match=r"empty\.txt: empty file"):
            read_path(p)


def test_binary_file_is_rejected_by_content():
    with pytest.raises(BinaryInputError, match=r"blob\.txt: binary data"):
        read_bytes(bytes(range(256)) * 4, "blob.txt")


def test_published_pdf_is_aes_encrypted_and_still_read():
    path = letter_path("CM16-0231706.pdf")
    assert pypdf.PdfReader(path).is_encrypted
    doc = read_path(path)
    assert doc.media == "pdf" and doc.pages == 2
    assert doc.text.startswith("Case Number: CM16-0231706\n")
    assert "\r" not in doc.text and "\ufffe" not in doc.text


def test_page_map_places_offsets_on_their_pages():
    doc = read_path(letter_path("CM16-0231706.pdf"))
    second = doc.page_starts[1]
    assert doc.text[second - 1] == "\f"
    assert doc.page_of(0) == 1
    assert doc.page_of(second - 2) == 1
    assert doc.page_of(second) == 2
    assert doc.page_of(len(doc.text) - 1) == 2
    assert doc.text.index("authorized by the Claims Administrator. The remaining") >= second


def test_pdfium_soft_hyphen_becomes_the_printed_hyphen_and_line_break():
    assert normalise("Regulations-and\ufffeGuidance") == "Regulations-and-\nGuidance"
    text, starts = join_pages(["page one", "page two\r\n"])
    assert text == "page one\n\fpage two\n" and starts == (0, 10)


def test_truncated_pdf_names_the_file(tmp_path):
    p = tmp_path / "cut.pdf"
    p.write_bytes(letter_path("CM16-0231706.pdf").read_bytes()[:20000])
    with pytest.raises(PdfError, match=r"cut\.pdf: truncated PDF"):
        read_path(p)


def test_corrupt_pdf_names_the_cause(tmp_path):
    p = tmp_path / "junk.pdf"
    p.write_bytes(b"%PDF-1.7\n" + b"garbage " * 200 + b"\n%%EOF\n")
    with pytest.raises(PdfError, match=r"junk\.pdf: corrupt or truncated PDF"):
        read_path(p)


def _pdf(writer: pypdf.PdfWriter) -> bytes:
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


@pytest.mark.parametrize("engine", ["pypdfium2", "pypdf"])
def test_password_protected_pdf_is_reported(engine):
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(letter_path("CM16-0231706.pdf")))
    writer.encrypt(user_password="secret", algorithm="AES-128")
    with pytest.raises(PdfError, match=r"locked\.pdf: password-protected"):
        read_bytes(_pdf(writer), "locked.pdf", pdf_engine=engine)


@pytest.mark.parametrize("engine", ["pypdfium2", "pypdf"])
def test_scanned_pdf_without_text_layer_is_reported(engine):
    writer = pypdf.PdfWriter()
    writer.add_blank_page(612, 792)
    writer.add_blank_page(612, 792)
    with pytest.raises(NoTextLayerError, match=r"scan\.pdf: PDF has 2 page"):
        read_bytes(_pdf(writer), "scan.pdf", pdf_engine=engine)


def test_pdf_recognised_by_content_whatever_its_name():
    data = letter_path("CM16-0231706.pdf").read_bytes()
    assert read_bytes(data, "letter.bin").media == "pdf"


def test_directories_are_walked_recursively_for_letters(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "x.pdf").write_bytes(b"")
    (tmp_path / "a" / "y.TXT").write_bytes(b"")
    (tmp_path / "a" / "notes.docx").write_bytes(b"")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "z.txt").write_bytes(b"")
    found = list(iter_paths([tmp_path]))
    assert [p.split(str(tmp_path))[1] for p in found] == ["/a/y.TXT", "/a/b/x.pdf"]
    assert len(list(iter_paths([LETTERS]))) == 66


def test_stdin_is_read_with_dash():
    pdf = letter_path("CM16-0231706.pdf").read_bytes()
    proc = subprocess.run(
        [sys.executable, "-m", "imr_extract.cli", "extract", "-", "--no-summary"],
        input=pdf,
        capture_output=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert b'"case_number":"CM16-0231706"' in proc.stdout
    assert b'"letter":"<stdin>"' in proc.stdout
