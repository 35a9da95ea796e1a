"""The record contract: what one extracted IMR letter looks like.

Every module imports from here and nothing here imports from the rest of the package.

The data fields use the names and shapes of the gold annotations (``tests/data/gold/README.md``):
plain values, so a consumer who wants only the data reads plain JSON. Everything that says where a
value came from lives beside the data, in ``LetterRecord.provenance``, keyed by field path
(``items[0].imr_guideline.citations[1].sections[0]``), never wrapped around the value itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, PlainSerializer

from .names import escape_name, unescape_name

SCHEMA_VERSION = "1"


class _Strict(BaseModel):
    # strict: no silent coercion ("3" is not 3); forbid: a misspelt key is an error, not dropped.
    model_config = ConfigDict(strict=True, extra="forbid")


class Decision(StrEnum):
    """The IMR outcome for one disputed item."""

    UPHELD = "upheld"  # the denial stands: not medically necessary
    OVERTURNED = "overturned"  # the treatment is medically necessary


class CitationKind(StrEnum):
    MTUS = "MTUS"
    NON_MTUS = "Non-MTUS"


class Sex(StrEnum):
    FEMALE = "female"
    MALE = "male"


class Method(StrEnum):
    """Which extractor produced a value."""

    RULES = "rules"
    LLM = "llm"
    EXTERNAL = "external"  # another tool's value, located in the letter by ``verify_external``


class MatchKind(StrEnum):
    """How a value relates to the text at its span.

    ``exact``: the span's text is the value. ``normalised``: equal once line breaks and runs of
    spaces are folded and surrounding punctuation dropped. ``derived``: the value is computed from
    the span (a date reformatted, a page range expanded, a flag read from a phrase). ``fuzzy``: a
    close but inexact match (LLM quotes). ``absent``: no span supports the value.
    """

    EXACT = "exact"
    NORMALISED = "normalised"
    DERIVED = "derived"
    FUZZY = "fuzzy"
    ABSENT = "absent"


class Status(StrEnum):
    """Whether the letter supports a field's value (set by ``imr_extract.verify``).

    ``verified``: found in the letter at its span and no cross-check fails. ``unverified``: not
    found in the letter (or only loosely), so nothing but the extractor vouches for it.
    ``contradicted``: a cross-check fails: the letter says otherwise (a page missing from the
    item's own guideline line, a decision word not beside the item's request, ...).
    """

    VERIFIED = "verified"
    UNVERIFIED = "unverified"
    CONTRADICTED = "contradicted"


class CheckResult(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    NOT_APPLICABLE = "not_applicable"  # nothing to check (no such field) or no anchor in the text
    #: The check could not decide (a layout it cannot pair, a boundary it does not know): the
    #: fields it bears on stay unverified, with the check's detail as the reason.
    INCONCLUSIVE = "inconclusive"


PageNumber = Annotated[int, Field(ge=1)]
Score = Annotated[float, Field(ge=0.0, le=1.0)]


class Citation(_Strict):
    kind: CitationKind
    source: str = Field(min_length=1, description="Guideline name, without a leading 'MTUS'.")
    sections: list[str] = Field(default_factory=list)
    pages: list[PageNumber] = Field(
        default_factory=list, description="Cited pages as integers, ranges expanded."
    )


class Guideline(_Strict):
    """One guideline line ("Claims Administrator guideline:" or "MAXIMUS guideline:")."""

    cited: bool = Field(description="False when the line says no medical evidence was cited.")
    outside_mtus: bool = Field(
        description="True when the decision rests on recommendations outside the MTUS."
    )
    citations: list[Citation] = Field(default_factory=list)


class Item(_Strict):
    """One disputed item/service and its decision."""

    request: str = Field(
        min_length=1,
        description="The item as the decision line names it; for a partly authorised request, "
        "the remaining IMR-eligible portion.",
    )
    decision: Decision
    original_request: str | None = None
    authorized: str | None = None
    claims_administrator_guideline: Guideline
    imr_guideline: Guideline
    rationale: str | None = Field(default=None, description="The decision rationale text.")


class Dates(_Strict):
    assigned: dt.date | None = None
    injury: dt.date | None = None
    decision: dt.date | None = None
    ur_denial: dt.date | None = None
    application_received: dt.date | None = None


class Reviewer(_Strict):
    licensure: list[str] = Field(default_factory=list, description="States, in printed order.")
    specialty: str | None = None
    subspecialty: str | None = None


class Patient(_Strict):
    age: Annotated[int, Field(ge=0, le=120)] | None = None
    sex: Sex | None = None


class Span(_Strict):
    """A half-open character range ``[start, end)`` into the letter's normalised text."""

    start: int = Field(ge=0)
    end: int = Field(ge=0)
    page: PageNumber = Field(description="1-based page on which the span starts.")


class Provenance(_Strict):
    """Where one field's value came from."""

    method: Method
    rule: str | None = Field(
        default=None, description="Rule id (rules) or prompt name@hash (llm) that produced it."
    )
    match: MatchKind
    spans: list[Span] = Field(default_factory=list)
    score: Score | None = Field(
        default=None, description="Similarity of value and span text, for fuzzy matches."
    )
    status: Status = Field(
        default=Status.UNVERIFIED, description="Verification status (see imr_extract.verify)."
    )
    failed_checks: list[str] = Field(
        default_factory=list, description="Names of the cross-checks this value fails."
    )


