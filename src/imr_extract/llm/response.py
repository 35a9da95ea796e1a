"""The model-facing schema, and its mapping onto the record contract.

The model fills ``LLMLetter``: flat, verbatim-string fields that a small model can follow, with
quotes for what it cannot copy as a value (the decision line, each guideline line). Nothing it
returns is trusted for position: ``to_letter_found`` *locates* every value in the letter, and a
value that is not found keeps no span (its provenance says ``absent``).

Invariant: an answer that is the letter object never breaks the letter. A value that breaks the
schema is re-asked about first (instructor's validation retries); if the last answer still
breaks it, ``salvage`` drops each bad value (an optional field to its default, a list element,
or the item or citation a required value belongs to) and keeps the rest, each drop a warning on
the record. Whatever survives maps onto values the record contract accepts.
"""

from __future__ import annotations

import copy
import json
import re
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ..locate import Location, locate, locate_near
from ..rules import LetterFound, PatientFound, ReviewerFound, parse_date
from ..rules.guidelines import CitationFound, GuidelineFound
from ..rules.items import ItemFound
from ..schema import CitationKind, Decision, Sex
from ..text import Found


def _none_if_blank(v: Any) -> Any:
    """Tolerate what small models do with a single string: null spelled out, or a list of parts."""
    if isinstance(v, list):
        parts = [str(x) for x in v if x is not None and _none_if_blank(str(x)) is not None]
        v = ", ".join(parts) if parts else None
    if isinstance(v, str) and v.strip().lower() in ("", "null", "none", "n/a"):
        return None
    return v


def _as_value(value: str) -> str:
    return " ".join(value.split()).rstrip(".:,; ")


def _not_blank(v: Any) -> Any:
    """A name the record needs (an item's request, a citation's source) must have a word."""
    if isinstance(v, str) and not _as_value(v):
        raise ValueError("is blank")
    return v


def _empty_if_none(v: Any) -> Any:
    """A quote given as null is no quote."""
    return "" if v is None else v


class LLMCitation(BaseModel):
    model_config = ConfigDict(extra="ignore")

    kind: Literal["MTUS", "Non-MTUS"]
    source: str = Field(description="Guideline name, verbatim, without a leading 'MTUS'.")
    sections: list[str] = Field(default_factory=list)
    pages: list[int] = Field(default_factory=list)

    _source = field_validator("source")(classmethod(lambda cls, v: _not_blank(v)))

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, v: Any) -> Any:
        if isinstance(v, str):
            folded = v.strip().lower().replace("_", "-").replace(" ", "-")
            return "Non-MTUS" if folded.startswith("non") else "MTUS" if folded == "mtus" else v
        return v


class LLMGuideline(BaseModel):
    model_config = ConfigDict(extra="ignore")

    quote: str = Field(default="", description="The whole guideline line, verbatim.")
    cited: bool = True
    outside_mtus: bool = False
    citations: list[LLMCitation] = Field(default_factory=list)

    _quote = field_validator("quote", mode="before")(classmethod(lambda cls, v: _empty_if_none(v)))


