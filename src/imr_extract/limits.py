"""Limits on what one letter may cost: every one configurable, every default far past any real
letter (the published ones are 2-20 pages, 5-100 KB, 1-30 items, milliseconds to read).

Invariant: a letter past a limit becomes an error row with that limit's own code
(``errors.LimitError`` subclasses) and costs nothing else in the batch; the defaults here are the
ones the README's "Limits and security" table lists (a test keeps them in step).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Bytes: larger files are refused before they are read (text / PDF).
MAX_TEXT_BYTES = 8 * 2**20
MAX_PDF_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Limits:
    """What one letter may use. ``0`` turns a limit off (not recommended for untrusted input)."""

    #: Pages per PDF (``--max-pages``).
    max_pages: int = 500
    #: Characters of extracted text per letter, PDF and text alike (``--max-chars``).
    max_chars: int = 2_000_000
    #: Decided items per letter (``--max-items``).
    max_items: int = 200
    #: Wall-clock seconds per letter, reading, extraction and model calls included
    #: (``--letter-timeout``).
    letter_seconds: float = 900.0
    #: Bytes of memory per worker process, set as an rlimit where the platform has one
    #: (``--worker-memory``).
    worker_memory: int = 2 * 2**30
    #: Bytes read from standard input, streamed and stopped at the cap (``--max-stdin``).
    max_stdin_bytes: int = MAX_PDF_BYTES


DEFAULT_LIMITS = Limits()
