"""A job's body as letters: a multipart form of several files, or one tar / tar.gz / zip.

Invariants (an archive is hostile input):

* No more than ``max_members`` entries are looked at: one more and the archive is refused
  (``archive-too-many-members``, 413) before any member is read.
* Every member's size is checked as it is declared *and* as it inflates, each member against
  ``member_cap`` and all members together (letters or not: a tar member skipped is still read
  past) against ``total_cap``; past either, the archive is refused (``archive-too-large``,
  413) with no more read. A zip bomb inflates no further than the cap.
* A member's path is never used: its name is its base name alone; a path that is absolute or
  climbs (``..``) marks the archive as made to attack (``archive-unsafe-name``, 422). A name
  that is not UTF-8 is carried as the project carries such names (``names.escape_name``:
  each undecodable byte written ``\\xNN``).
* What is not a letter (a directory, a link, a device, a hidden or ``__MACOSX`` file, a file
  neither named ``.pdf``/``.txt`` nor a PDF) is skipped and counted, never extracted.
* A body that is no archive it claims to be, or an archive that cannot be read (truncated,
  encrypted, an unknown compression), is refused (``bad-archive``, 400).
"""

from __future__ import annotations

import io
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO

from ..names import escape_name
from .body import DEFAULT_NAMES, MAX_NAME, Letter, form_parts, label, path_segments
from .problems import ProblemError

#: Media types of the archives a job may be sent as (and ``application/octet-stream``,
#: sniffed).
ZIP_TYPES = frozenset({"application/zip", "application/x-zip-compressed"})
TAR_TYPES = frozenset(
    {"application/x-tar", "application/tar", "application/gzip", "application/x-gzip"}
    | {"application/x-gtar", "application/x-compressed-tar", "application/tar+gzip"}
)
#: Suffixes of the files taken as letters (a PDF is also known by its first bytes).
LETTER_SUFFIXES = (".pdf", ".txt")
_CHUNK = 1 << 16
#: Compression and archive errors that mean "this archive cannot be read".
_UNREADABLE = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zlib.error,
    EOFError,
    OSError,
    NotImplementedError,
    RuntimeError,
    ValueError,
    UnicodeError,
)


@dataclass
class JobLetters:
    """The letters of a job's body, in the order sent, and how many members were skipped."""

    letters: list[Letter] = field(default_factory=list)
    skipped: int = 0


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n:,} bytes"


def _too_many(limit: int) -> ProblemError:
    return ProblemError(
        "archive-too-many-members",
        f"the job holds more than {limit:,} members (files, directories, links): send fewer "
        "letters per job",
    )


def _too_large(what: str, cap: int) -> ProblemError:
    return ProblemError(
        "archive-too-large",
        f"{what} inflates past the {_size(cap)} this service takes for a job: send smaller "
        "archives",
    )


def _unsafe(name: str) -> ProblemError:
    return ProblemError(
        "archive-unsafe-name",
        f"the archive holds a member named {name!r}: an absolute path or one that climbs (..); "
        "such an archive is refused",
    )


def _bad(kind: str, why: str) -> ProblemError:
    return ProblemError("bad-archive", f"the body is not a {kind} archive that can be read: {why}")


def member_name(raw: str, *, strict: bool = True) -> str | None:
    """A member's name as a letter's label: its base name alone, undecodable bytes as ``\\xNN``,
    no control characters; None for a member with no name (a directory's path).

    Raises:
        ProblemError: ``archive-unsafe-name``: ``raw`` is absolute or climbs.
    """
    segments = path_segments(raw)
    absolute = raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":")
    if strict and (absolute or ".." in segments):
        raise _unsafe(escape_name(raw)[:MAX_NAME])
    return label(escape_name(segments[-1])) or None


def is_letter(name: str, head: bytes) -> bool:
    """A member taken as a letter: a PDF by its bytes, or a visible ``.pdf``/``.txt`` file."""
    if name.startswith(".") or name.lower() == "__macosx":
        return False
    return head.lstrip()[:5] == b"%PDF-" or name.lower().endswith(LETTER_SUFFIXES)


class _Budget:
    """Bytes members may still inflate to, each and together."""

    def __init__(self, member_cap: int, total_cap: int) -> None:
        self.member_cap = member_cap
        self.left = total_cap
        self.total_cap = total_cap

    def declared(self, name: str, size: int) -> None:
        if size > self.member_cap:
            raise _too_large(f"member {name!r} ({_size(size)})", self.member_cap)
        if size > self.left:
            raise _too_large("the archive", self.total_cap)

    def read(self, name: str, stream: IO[bytes]) -> bytes:
        """The member's bytes, read in chunks and stopped as soon as a cap is passed."""
        blocks: list[bytes] = []
        size = 0
        while True:
            chunk = stream.read(_CHUNK)
            if not chunk:
                break
            size += len(chunk)
            if size > self.member_cap:
                raise _too_large(f"member {name!r}", self.member_cap)
            if size > self.left:
                raise _too_large("the archive", self.total_cap)
            blocks.append(chunk)
        self.left -= size
        return b"".join(blocks)


def _take(found: JobLetters, name: str | None, data: bytes) -> None:
    if name is None or not is_letter(name, data[:1024]):
        found.skipped += 1
    else:
        found.letters.append(Letter(name, data))