class LLMItem(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request: str = Field(min_length=1, description="The item's name, verbatim.")
    decision: Literal["upheld", "overturned"]
    decision_quote: str = Field(default="", description="Item name through decision, verbatim.")
    original_request: str | None = None
    authorized: str | None = None
    claims_administrator_guideline: LLMGuideline = Field(default_factory=LLMGuideline)
    imr_guideline: LLMGuideline = Field(default_factory=LLMGuideline)

    @field_validator("decision", mode="before")
    @classmethod
    def _decision(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else v

    _blank = field_validator("original_request", "authorized", mode="before")(
        classmethod(lambda cls, v: _none_if_blank(v))
    )
    _quote = field_validator("decision_quote", mode="before")(
        classmethod(lambda cls, v: _empty_if_none(v))
    )
    _request = field_validator("request")(classmethod(lambda cls, v: _not_blank(v)))


class LLMLetter(BaseModel):
    """What the model is asked to return for one letter (or one part of a long letter)."""

    model_config = ConfigDict(extra="ignore", title="IMRLetter")

    #: What ``salvage`` dropped from the answer, one line each (warnings on the record).
    _dropped: list[str] = PrivateAttr(default_factory=list)

    case_number: str | None = None
    date_assigned: str | None = None
    date_of_injury: str | None = None
    decision_date: str | None = None
    ur_denial_date: str | None = None
    application_received: str | None = None
    priority: str | None = None
    reviewer_licensure: list[str] = Field(default_factory=list)
    reviewer_specialty: str | None = None
    reviewer_subspecialty: str | None = None
    patient_age: int | None = None
    patient_sex: Literal["male", "female"] | None = None
    items: list[LLMItem] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _is_a_letter(cls, data: Any) -> Any:
        # Every field has a default, so a stray fragment (one item's object, pulled out of an
        # answer that is not valid JSON) would pass as an empty letter: "no decisions found"
        # instead of a re-ask. An answer must carry at least one of the letter's own keys.
        if isinstance(data, dict) and not set(data) & set(cls.model_fields):
            keys = ", ".join(sorted(map(str, data))[:6]) or "none"
            raise ValueError(
                f"the answer is not the letter object (its keys: {keys}); answer with one JSON "
                "object holding case_number, the dates, reviewer_*, patient_* and items"
            )
        return data

    @field_validator("patient_sex", mode="before")
    @classmethod
    def _sex(cls, v: Any) -> Any:
        return v.strip().lower() if isinstance(v, str) else _none_if_blank(v)

    _blank = field_validator(
        "case_number", "date_assigned", "date_of_injury", "decision_date", "ur_denial_date",
        "application_received", "priority", "reviewer_specialty", "reviewer_subspecialty",
        mode="before",
    )(classmethod(lambda cls, v: _none_if_blank(v)))  # fmt: skip

    @property
    def dropped(self) -> list[str]:
        return list(self._dropped)

    def to_cache(self) -> dict[str, Any]:
        """The answer as JSON for the cache, with what was dropped from it."""
        data = self.model_dump(mode="json")
        if self._dropped:
            data[DROPPED_KEY] = list(self._dropped)
        return data

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> LLMLetter:
        answer = cls.model_validate(data)
        answer._dropped = [str(x) for x in data.get(DROPPED_KEY) or []]
        return answer


#: The key a cached answer keeps its salvage notes under (not a field: the schema is unchanged).
DROPPED_KEY = "__dropped__"

# --------------------------------------------------------------------------- salvage

M = TypeVar("M", bound=LLMLetter)

#: Validations ``salvage`` makes of one answer at most (one drops every bad value it reports).
MAX_PASSES = 10


def answer_json(raw: str) -> dict[str, Any] | None:
    """The JSON object in a model's raw answer: bare, in a ```json fence, or amid prose."""
    text = raw.strip()
    candidates = [text]
    fence = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fence:
        candidates.append(fence.group(1))
    if "{" in text:
        candidates.append(text[text.index("{") : text.rindex("}") + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate, strict=False)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def salvage_raw(model: type[M], raw: str, context: dict[str, Any] | None = None) -> M | None:
    """``salvage`` of the JSON object in a raw answer; None when there is none to salvage."""
    data = answer_json(raw)
    if data is None:
        return None
    try:
        return salvage(model, data, context)
    except ValidationError:
        return None


def salvage(model: type[M], data: Any, context: dict[str, Any] | None = None) -> M:
    """``data`` validated as ``model``, each value that breaks the schema dropped with a note.

    An optional field's bad value is dropped (the field keeps its default, as if the model had
    left it out); a bad list element is dropped from its list; a required value (an item's
    request or decision, a citation's kind or source) takes the item or citation with it.

    Raises:
        ValidationError: the answer is not the letter object at all (or another whole-answer
            check failed): nothing to salvage.
    """
    data = copy.deepcopy(data)
    notes: list[str] = []
    for _ in range(MAX_PASSES):
        try:
            answer = model.model_validate(data, context=context)
        except ValidationError as exc:
            targets: dict[tuple[Any, ...], tuple[Any, Any, str]] = {}
            for error in exc.errors():
                target = _target(model, data, tuple(error["loc"]))
                if target is None:
                    raise
                at, container, key = target
                targets.setdefault(at, (container, key, _note(at, error)))
            # A value inside one that is dropped goes with it; later list elements go first,
            # so the positions of earlier ones hold.
            outer = [at for at in targets if not any(_within(at, o) for o in targets if o != at)]
            for at in sorted(outer, key=_order, reverse=True):
                container, key, _ = targets[at]
                del container[key]
            notes.extend(targets[at][2] for at in targets if at in outer)  # in schema order
            continue
        answer._dropped = notes
        return answer
    answer = model.model_validate(data, context=context)  # raises: too broken to salvage
    answer._dropped = notes
    return answer


def _note(at: tuple[Any, ...], error: Any) -> str:
    shown = json.dumps(error.get("input"), default=str)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return f"model answer: {_path(at)} dropped ({error['msg']}: {shown})"


def _within(at: tuple[Any, ...], outer: tuple[Any, ...]) -> bool:
    return len(at) > len(outer) and at[: len(outer)] == outer


def _order(at: tuple[Any, ...]) -> tuple[tuple[int, int, str], ...]:
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in at)


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _inner(annotation: Any) -> Any:
    """``list[X]`` -> ``X``; ``X | None`` -> ``X``; anything else as it is."""
    origin = get_origin(annotation)
    if origin is list:
        return get_args(annotation)[0]
    if origin in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return args[0] if len(args) == 1 else annotation
    return annotation


def _target(
    model: type[BaseModel], data: Any, loc: tuple[Any, ...]
) -> tuple[tuple[Any, ...], Any, Any] | None:
    """What to remove for an error at ``loc``: (its location, its container, its key) -- the
    value itself, or what holds it when it is required; None when ``loc`` is not in a field."""
    # Walk down: (container, key, model of the container when it is an object) at each level.
    steps: list[tuple[Any, Any, type[BaseModel] | None]] = []
    node: Any = data
    kind: Any = model
    for key in loc:
        is_model = isinstance(kind, type) and issubclass(kind, BaseModel)
        if isinstance(node, dict) and is_model and isinstance(key, str):
            field = kind.model_fields.get(key)
            if field is None:
                return None
            steps.append((node, key, kind))
            if key not in node:
                break  # a required value missing: what holds it goes
            node, kind = node[key], _inner(field.annotation)
        elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
            steps.append((node, key, None))
            node = node[key]  # ``kind`` is already the element's type
        else:
            break  # a location inside a value (a union's branch): drop the value itself
    for depth in range(len(steps) - 1, -1, -1):
        container, key, owner = steps[depth]
        if owner is None or (key in container and not owner.model_fields[key].is_required()):
            return loc[: depth + 1], container, key
    return None


# --------------------------------------------------------------------------- mapping

_DATE_FIELDS = {
    "assigned": "date_assigned",
    "injury": "date_of_injury",
    "decision": "decision_date",
    "ur_denial": "ur_denial_date",
    "application_received": "application_received",
}
_DECISION_WORD_RX = {
    Decision.UPHELD: re.compile(r"\bUpheld\b", re.IGNORECASE),
    Decision.OVERTURNED: re.compile(r"\bOverturned\b", re.IGNORECASE),
}


class _Locator:
    """Locates model values in one document, tagging each Found with the prompt reference."""

    def __init__(self, text: str, rule: str) -> None:
        self.text = text
        self.rule = rule

    def found(self, value: Any, loc: Location | None) -> Found[Any]:
        if loc is None:
            return Found(value, 0, 0, self.rule)  # no span: provenance says "absent"
        return Found(value, loc.start, loc.end, self.rule)

    def string(self, value: str | None, regions: list[tuple[int, int]]) -> Found[str] | None:
        if value is None or not _as_value(value):
            return None
        value = _as_value(value)
        return self.found(value, locate_near(self.text, value, regions))


def _region(loc: Location | None) -> list[tuple[int, int]]:
    return [(loc.start, loc.end)] if loc else []


def _guideline(
    g: LLMGuideline, loc: _Locator, item_region: list[tuple[int, int]]
) -> GuidelineFound:
    quote_loc = locate_near(loc.text, " ".join(g.quote.split()), item_region) if g.quote else None
    regions = _region(quote_loc) + item_region
    cited = loc.found(g.cited, quote_loc)
    outside = loc.found(g.outside_mtus, quote_loc)
    citations = []
    for c in g.citations:
        kind = CitationKind(c.kind)
        source = loc.string(c.source, regions)
        if source is None:  # a blank source (the schema refuses one; kept out all the same)
            continue
        kind_word = "Non-MTUS" if kind is CitationKind.NON_MTUS else "MTUS"
        kind_loc = locate_near(loc.text, kind_word, regions)
        src_region = [(source.start, source.end)] if source.end > source.start else []
        citations.append(
            CitationFound(
                kind=loc.found(kind, kind_loc),
                source=source,
                sections=[f for s in c.sections if (f := loc.string(s, regions)) is not None],
                pages=[
                    loc.found(p, locate_near(loc.text, str(p), src_region + regions))
                    for p in c.pages
                    if p >= 1
                ],
            )
        )
    return GuidelineFound(cited=cited, outside_mtus=outside, citations=citations)


def to_letter_found(
    answer: LLMLetter, text: str, rule: str, region: tuple[int, int] | None = None
) -> LetterFound:
    """Locate every value of a model answer in ``text``; ``region`` is the part the model saw."""
    loc = _Locator(text, rule)
    whole = [region] if region else []
    found = LetterFound(warnings=answer.dropped)
    found.case_number = loc.string(answer.case_number, whole)
    for name, attr in _DATE_FIELDS.items():
        raw = getattr(answer, attr)
        value = parse_date(raw) if raw else None
        if value is not None:
            found.dates[name] = loc.found(value, locate_near(text, raw.strip(), whole))
    found.priority = loc.string(answer.priority, whole)
    found.reviewer = ReviewerFound(
        licensure=[f for s in answer.reviewer_licensure if (f := loc.string(s, whole))],
        specialty=loc.string(answer.reviewer_specialty, whole),
        subspecialty=loc.string(answer.reviewer_subspecialty, whole),
    )
    patient = PatientFound()
    age = answer.patient_age
    if age is not None and 0 < age <= 120:
        at = locate_near(text, f"{age} year", whole) or locate_near(text, f"{age}-year", whole)
        span = (at.start, at.start + len(str(age))) if at else (0, 0)
        patient.age = Found(age, *span, rule)
    if answer.patient_sex is not None:
        sex = Sex(answer.patient_sex)
        patient.sex = loc.found(sex, locate_near(text, sex.value, whole))
    found.patient = patient

    search_from = region[0] if region else 0
    limit = region[1] if region else len(text)
    for item in answer.items:
        bounds = [(search_from, limit)]
        quote_text = " ".join(item.decision_quote.split())
        quote = locate_near(text, quote_text, bounds) if quote_text else None
        request = loc.string(item.request, _region(quote) + bounds)
        if request is None:
            continue
        located = request.end > request.start
        if quote is not None:
            start, word_end = quote.start, quote.end
        elif located:
            start, word_end = request.start, min(limit, request.end + 40)
        else:
            start, word_end = search_from, search_from
        word = _DECISION_WORD_RX[Decision(item.decision)].search(text, start, word_end)
        decision = Found(Decision(item.decision), *(word.span() if word else (0, 0)), rule)
        item_region = [(start, min(len(text), start + 4000))]
        found.items.append(
            ItemFound(
                request=request,
                decision=decision,
                original_request=loc.string(item.original_request, item_region),
                authorized=loc.string(item.authorized, item_region),
                claims_administrator_guideline=_guideline(
                    item.claims_administrator_guideline, loc, item_region
                ),
                imr_guideline=_guideline(item.imr_guideline, loc, item_region),
                rationale=None,
                start=start,
                end=start,
            )
        )
        if word is not None:
            search_from = word.end()
    return found


class VerbatimLLMLetter(LLMLetter):
    """``LLMLetter`` that rejects item values not found in the letter, so the model is re-asked.

    Opt-in (``LLMConfig.verbatim_reask``): each re-ask costs a full answer, and a small model may
    never converge; the default path locates values after the fact instead.
    """

    @model_validator(mode="after")
    def _items_are_verbatim(self, info: ValidationInfo) -> VerbatimLLMLetter:
        text = (info.context or {}).get("letter")
        if not text:
            return self
        missing = [
            f"items[{i}].{name} = {value!r}"
            for i, item in enumerate(self.items)
            for name, value in (
                ("request", item.request),
                ("original_request", item.original_request),
                ("authorized", item.authorized),
            )
            if value and locate(text, _as_value(value), fuzzy=False) is None
        ]
        if missing:
            raise ValueError(
                "these values are not in the letter; copy them verbatim from it: "
                + "; ".join(missing)
            )
        return self