class Check(_Strict):
    """One cross-check of the record against the letter."""

    name: str = Field(description="The check's name, e.g. 'pages_in_guideline_line'.")
    result: CheckResult
    item: int | None = Field(default=None, description="Item index, for per-item checks.")
    paths: list[str] = Field(default_factory=list, description="The fields it bears on.")
    detail: str = ""


class Verification(_Strict):
    """What the verifier found: field statuses counted, every check, and layout coverage."""

    verified: int = Field(default=0, ge=0)
    unverified: int = Field(default=0, ge=0)
    contradicted: int = Field(default=0, ge=0)
    coverage: Score = Field(
        description="Share of the fields expected of this layout that are present and verified."
    )
    expected_fields: int = Field(ge=0)
    novel_layout: bool = Field(
        description="Coverage below the threshold or layout unknown: a form the rules do not know."
    )
    complete: bool = Field(
        default=False,
        description="Every decision the letter states (by an independent census) is held by an "
        "item of the record, every item is backed by one, and the text holds one letter.",
    )
    unaccounted_decisions: int = Field(
        default=0,
        ge=0,
        description="Decisions the letter states that no item of the record holds.",
    )
    checks: list[Check] = Field(default_factory=list)


class Alternative(_Strict):
    """The other extractor's value for a field, where the two disagreed (hybrid records)."""

    method: Method
    value: JsonValue
    status: Status
    spans: list[Span] = Field(default_factory=list)


#: A file name or path: in memory with surrogate escapes for bytes that are not UTF-8 (it opens
#: its file); in JSON with each such byte written ``\\xNN`` (see ``names``), read back the same.
FileName = Annotated[
    str, AfterValidator(unescape_name), PlainSerializer(escape_name, when_used="json")
]


class SourceInfo(_Strict):
    """What was read, and how."""

    path: FileName | None = None
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    media: str = Field(description="'pdf' or 'text'.")
    text_engine: str = Field(description="pypdfium2, pypdf, or the text encoding used.")
    pages: int = Field(ge=1)
    chars: int = Field(ge=0)


class Backend(StrEnum):
    """Which pipeline produced a record."""

    RULES = "rules"
    LLM = "llm"
    HYBRID = "hybrid"  # rules first; the model only for what the rules could not verify
    EXTERNAL = "external"  # made by another tool, verified here (``imr-extract verify``)


class Usage(_Strict):
    """Model usage for one letter, summed over every request and attempt (reasks included)."""

    requests: int = Field(default=0, ge=0)
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            requests=self.requests + other.requests,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )


class ExtractorInfo(_Strict):
    """How the record was produced: enough to reproduce it or to know it is stale."""

    backend: Backend
    schema_hash: str
    model: str | None = None
    mode: str | None = None
    prompt: str | None = Field(default=None, description="Prompt name@content-hash (llm).")
    attempts: int = Field(default=0, ge=0, description="Model calls made, reasks included.")
    chunks: int = Field(default=0, ge=0, description="Pieces a long letter was split into.")
    usage: Usage = Field(default_factory=Usage)
    cost_usd: float | None = Field(default=None, description="From the configured price table.")
    cached: bool = Field(default=False, description="Answered from the on-disk cache (no call).")
    routed: str | None = Field(
        default=None,
        description="Hybrid: what was sent to the model: 'none', 'sections' or 'letter'.",
    )
    model_error: str | None = Field(
        default=None,
        description="Hybrid: why the model's answer could not be used (the rules' values stand).",
    )


class LetterRecord(_Strict):
    """One extracted IMR final determination letter."""

    letter: FileName = Field(description="The file name of the letter.")
    case_number: str | None = None
    dates: Dates = Field(default_factory=Dates)
    priority: str | None = None
    reviewer: Reviewer = Field(default_factory=Reviewer)
    patient: Patient = Field(default_factory=Patient)
    items: list[Item] = Field(default_factory=list)
    layout: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The layout the letter was read as (see imr_extract.layouts), or 'unknown'.",
    )
    provenance: dict[str, Provenance] = Field(
        default_factory=dict, description="Per-field provenance keyed by field path."
    )
    verification: Verification | None = Field(
        default=None, description="Statuses, cross-checks and coverage (None: not verified)."
    )
    alternatives: dict[str, Alternative] = Field(
        default_factory=dict,
        description="Hybrid: the value the other extractor gave, by field path, where it differed.",
    )
    source: SourceInfo
    extractor: ExtractorInfo
    warnings: list[str] = Field(default_factory=list)


# The fields a consumer compares against gold; everything else on LetterRecord is metadata.
DATA_FIELDS: tuple[str, ...] = (
    "letter",
    "case_number",
    "dates",
    "priority",
    "reviewer",
    "patient",
    "items",
)


def json_schema() -> dict[str, Any]:
    """The JSON Schema of ``LetterRecord``, as exported to ``schemas/letter.schema.json``."""
    schema = LetterRecord.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://imr-extract.invalid/schemas/letter.v{SCHEMA_VERSION}.json"
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


@functools.cache
def schema_hash() -> str:
    """A short content hash of the schema; it changes whenever the contract changes."""
    return hashlib.sha256(json_schema_text().encode()).hexdigest()[:12]
