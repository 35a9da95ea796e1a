"""The hybrid backend: the rules first; the model only for what they could not verify.

For each letter:

1. The rules read it and ``verify`` checks what they found.
2. ``plan_routing`` decides what the model must see: nothing, when every expected field is there
   and verified (every known-layout letter so far); the sections holding the fields that are
   missing, unverified or contradicted (the header block, the reviewer's credentials, the case
   summary, one item's text); or the whole letter, when the layout is novel (unknown, or its
   coverage is below ``verify.NOVEL_LAYOUT_THRESHOLD``), the rules found no item, or the census
   found decisions the rules' items do not hold.
3. The model's answer is located and verified like any other, and ``merge`` takes each field
   by precedence (verified rules > verified model > unverified, flagged). The merged record is
   verified once more, so every status describes the value that was finally kept.

A model that fails (timeout, 429/5xx after retries, garbage, cut-off answer) costs the letter
nothing it had: the rules' record stands, with the failure in ``extractor.model_error`` and a
warning. Only a letter the rules cannot read at all then fails, naming both causes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from . import layouts
from .assemble import refuse_several_letters, verified_record
from .errors import ImrExtractError, LLMError, NoDecisionsError
from .ingest import Document
from .layouts._regions import find_regions
from .merge import merge
from .redact import redact
from .schema import Backend, ExtractorInfo, LetterRecord, Method, Status, Usage, schema_hash
from .verify import expected_paths, verify

if TYPE_CHECKING:
    from .llm.extract import LLMExtractor

#: Sections closer than this are sent as one (the text between them is cheap context).
JOIN_GAP_CHARS = 300
#: When the sections to send cover this share of the letter, the whole letter is sent instead.
WHOLE_LETTER_SHARE = 0.6

_ITEM_RX = re.compile(r"^items\[(\d+)\]")


class Route(StrEnum):
    NONE = "none"
    SECTIONS = "sections"
    LETTER = "letter"


@dataclass(frozen=True)
class Routing:
    """What the model is sent for one letter, and why."""

    route: Route
    regions: tuple[tuple[int, int], ...] = ()
    reasons: tuple[str, ...] = ()
    #: The fields the sections were sent for: the model's answer supplies only these (a model
    #: sent one item's text knows nothing of the reviewer, and must not say anything of it).
    paths: tuple[str, ...] = ()


def _item_blocks(record: LetterRecord, n: int) -> list[tuple[int, int] | None]:
    """Each rules item's text: from its first span to the next item's first span."""
    starts: list[int | None] = []
    for i in range(len(record.items)):
        spans = [
            s.start
            for key in ("request", "original_request", "authorized")
            if (p := record.provenance.get(f"items[{i}].{key}")) is not None
            for s in p.spans
        ]
        starts.append(min(spans) if spans else None)
    blocks: list[tuple[int, int] | None] = []
    for i, start in enumerate(starts):
        if start is None:
            blocks.append(None)
            continue
        later = [s for s in starts[i + 1 :] if s is not None and s > start]
        blocks.append((start, min(later) if later else n))
    return blocks


def _join(regions: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(regions):
        if out and start - out[-1][1] <= JOIN_GAP_CHARS:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def plan_routing(record: LetterRecord, text: str) -> Routing:
    """What the model must see to complete ``record`` (a verified rules record of ``text``)."""
    v = record.verification
    assert v is not None, "plan_routing needs a verified record"
    if not record.items:
        return Routing(Route.LETTER, ((0, len(text)),), ("the rules found no decided item",))
    if v.novel_layout:
        why = (
            f"layout {record.layout!r} is unknown"
            if record.layout == "unknown"
            else f"coverage {v.coverage:.2f} is below the novel-layout threshold"
        )
        return Routing(Route.LETTER, ((0, len(text)),), (why,))
    if v.unaccounted_decisions:
        # The census found decisions no item holds: the rules missed items, so the model reads
        # the whole letter (its items are then merged with the rules', paired by request).
        why = f"the letter states {v.unaccounted_decisions} decision(s) the rules did not read"
        return Routing(Route.LETTER, ((0, len(text)),), (why,))

    statuses = {p: prov.status for p, prov in record.provenance.items()}
    needed = [p for p, s in statuses.items() if s is not Status.VERIFIED]
    for path in expected_paths(record):
        present = path in statuses or any(p.startswith(path + "[") for p in statuses)
        if not present:
            needed.append(path)
    if not needed:
        return Routing(Route.NONE)

    r = find_regions(text)
    blocks = _item_blocks(record, len(text))
    regions: list[tuple[int, int]] = []
    reasons: list[str] = []
    for path in needed:
        m = _ITEM_RX.match(path)
        if m:
            block = blocks[int(m.group(1))] if int(m.group(1)) < len(blocks) else None
            region = block or (r.decisions, len(text))
        elif path.startswith("reviewer"):
            region = r.credentials
        elif path.startswith("patient"):
            region = r.summary
        else:
            region = (0, r.header_end)
        if region[1] > region[0]:
            regions.append(region)
            reasons.append(f"{path}: {statuses.get(path, 'missing')}")
    joined = _join(regions)
    if sum(e - s for s, e in joined) >= WHOLE_LETTER_SHARE * len(text):
        return Routing(Route.LETTER, ((0, len(text)),), tuple(reasons))
    return Routing(Route.SECTIONS, tuple(joined), tuple(reasons), tuple(needed))


def rules_record(doc: Document) -> LetterRecord:
    """The verified rules record of ``doc``, with or without items (never raises for that;
    raises ``SeveralLettersError`` for a text that holds several letters)."""
    refuse_several_letters(doc)
    layout, _score = layouts.detect(doc.text)
    found = layout.read(doc)
    if not layout.dedicated_reader:
        found.warnings.append(
            f"layout {layout.name!r} has no dedicated reader; generic rules were used"
        )
    return verified_record(doc, layout.name, found, Method.RULES)


def rules_standing(rules: LetterRecord, exc: ImrExtractError, info: ExtractorInfo) -> LetterRecord:
    """The rules' record, kept because the model failed with ``exc``; the failure recorded.

    Raises:
        NoDecisionsError: the rules found no item either, naming both causes.
    """
    failure = redact(f"{exc.code}: {exc.cause}")  # the endpoint's words: no key in the record
    if not rules.items:
        raise NoDecisionsError(
            exc.source,
            f"the rules found no decisions (layout {rules.layout!r}) and the model failed "
            f"({failure})",
        ) from exc
    info = info.model_copy(
        update={
            "attempts": getattr(exc, "attempts", 0),
            "usage": getattr(exc, "usage", None) or Usage(),
            "model_error": failure,
        }
    )
    warning = f"model failed ({failure}); the rules' values stand"
    return rules.model_copy(update={"extractor": info, "warnings": [*rules.warnings, warning]})


@dataclass
class HybridExtractor:
    """Callable ``Document -> LetterRecord``: rules, then the model where they fall short."""

    llm: LLMExtractor
    #: ``Route.LETTER`` sends every letter whole, whatever the rules found (to compare, or to
    #: have the model's value beside every rule value in ``alternatives``); None decides per
    #: letter with ``plan_routing``.
    force: Route | None = None

    def __call__(self, doc: Document) -> LetterRecord:
        name = doc.path or doc.name
        rules = rules_record(doc)
        routing = plan_routing(rules, doc.text)
        if self.force is Route.LETTER:
            routing = Routing(Route.LETTER, ((0, len(doc.text)),), ("sent whole on request",))
        info = ExtractorInfo(
            backend=Backend.HYBRID, schema_hash=schema_hash(), routed=routing.route
        )
        if routing.route is Route.NONE:
            if not rules.items:  # pragma: no cover - plan_routing sends such letters whole
                raise NoDecisionsError(name, "no decisions found")
            return rules.model_copy(update={"extractor": info})

        try:
            if routing.route is Route.LETTER:
                found, run = self.llm.found(doc)
            else:
                found, run = self.llm.found_in(doc, list(routing.regions))
        except LLMError as exc:
            return rules_standing(
                rules, exc, info.model_copy(update={"model": self.llm.config.model})
            )

        llm_info = self.llm.info(run)
        model_record = verified_record(doc, rules.layout, found, Method.LLM, llm_info)
        merged = merge(
            rules,
            model_record,
            self.llm.info(run, Backend.HYBRID, routed=routing.route),
            only=routing.paths if routing.route is Route.SECTIONS else None,
        )
        merged = verify(merged, doc.text, doc.page_of)
        if not merged.items:
            err = NoDecisionsError(
                name, f"neither the rules (layout {rules.layout!r}) nor the model found a decision"
            )
            err.usage = run.usage  # the answer still cost tokens: the run summary counts them
            raise err
        return merged