def _zip(body: bytes, max_members: int, budget: _Budget) -> JobLetters:
    try:
        archive = zipfile.ZipFile(io.BytesIO(body))
        infos = archive.infolist()
    except _UNREADABLE as exc:
        raise _bad("zip", type(exc).__name__) from None
    if len(infos) > max_members:
        raise _too_many(max_members)
    found = JobLetters()
    declared = 0
    for info in infos:  # every name and declared size first: nothing inflated yet
        member_name(_zip_name(info))
        declared += info.file_size
        budget.declared(escape_name(_zip_name(info)), info.file_size)
    if declared > budget.left:
        raise _too_large("the archive", budget.total_cap)
    for info in infos:
        name = member_name(_zip_name(info))
        mode = info.external_attr >> 16
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) and not stat.S_ISREG(mode):  # a link, a device (a type given)
            found.skipped += 1
            continue
        if info.flag_bits & 0x1:
            raise _bad("zip", f"member {name!r} is encrypted")
        try:
            with archive.open(info) as stream:
                data = budget.read(name or "", stream)
        except ProblemError:
            raise
        except _UNREADABLE as exc:
            raise _bad("zip", f"member {name!r}: {type(exc).__name__}") from None
        _take(found, name, data)
    return found


def _zip_name(info: zipfile.ZipInfo) -> str:
    """A zip member's name as its bytes say: UTF-8 when flagged, else the bytes as the file
    system would read them (surrogate escapes for what is not UTF-8)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    return raw.decode("utf-8", "surrogateescape")


def _members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    while True:
        try:
            member = archive.next()
        except _UNREADABLE as exc:
            raise _bad("tar", type(exc).__name__) from None
        if member is None:
            return
        yield member


def _tar(body: bytes, max_members: int, budget: _Budget) -> JobLetters:
    try:
        archive = tarfile.open(  # noqa: SIM115 - over bytes in memory: nothing to close
            fileobj=io.BytesIO(body), mode="r:*", encoding="utf-8", errors="surrogateescape"
        )
    except _UNREADABLE as exc:
        raise _bad("tar", type(exc).__name__) from None
    found = JobLetters()
    seen = 0
    # Members are read as they come (a compressed tar cannot be listed first): each one's
    # declared size is charged before the next header is sought past its data.
    for member in _members(archive):
        seen += 1
        if seen > max_members:
            raise _too_many(max_members)
        name = member_name(member.name)
        # charged whatever its type: the next header is sought past its declared data
        budget.declared(name or "", member.size)
        if not member.isfile():
            budget.left -= member.size
            found.skipped += not member.isdir()
            continue
        stream = archive.extractfile(member)
        if stream is None:
            found.skipped += 1
            continue
        try:
            data = budget.read(name or "", stream)
        except ProblemError:
            raise
        except _UNREADABLE as exc:
            raise _bad("tar", f"member {name!r}: {type(exc).__name__}") from None
        _take(found, name, data)
    return found


def _sniff(body: bytes) -> str | None:
    if body[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if body[:2] == b"\x1f\x8b" or body[:3] == b"BZh" or body[:6] == b"\xfd7zXZ\x00":
        return "tar"
    if body[257:262] == b"ustar":
        return "tar"
    return None


def job_letters(
    content_type: str | None,
    body: bytes,
    *,
    max_members: int,
    member_cap: int,
    total_cap: int,
) -> JobLetters:
    """The letters a ``POST /v1/jobs`` body carries, by its Content-Type.

    Raises:
        ProblemError: 415 for a body that is neither a form nor an archive; the codes above for
            a bad archive; ``no-letters`` (422) for one that holds no letter.
    """
    media = (content_type or "").split(";", 1)[0].strip().lower()
    budget = _Budget(member_cap, total_cap)
    kind = "form" if media == "multipart/form-data" else None
    if media in ZIP_TYPES:
        kind = "zip"
    elif media in TAR_TYPES:
        kind = "tar"
    elif media == "application/octet-stream":
        kind = _sniff(body)
        if kind is None:
            raise _bad("tar or zip", "it starts like neither")
    if kind == "zip":
        found = _zip(body, max_members, budget)
    elif kind == "tar":
        found = _tar(body, max_members, budget)
    elif kind == "form":
        assert content_type is not None
        parts = [p for p in form_parts(content_type, body) if p.filename is not None]
        if len(parts) > max_members:
            raise _too_many(max_members)
        found = JobLetters()
        for part in parts:
            assert part.filename is not None
            name = member_name(part.filename, strict=False)  # a form's names: labels only
            kind = "pdf" if part.data.lstrip()[:5] == b"%PDF-" else "text"
            _take(found, name or DEFAULT_NAMES[kind], part.data)
    else:
        raise ProblemError(
            "unsupported-media-type",
            f"Content-Type {media or '(none)'!r} is not a job: send multipart/form-data with "
            "one file per letter, or one tar, tar.gz or zip (application/x-tar, "
            "application/gzip, application/zip)",
        )
    if not found.letters:
        raise ProblemError(
            "no-letters",
            f"the job holds no letter (a .pdf or .txt file); {found.skipped} member(s) skipped",
        )
    return found
