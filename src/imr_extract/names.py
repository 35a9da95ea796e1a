"""File names that are not valid UTF-8, carried without loss and written without a crash.

On POSIX a file name is bytes. Python reads a name that is not valid UTF-8 with *surrogate
escapes* (``os.fsdecode(b"caf\\xe9.pdf") == "caf\\udce9.pdf"``): the name opens the right file,
but it cannot be encoded as UTF-8, so it cannot go into JSON, CSV, HTML or SQLite as it is.

Invariant: in memory a name keeps its surrogate escapes (it still opens its file); everywhere a
name is *written* (the record's ``letter`` and ``source.path``, the run store's ``path`` and
``letter`` columns, ``--errors`` lines, messages) each undecodable byte ``0xNN`` is written as
the four characters ``\\xNN`` (lower-case hex, as Python's ``backslashreplace`` writes it), and
``unescape_name`` maps that text back to the surrogate form. ``escape_name`` leaves every valid
name unchanged, and ``escape_name(unescape_name(text)) == text`` for any text without surrogates,
so a written name reads back and writes out again unchanged. The one ambiguity: a valid name that
itself holds the four characters ``\\x`` + two hex digits from ``80`` to ``ff`` reads back as the
undecodable byte.
"""

from __future__ import annotations

import re

_SURROGATE = re.compile("[\ud800-\udfff]")
_ESCAPED = re.compile(r"\\x([89a-fA-F][0-9a-fA-F])|\\u([dD][89a-fA-F][0-9a-fA-F]{2})")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    return f"\\u{code:04x}"  # any other lone surrogate (a UTF-16 name on Windows)


def escape_name(name: str) -> str:
    """``name`` as text that encodes as UTF-8: each undecodable byte written ``\\xNN``."""
    return _SURROGATE.sub(_escape, name) if _SURROGATE.search(name) else name


def _unescape(match: re.Match[str]) -> str:
    if match.group(1) is not None:
        return chr(0xDC00 + int(match.group(1), 16))
    return chr(int(match.group(2), 16))


def unescape_name(text: str) -> str:
    """The name ``escape_name`` wrote as ``text``, with its surrogate escapes back."""
    return _ESCAPED.sub(_unescape, text) if "\\" in text else text


def has_surrogates(text: str) -> bool:
    return _SURROGATE.search(text) is not None
