"""Verification: ground every value in the letter, then cross-check the record against it.

Whichever extractor produced a record (rules, model, or a merge of both), ``verify`` decides from
the letter's text alone how far each value can be trusted, and records it in the value's
provenance entry:

1. **Grounding.** Every span must lie in the text and hold its value (``grounding.span_holds``);
   a string that only nearly matches gets a ``fuzzy`` match with a similarity ``score``. A value
   with no span, or whose span does not hold it, is not grounded.
2. **Cross-checks**, each a named ``Check`` per item or per letter. They answer the questions a
   careful reader asks: is the decision word printed right after *this* item's request? does
   the rationale's closing "is (not) medically necessary" agree with it? is every cited page,
   section and source in *this* item's own guideline line? are there as many decision lines as
   items? are the header dates in order? are the partial-authorisation parts in the item's
   sentence? is every decision stated where the form states them (one decisions heading, no
   item-shaped line or decision sentence in a summary or a rationale: ``census`` leaves those
   out of the accounting, so an item resting on one is backed by nothing)?
3. **Status.** ``contradicted`` when a check fails; ``verified`` when grounded and, for values
   that belong to an item, when the check that ties them to their item passed; else
   ``unverified``. A value found somewhere in the letter but not where its item is (a model's
   page copied from another item's line, the decision of an invented item) is therefore never
   verified.
4. **Coverage**: the share of the fields the layout is expected to print (``Layout.
   expected_fields``, plus request, decision and both guideline lines per item) that are present
   and verified. Below ``NOVEL_LAYOUT_THRESHOLD`` (or with no known layout) the letter is
   reported as a novel layout; the hybrid backend sends such letters to the model.

The item frames (where each item's request, decision line, guideline lines and rationale stand)
are rebuilt here from the record's own spans and the letter's labels, not taken from the rules,
so that model output is checked by the same standard as rule output.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import itertools
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter

from .. import layouts
from ..forms import (
    AUTHORIZED_BETWEEN,
    CA_LABEL_RX,
    IMR_LABEL_RX,
    ITEM_INTRO_RX,
    ORIGINAL_FOLLOWED_BY,
    PARTIAL_LEAD_RX,
    RATIONALE_LABEL_RX,
    REMAINING_LEAD_RX,
)
from ..locate import locate
from ..schema import (
    Check,
    CheckResult,
    Decision,
    Guideline,
    Item,
    LetterRecord,
    MatchKind,
    Status,
    Verification,
)
from ..text import fold
from ..vocabulary import respaced
from .census import Accounting, Census, ItemAnchor, Statement, account, take_census, tokens
from .citations import Verdict, read_line
from .conclusion import Conclusion, last_conclusion
from .credentials import judge_age, judge_sex, judge_state, judge_whole_slot, state_in_slot
from .grounding import PROVENANCE_MAP, match_kind, span_holds, value_at
from .labels import Pairing, label_hits, pair, prose_date
from .labels import parse_date as parse_printed_date

#: A string that is not at its span as printed is still accepted when it has the span's words
#: (case, spacing and hyphenation aside) and at or above this similarity (difflib ratio of the
#: folded span text and the value): a slip, not another value.
FUZZY_VERIFIED = 0.9
#: Below this coverage a letter is reported as a novel layout.
NOVEL_LAYOUT_THRESHOLD = 0.8
#: Per-item fields the coverage score expects, besides the layout's letter-level fields.
ITEM_EXPECTED_FIELDS = (
    "request",
    "decision",
    "claims_administrator_guideline.cited",
    "imr_guideline.cited",
)
#: Dates that must not decrease, in the order a case moves through UR and IMR.
DATE_ORDER = ("injury", "ur_denial", "application_received", "assigned", "decision")

# What may stand between a request and the colon of its decision statement: "X: Upheld",
# "X is: Upheld", "X:\nUpheld", and a decision label on the next line ("X\nDetermination: Upheld").
_DECISION_GAP_RX = re.compile(
    r"\s*(?:\bis\b\s*)?(?:(?:Determination|Decision)\s*)?(?=:)", re.IGNORECASE
)
# A request that carries a form's label ("Item 1: X", "X Determination") was cut in the wrong place.
_LABEL_IN_REQUEST_RX = re.compile(
    r"^\s*(?:Item|Issue|Request)\s*#?\s*\d+\s*[:.)]|\b(?:Determination|Decision)\s*$",
    re.IGNORECASE,
)
_CHECKS = TypeAdapter(list[Check])
# A hyphen with a word (or number) on one side and a space on the other, on one line.
_ALPHA_RX = re.compile(r"[A-Za-z]+")
# Two letters-only words side by side, on one line or across one line break (overlapping
# pairs: each word with the next).
_PAIR_RX = re.compile(
    r"(?<![A-Za-z'-])([A-Za-z]+)(?:[ \t]+|[ \t]*\n[ \t\f]*)(?=([A-Za-z]+)(?![A-Za-z'-]))"
)
_PADDED_HYPHEN_RX = re.compile(r"\w-[ \t]+\w|\w[ \t]+-\w")
_DOMAIN_RX = re.compile(r"\.(?:com|org|net|gov|edu|html?)\b")
# A word hyphenated at the end of a line, its other half on the next line.
_BROKEN_WORD_RX = re.compile(r"\w+-[ \t]*\n[ \t\f]*[a-z]\w*")
_GUIDELINES = ("claims_administrator_guideline", "imr_guideline")
#: Letter-level values printed beside a label (or, for dates, in a sentence).
_HEADER_PATHS = ("case_number", "priority", *(f"dates.{n}" for n in DATE_ORDER))
_CASE_NUMBER_RX = re.compile(r"\bCM\d{2}-\d{5,8}\b")


# --- grounding -----------------------------------------------------------------------------------


def similarity(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def _ground(path: str, value: Any, entry: dict[str, Any], text: str) -> bool:
    """Whether every span of ``entry`` holds ``value``; sets a fuzzy match's kind and score."""
    spans = entry["spans"]
    if value is None or not spans:
        entry["match"] = MatchKind.ABSENT
        return False
    for span in spans:
        start, end = span["start"], span["end"]
        if not 0 <= start < end <= len(text):
            return False
        raw = text[start:end]
        if span_holds(path, value, raw):
            if entry["match"] is MatchKind.ABSENT:  # a span a check has just found for it
                entry["match"] = match_kind(text, start, end, value)
            continue
        if not isinstance(value, str):
            return False
        score = similarity(fold(raw), value)
        entry["match"] = MatchKind.FUZZY
        entry["score"] = round(score, 3)
        # Only a slip of case, spacing or hyphenation: the same words. A value a word shorter
        # or longer than its span scores high and is another value (a truncated request).
        if score < FUZZY_VERIFIED or tokens(raw) != tokens(value):
            return False
    return True


# --- item frames ---------------------------------------------------------------------------------


@dataclass
class ItemFrame:
    """Where one item of the record stands in the letter."""

    index: int
    start: int  # the item's first span (its original request, or its request)
    end: int  # where the next item starts
    request_end: int | None = None
    decision: Statement | None = None  # the decision statement printed right after the request
    lines: dict[str, tuple[int, int]] = field(default_factory=dict)  # guideline lines by field
    rationale: tuple[int, int] | None = None

    @property
    def sentence(self) -> tuple[int, int]:
        """The item's own sentence(s): from its start to its decision word."""
        end = self.decision.word[0] if self.decision else (self.request_end or self.end)
        return self.start, end


def _first_start(prov: dict[str, dict[str, Any]], path: str) -> int | None:
    entry = prov.get(path)
    if entry and entry["spans"]:
        return min(s["start"] for s in entry["spans"])
    return None


def _statement_after(
    text: str, by_anchor: dict[int, Statement], end: int, limit: int
) -> Statement | None:
    """The census's colon statement whose colon follows ``end`` with only "is" or a decision
    label between (and whose word lies before ``limit``)."""
    m = _DECISION_GAP_RX.match(text, end, limit)
    if m is None:
        return None
    st = by_anchor.get(m.end())
    return st if st is not None and st.word[1] <= limit else None


# --- checks --------------------------------------------------------------------------------------


@dataclass
class _Checker:
    record: LetterRecord
    prov: dict[str, dict[str, Any]]
    text: str
    values: dict[str, Any]
    page_of: Callable[[int], int]
    #: path -> whether its spans hold its value (kept apart from the entries, which are output)
    grounded: dict[str, bool]
    census: Census
    checks: list[dict[str, Any]] = field(default_factory=list)  # Check fields, validated once
    #: path -> the checks that tie it to its item and passed (needed for item values' status)
    passed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    failed: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: path -> the inconclusive checks that keep it unverified
    doubted: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    #: colon statements by the offset of their colon
    by_anchor: dict[int, Statement] = field(default_factory=dict)
    accounting_done: bool = False
    unaccounted: int = 0
    unaccounted_citations: int = 0
    several_letters: bool = False
    #: The letter's structure is not what its form prints (a second decisions heading, a
    #: decision stated where the form states none): the record is never complete.
    structure_faked: bool = False

    def add(
        self,
        name: str,
        result: CheckResult,
        paths: Iterable[str],
        detail: str = "",
        item: int | None = None,
    ) -> None:
        prov = self.prov
        paths = [p for p in paths if p in prov]
        self.checks.append(
            {"name": name, "result": result, "item": item, "paths": paths, "detail": detail}
        )
        if result is CheckResult.PASSED:
            target = self.passed
        elif result is CheckResult.FAILED:
            target = self.failed
        elif result is CheckResult.INCONCLUSIVE:
            target = self.doubted
        else:
            return
        for p in paths:
            target[p].add(name)

    def item_frames(self) -> list[ItemFrame]:
        """A frame per item whose request is grounded, in text order (others get none).

        A request may be placed on an earlier echo of its words (a model's request is located
        at its first occurrence, perhaps in the case summary); the request is where its
        decision word follows it, so such a request moves to the first occurrence that is.
        """
        text, prov = self.text, self.prov
        self.by_anchor = {s.anchor: s for s in self.census.statements if s.kind == "colon"}
        anchors: list[tuple[int, int, int]] = []  # (start, index, request end)
        claimed: set[int] = set()
        for i, item in enumerate(self.record.items):
            path = f"items[{i}].request"
            req = prov.get(path)
            if not req or not req["spans"] or not self.grounded.get(path):
                continue
            req_end = max(s["end"] for s in req["spans"])
            m = _statement_after(text, self.by_anchor, req_end, len(text))
            if m is None or m.word[0] in claimed:
                moved = self._relocate_request(path, item.request, claimed)
                if moved is not None:
                    req_end, m = moved
            if m is not None:
                claimed.add(m.word[0])
            starts = [
                s
                for p in ("request", "original_request", "authorized")
                if (s := _first_start(prov, f"items[{i}].{p}")) is not None
            ]
            anchors.append((min(starts), i, req_end))
        anchors.sort()
        frames = []
        for k, (start, i, req_end) in enumerate(anchors):
            end = next((a[0] for a in anchors[k + 1 :] if a[0] > req_end), len(text))
            frame = ItemFrame(i, start, end, req_end)
            m = _statement_after(text, self.by_anchor, req_end, end)
            frame.decision = m
            after = m.word[1] if m else req_end
            ca = CA_LABEL_RX.search(text, after, end)
            imr = IMR_LABEL_RX.search(text, ca.end() if ca else after, end)
            labelled = imr or ca
            rat = RATIONALE_LABEL_RX.search(text, labelled.end() if labelled else after, end)
            rat_start = rat.start() if rat else end
            if ca:
                frame.lines[_GUIDELINES[0]] = (ca.end(), imr.start() if imr else rat_start)
            if imr:
                frame.lines[_GUIDELINES[1]] = (imr.end(), rat_start)
            if rat:
                frame.rationale = (rat.end(), end)
            frames.append(frame)
        return frames

    def _relocate_request(
        self, path: str, request: str, claimed: set[int]
    ) -> tuple[int, Statement] | None:
        pos = 0
        while (loc := locate(self.text, request, pos, fuzzy=False)) is not None:
            m = _statement_after(self.text, self.by_anchor, loc.end, len(self.text))
            if m is not None and m.word[0] not in claimed:
                self._reanchor(path, loc.start, loc.end)
                return loc.end, m
            pos = loc.end
        return None

    def run(self) -> None:
        frames = self.item_frames()
        for frame in frames:
            item = self.record.items[frame.index]
            self.decision_beside_request(frame, item)
            self.request_fills_block(frame, item)
            self.rationale_agrees(frame, item)
            self.partial_authorization(frame, item)
            for g in _GUIDELINES:
                self.guideline_line(frame, g, getattr(item, g))
            if item.rationale is not None:
                self.rationale_in_item(frame)
        self.census_accounting(frames)
        self.header_values_beside_labels()
        self.dates_in_order()
        self.credentials_and_patient()
        self.extractors_agree()
        self.no_page_furniture()
        self.words_as_printed()

    # per item

    def decision_beside_request(self, frame: ItemFrame, item: Item) -> None:
        p = f"items[{frame.index}]"
        paths = [f"{p}.request", f"{p}.decision"]
        name = "decision_beside_request"
        if frame.decision is None:
            self.add(
                name,
                CheckResult.NOT_APPLICABLE,
                [],
                "no decision word right after the request",
                frame.index,
            )
            return
        printed = frame.decision.decision.value
        label = _LABEL_IN_REQUEST_RX.search(item.request)
        if label is not None:
            self.add(
                name,
                CheckResult.FAILED,
                [f"{p}.request"],
                f"the request includes the label {label.group().strip()!r}",
                frame.index,
            )
            return
        if printed == item.decision.value:
            self.add(name, CheckResult.PASSED, paths, item=frame.index)
            self._reanchor(f"{p}.decision", *frame.decision.word)
        else:
            self.add(
                name,
                CheckResult.FAILED,
                [f"{p}.decision"],
                f"the letter prints {printed!r} after this request, not {item.decision.value!r}",
                frame.index,
            )

    def request_fills_block(self, frame: ItemFrame, item: Item) -> None:
        """A request held by a colon statement is the whole of its block: it opens where the
        item opens (after a sentence's end, the list's intro, an item label or a partial
        authorisation's lead) and runs over no sentence's end."""
        path = f"items[{frame.index}].request"
        entry = self.prov.get(path)
        if frame.decision is None or not entry or not entry["spans"] or not self.grounded[path]:
            return
        start = min(s["start"] for s in entry["spans"])
        end = max(s["end"] for s in entry["spans"])
        name = "request_fills_block"
        inner = _inner_sentence_end(self.text, start, end)
        if inner is not None:
            self.add(
                name,
                CheckResult.FAILED,
                [path],
                f"the request runs over the end of a sentence at {inner}",
                frame.index,
            )
            return
        verdict, why = _opens_block(self.text, start)
        result = {
            True: CheckResult.PASSED,
            False: CheckResult.FAILED,
            None: CheckResult.INCONCLUSIVE,
        }[verdict]
        self.add(name, result, [path], why, frame.index)

    def rationale_agrees(self, frame: ItemFrame, item: Item) -> None:
        name = "rationale_agrees_with_decision"
        region = frame.rationale or (
            frame.decision.word[1] if frame.decision else frame.start,
            frame.end,
        )
        last = last_conclusion(self.text, *region)
        if not isinstance(last, Conclusion):
            self.add(
                name,
                CheckResult.NOT_APPLICABLE,
                [],
                "no 'medically necessary' conclusion"
                if last is False
                else "the rationale's conclusion is hedged; not read",
                frame.index,
            )
            return
        agrees = last.necessary == (item.decision is Decision.OVERTURNED)
        self.add(
            name,
            CheckResult.PASSED if agrees else CheckResult.FAILED,
            [f"items[{frame.index}].decision"],
            ""
            if agrees
            else f"rationale concludes {last.words!r}, decision is {item.decision.value!r}",
            frame.index,
        )

    def partial_authorization(self, frame: ItemFrame, item: Item) -> None:
        """The original and authorised parts are the letter's own X and Y of its partial
        authorisation sentence ("X was the original request. Y was authorized by ..."): the
        value must be the whole of its slot (the wording's words right before and after it,
        the slot opening where a block opens), in the sentence that leads to this item's
        request. In a wording the check does not know, the parts stay unverified."""
        p = f"items[{frame.index}]"
        name = "partial_authorization_in_sentence"
        for key, value in (
            ("original_request", item.original_request),
            ("authorized", item.authorized),
        ):
            if value is None:
                continue
            path = f"{p}.{key}"
            req_at = _first_start(self.prov, f"{p}.request")
            verdict, why, span = self._partial_slot(key, value, item.request, req_at)
            self.add(name, verdict, [path], why, frame.index)
            if verdict is CheckResult.PASSED and span is not None:
                self._reanchor(path, *span)

    def _partial_slot(
        self, key: str, value: str, request: str, request_at: int | None
    ) -> tuple[CheckResult, str, tuple[int, int] | None]:
        """The verdict on one part, and where it stands: of the places the letter prints the
        part in its slot, the last before the item's request (a case summary may tell the same
        sentence earlier)."""
        text = self.text
        if key == "original_request":
            slots: tuple[tuple[str | None, str], ...] = ((None, ORIGINAL_FOLLOWED_BY),)
        else:
            slots = AUTHORIZED_BETWEEN
        wordings = [m for _b, after in slots if (m := _find_phrase(text, after)) is not None]
        if not wordings:
            return (
                CheckResult.INCONCLUSIVE,
                "the letter prints no partial authorisation wording",
                None,
            )
        pos = 0
        seen = False
        best: tuple[int, int] | None = None
        while (loc := locate(text, value, pos, fuzzy=False)) is not None:
            if request_at is not None and loc.start >= request_at and best is not None:
                break
            pos = loc.end
            seen = True
            for before, after in slots:
                if tokens(text[loc.end : loc.end + 4 * len(after)])[: len(tokens(after))] != tokens(
                    after
                ):
                    continue
                if before is None:
                    opens, _why = _opens_block(text, loc.start)
                    if opens is not True:
                        continue
                elif tokens(text[max(0, loc.start - 4 * len(before)) : loc.start])[
                    -len(tokens(before)) :
                ] != tokens(before):
                    continue
                if self._leads_to(loc.end, request):
                    best = (loc.start, loc.end)
                    break
        if best is not None:
            return CheckResult.PASSED, "", best
        detail = (
            f"{key} {value[:60]!r} is not the whole of its slot in the letter's wording"
            if seen
            else f"{key} {value[:60]!r} is not in the letter"
        )
        return CheckResult.FAILED, detail, None

    def _leads_to(self, pos: int, request: str) -> bool:
        """Whether the partial authorisation sentence at ``pos`` names ``request`` as the
        remaining (or original) request it leads to."""
        m = REMAINING_LEAD_RX.search(self.text, pos, pos + 1500)
        if m is None:
            return False
        want = tokens(request)
        return tokens(self.text[m.end() : m.end() + 3 * len(request) + 40])[: len(want)] == want

    def guideline_line(self, frame: ItemFrame, g: str, guideline: Guideline) -> None:
        """Flags, kinds, sources, sections and pages, each at its own place in the item's line.

        The line is read by verification's own reader (``verify.citations``); a citation of the
        record is tied to the line's citation whose source slot it names, and its kind,
        sections and pages are checked in that citation only.
        """
        p = f"items[{frame.index}].{g}"
        line = frame.lines.get(g)
        if line is None:
            self.add(
                "guideline_line_found",
                CheckResult.NOT_APPLICABLE,
                [],
                f"no {g} line in the item",
                frame.index,
            )
            return
        reading = read_line(self.text, *line)
        for flag in ("cited", "outside_mtus"):
            verdict = reading.flag_verdict(flag, getattr(guideline, flag))
            self._judge("guideline_flags_match_line", f"{p}.{flag}", verdict, frame)
        taken: set[int] = set()
        unplaced = 0  # the record's citations that name no citation of the line
        for c, cit in enumerate(guideline.citations):
            cp = f"{p}.citations[{c}]"
            own = reading.own_citation(cit.source, taken)
            if own is not None:
                taken.add(own)
            else:
                unplaced += 1
            self._judge(
                "sources_in_guideline_line",
                f"{cp}.source",
                reading.source_verdict(own, cit.source),
                frame,
            )
            for s, section in enumerate(cit.sections):
                self._judge(
                    "sections_in_guideline_line",
                    f"{cp}.sections[{s}]",
                    reading.section_verdict(own, section),
                    frame,
                )
            for n, page in enumerate(cit.pages):
                self._judge(
                    "pages_in_guideline_line",
                    f"{cp}.pages[{n}]",
                    reading.page_verdict(own, page),
                    frame,
                    g,
                )
            self._judge(
                "citation_kind_in_line", f"{cp}.kind", reading.kind_verdict(own, cit.kind), frame
            )
        # Every citation the line prints is held by one of the record's (none silently lost).
        missing = [
            c
            for i, c in enumerate(reading.citations)
            if i not in taken and c.source is not None and not c.unsure_source
        ]
        # A wrong citation of the record stands for one of the line's (its own check fails);
        # what is left over is a citation the record does not hold at all.
        if len(missing) > unplaced:
            missing = missing[unplaced:]
            src = missing[0].source
            assert src is not None
            detail = (
                f"the line prints {len(missing)} citation(s) the record does not hold: "
                f"{fold(self.text[src[0] : src[1]])[:60]!r}"
            )
            self.unaccounted_citations += len(missing)
            # The letter's list is longer than the record's: a fact of the letter (failed),
            # and the record's own list of this line cannot be vouched for (inconclusive).
            self.add("citations_accounted_for", CheckResult.FAILED, [], detail, frame.index)
            listed = [f"{p}.cited"] + [
                f"{p}.citations[{c}].source" for c in range(len(guideline.citations))
            ]
            self.add(
                "citations_accounted_for", CheckResult.INCONCLUSIVE, listed, detail, frame.index
            )

    def _judge(
        self, name: str, path: str, verdict: Verdict, frame: ItemFrame, line: str = ""
    ) -> None:
        """Record a citation check; a value that passed is anchored where the line prints it."""
        detail = verdict.detail
        if verdict.result is CheckResult.FAILED and line:
            detail = f"{detail} (the item's {line} line)"
        self.add(name, verdict.result, [path], detail, frame.index)
        if verdict.result is CheckResult.PASSED and verdict.span is not None:
            self._reanchor(path, *verdict.span)

    def rationale_in_item(self, frame: ItemFrame) -> None:
        path = f"items[{frame.index}].rationale"
        ok = self._spans_within(path, (frame.start, frame.end))
        self.add(
            "rationale_in_item",
            CheckResult.PASSED if ok else CheckResult.FAILED,
            [path],
            "" if ok else "the rationale is not in the item's section",
            frame.index,
        )

    # per letter

    def census_accounting(self, frames: list[ItemFrame]) -> None:
        """Every decision the census finds is held by an item, and every item is backed by one.

        The census (``census.take_census``) reads the letter line by line, apart from any
        extractor; a decision it finds that no item holds is a silent loss, an item that no
        stated decision backs is an invention, and a text holding two letters is one record
        too few.
        """
        census = self.census
        if len(census.letters) > 1:
            self.several_letters = True
            self.add(
                "one_letter_per_text",
                CheckResult.FAILED,
                [],
                f"the text holds {len(census.letters)} letters (starting at offsets "
                f"{', '.join(map(str, census.letters[:5]))}); split it into one file per letter",
            )
        self.decisions_heading_once()
        if not census.statements:
            self.add(
                "decisions_accounted_for",
                CheckResult.NOT_APPLICABLE,
                [],
                "the census found no decision statement in the letter",
            )
            return
        frame_of = {f.index: f for f in frames}
        anchors = [
            ItemAnchor(
                i,
                item.request,
                item.decision,
                d.word[0] if (f := frame_of.get(i)) is not None and (d := f.decision) else None,
            )
            for i, item in enumerate(self.record.items)
        ]
        acc = account(census, anchors, self.text)
        self.accounting_done = True
        self.decisions_where_the_form_states_them(frames, acc)
        self.unaccounted = len(acc.unaccounted) + len(census.orphan_lines)
        if census.orphan_lines:
            where = ", ".join(f"{a}-{b}" for a, b in census.orphan_lines[:5])
            self.add(
                "guideline_lines_accounted_for",
                CheckResult.FAILED,
                [],
                f"{len(census.orphan_lines)} guideline line(s) follow no stated decision (at "
                f"{where}): an item whose decision the letter does not state where it should",
            )
        if acc.unaccounted:
            shown = "; ".join(st.describe(self.text) for st in acc.unaccounted[:3])
            more = f" and {len(acc.unaccounted) - 3} more" if len(acc.unaccounted) > 3 else ""
            self.add(
                "decisions_accounted_for",
                CheckResult.FAILED,
                [],
                f"{len(acc.unaccounted)} decision(s) the letter states are held by no item: "
                f"{shown}{more}",
            )
        else:
            self.add(
                "decisions_accounted_for",
                CheckResult.PASSED,
                [],
                f"{len(census.statements)} decision statement(s), all held by an item",
            )
        for i in acc.unbacked:
            self.add(
                "item_backed_by_census",
                CheckResult.FAILED,
                [f"items[{i}].request", f"items[{i}].decision"],
                "the letter states no decision for this request",
                i,
            )
        for i, held in acc.by_item.items():
            if held:
                self.add(
                    "item_backed_by_census",
                    CheckResult.PASSED,
                    [f"items[{i}].request", f"items[{i}].decision"],
                    item=i,
                )
        # An item printed twice (a block duplicated by a tool, or a letter pasted into itself)
        # is two items the letter does not decide twice: neither copy is verified.
        seen: dict[tuple[str, ...], list[int]] = defaultdict(list)
        for i, item in enumerate(self.record.items):
            if acc.by_item.get(i):
                seen[tuple(tokens(item.request))].append(i)
        for twins in seen.values():
            if len(twins) > 1:
                self.add(
                    "item_printed_once",
                    CheckResult.INCONCLUSIVE,
                    [f"items[{i}].{k}" for i in twins for k in ("request", "decision")],
                    f"the letter decides this request {len(twins)} times (items {twins})",
                )
        for st, i in acc.disagreeing:
            if st.kind == "colon":
                continue  # the word right after the request: decision_beside_request says so
            self.add(
                "census_decision_agrees",
                CheckResult.FAILED,
                [f"items[{i}].decision"],
                f"the letter states {st.decision.value!r} at {st.word[0]}-{st.word[1]}",
                i,
            )

    def _line_of(self, pos: int) -> str:
        text = self.text
        start = text.rfind("\n", 0, pos) + 1
        end = text.find("\n", pos)
        return fold(text[start : end if end >= 0 else len(text)])[:80]

    def decisions_heading_once(self) -> None:
        """A letter prints its decisions heading once: a second copy is a made-up structure
        (or a second letter, which ``one_letter_per_text`` names)."""
        headings = self.census.headings
        if len(headings) < 2 or self.several_letters:
            return
        self.structure_faked = True
        where = "; ".join(f"{a}: {self._line_of(a)!r}" for a, _b in headings[:4])
        self.add(
            "decisions_heading_printed_once",
            CheckResult.FAILED,
            [],
            f"the decisions heading is printed {len(headings)} times (at {where})",
        )

    def decisions_where_the_form_states_them(
        self, frames: list[ItemFrame], acc: Accounting
    ) -> None:
        """A decision stated where the form states none (an item-shaped line with no guideline
        lines after it, a decision in the case summary, a decision-list sentence among the
        items) backs no item (``census`` leaves it out of the accounting, so an item resting
        on it alone fails ``item_backed_by_census``), and the letter is flagged, naming it.
        Where two copies of the decisions heading each open a decision, the items they open,
        and the items whose text runs over a copy, cannot be told from a made-up one: none is
        verified."""
        census, text = self.census, self.text
        if census.stray or census.stray_mentions:
            self.structure_faked = True
            shown = [
                f"{census.statements[k].describe(text)} ({why})"
                for k, why in sorted(census.stray.items())[:3]
            ] + [
                f"'{self._line_of(a)}' at {a} (an item heading with no guideline lines)"
                for a, _b in census.stray_mentions[:2]
            ]
            count = len(census.stray) + len(census.stray_mentions)
            self.add(
                "decisions_only_where_the_form_states_them",
                CheckResult.FAILED,
                [],
                f"{count} decision(s) or item(s) stated outside the decisions list, not read "
                f"as items: {'; '.join(shown)}",
            )
        if not census.ambiguous_headings:
            return
        heads = sorted(census.ambiguous_headings)
        suspects = {
            acc.by_statement[k] for k in census.ambiguous_headings.values() if k in acc.by_statement
        }
        suspects |= {f.index for f in frames if any(f.start < h < f.end for h in heads)}
        for i in sorted(suspects):
            self.add(
                "one_decisions_section",
                CheckResult.INCONCLUSIVE,
                [f"items[{i}].request", f"items[{i}].decision"],
                f"the decisions heading is printed at {', '.join(map(str, heads))} and each "
                "copy opens a decision: this item may be one a copy made up",
                i,
            )

    def header_values_beside_labels(self) -> None:
        """A labelled header value must be the one its own label is paired with.

        Pairing is read from the layout (``labels.pair``): where the layout pairs the label
        with no value unambiguously (a row of labels over a row of values), the value is left
        unverified with the reason, never matched to "a date somewhere after the label". A date
        the letter states only in prose is checked right after its cue phrase.
        """
        hits = label_hits(self.text)
        for path in _HEADER_PATHS:
            value = self.values.get(path)
            if value is None or path not in self.prov:
                continue
            mine = [k for k, h in enumerate(hits) if h.path == path]
            if mine:
                self._check_labelled(path, value, [pair(self.text, hits, k) for k in mine])
            elif path.startswith("dates."):
                self._check_prose_date(path, value)
            elif path == "case_number":
                numbers = set(_CASE_NUMBER_RX.findall(self.text))
                ok = numbers == {value}
                self.add(
                    "header_value_beside_label",
                    CheckResult.PASSED if ok else CheckResult.INCONCLUSIVE,
                    [path],
                    "" if ok else "no case number label, and the letter prints other numbers",
                )
            else:
                self.add(
                    "header_value_beside_label",
                    CheckResult.INCONCLUSIVE,
                    [path],
                    "the letter prints no label for this field",
                )

    def _check_labelled(self, path: str, value: Any, pairings: list[Pairing]) -> None:
        name = "header_value_beside_label"
        paired = [p for p in pairings if p.value is not None]
        if not paired:
            self.add(
                name,
                CheckResult.INCONCLUSIVE,
                [path],
                f"its label is not paired with a value in this layout: {pairings[0].why}",
            )
            return
        start, end = paired[0].value  # type: ignore[misc]
        printed = self.text[start:end]
        if isinstance(value, dt.date):
            ok = parse_printed_date(printed) == value
        else:
            ok = fold(printed).rstrip(".,;").casefold() == str(value).casefold()
        if ok:
            self.add(name, CheckResult.PASSED, [path])
            self._reanchor(path, start, end)
        else:
            self.add(
                name,
                CheckResult.FAILED,
                [path],
                f"the value printed after its label is {fold(printed)[:40]!r}, not {value!s:.40}",
            )

    def _check_prose_date(self, path: str, value: dt.date) -> None:
        name = "header_value_beside_label"
        got = prose_date(self.text, path)
        if got is False or got is None:
            self.add(
                name,
                CheckResult.INCONCLUSIVE,
                [path],
                "no label for this date and no sentence that states it"
                if got is False
                else "its sentence prints no date where expected",
            )
            return
        printed, span = got  # type: ignore[misc]
        if printed == value:
            self.add(name, CheckResult.PASSED, [path])
            self._reanchor(path, *span)
        else:
            self.add(
                name,
                CheckResult.FAILED,
                [path],
                f"the letter states {printed.isoformat()} for this date, not {value.isoformat()}",
            )

    def no_page_furniture(self) -> None:
        """A value that runs over a page number or a running header or footer holds words the
        letter does not give it (a source read on into "Page 1 of 2 IMR Case Number: ..."); an
        item's value read from such a line (page 1 of "Page 1 of 2") is not the item's."""
        furniture = self.census.furniture
        if not furniture:
            return
        for path, entry in self.prov.items():
            in_item = path.startswith("items[")
            if not in_item and not isinstance(self.values.get(path), str):
                continue
            for span in entry["spans"]:
                a, b = span["start"], span["end"]
                hit = next(
                    (
                        f
                        for f in furniture
                        if (a <= f[0] and f[1] <= b) or (in_item and f[0] < b and a < f[1])
                    ),
                    None,
                )
                if hit is not None:
                    self.add(
                        "no_page_furniture_in_value",
                        CheckResult.INCONCLUSIVE,
                        [path],
                        f"the value runs over {fold(self.text[hit[0] : hit[1]])[:40]!r}, which a "
                        "page break prints",
                    )
                    break

    def words_as_printed(self) -> None:
        """A value (other than a rationale) whose words a line break or a PDF-to-text tool may
        have changed is not verified, one pass over the values:

        - ``no_word_broken_at_line_end``: a word hyphenated at a line's end ("injec-" / "tions",
          or "Post-" / "injection") is one word or two; only a dictionary could say;
        - ``no_word_split_by_a_tool``: a hyphen padded apart inside a line ("7- 10"), a guideline
          title or section spelled as a known one with its spaces elsewhere ("Chronic Pa in
          Medical Treatment 2016", "InitialCare"), or two words that make one the letter prints
          elsewhere ("s pine").
        """
        for path, entry in self.prov.items():
            value = self.values.get(path)
            if path.endswith(".rationale") or type(value) is not str:
                continue  # (an enum such as a citation's kind "Non-MTUS" is its own word)
            found = self._word_trouble(path, value, entry["spans"])
            if found is not None:
                self.add(found[0], CheckResult.INCONCLUSIVE, [path], found[1])

    def _word_trouble(
        self, path: str, value: str, spans: list[dict[str, Any]]
    ) -> tuple[str, str] | None:
        """(check name, why) for the first doubt about ``value``'s words, else None."""
        text = self.text
        for span in spans:
            a, b = span["start"], span["end"]
            for broken in _BROKEN_WORD_RX.finditer(text, a, b):
                if not _in_address(text, broken.start()):
                    word = fold(broken.group())
                    return (
                        "no_word_broken_at_line_end",
                        f"{word!r} is a word broken at a line's end",
                    )
            padded = _PADDED_HYPHEN_RX.search(text, a, b)
            if padded is not None and not _in_address(text, padded.start()):
                return "no_word_split_by_a_tool", f"{padded.group()!r}: a hyphen padded apart"
        if path.endswith(".source") or ".sections[" in path:
            known = respaced(value)
            if known is not None:
                why = f"spelled as the known {known!r} with its spaces elsewhere"
                return "no_word_split_by_a_tool", why
        for span in spans:
            split = _split_word(text, span["start"], span["end"])
            if split is not None:
                return "no_word_split_by_a_tool", f"{split!r}: a word of the letter split in two"
        return None

    def extractors_agree(self) -> None:
        """Where two extractors gave different values and both passed every check, the checks
        are wrong about one of them: the field kept is not verified (with the other value
        beside it in ``alternatives``)."""
        for unit, alt in self.record.alternatives.items():
            if alt.status is not Status.VERIFIED:
                continue
            try:
                kept = value_at(self.record, unit)
            except (AttributeError, IndexError, KeyError, TypeError):
                continue
            if hasattr(kept, "model_dump"):
                kept = kept.model_dump(mode="json")
            elif isinstance(kept, list):
                kept = [k.model_dump(mode="json") if hasattr(k, "model_dump") else k for k in kept]
            if _comparable(kept) == _comparable(alt.value):
                continue
            paths = [p for p in self.prov if p == unit or p.startswith((unit + ".", unit + "["))]
            self.add(
                "extractors_agree",
                CheckResult.INCONCLUSIVE,
                paths,
                f"the {alt.method.value} gave {str(alt.value)[:60]!r}, which also passes the "
                "checks: one of the two is wrong",
            )

    def credentials_and_patient(self) -> None:
        """Reviewer and patient values at their own label or sentence (``credentials``)."""
        text = self.text
        for path, entry in self.prov.items():
            if not path.startswith(("reviewer.", "patient.")):
                continue
            value = self.values.get(path)
            if value is None:
                continue
            field_name = path.split("[")[0]
            if field_name == "reviewer.licensure":
                name, (verdict, why) = "licensure_in_its_slot", judge_state(text, str(value))
            elif field_name in ("reviewer.specialty", "reviewer.subspecialty"):
                name = "credential_fills_its_slot"
                verdict, why = judge_whole_slot(text, field_name, str(value))
            elif entry["spans"] and field_name in ("patient.age", "patient.sex"):
                span = entry["spans"][0]
                judge = judge_age if field_name == "patient.age" else judge_sex
                name = "patient_in_age_statement"
                verdict, why = judge(text, span["start"], span["end"])
            else:
                continue
            result = {
                True: CheckResult.PASSED,
                False: CheckResult.FAILED,
                None: CheckResult.INCONCLUSIVE,
            }[verdict]
            self.add(name, result, [path], why)
            if result is CheckResult.PASSED and field_name == "reviewer.licensure":
                at = state_in_slot(text, str(value))
                if at is not None and not self._spans_within(path, at):
                    self._reanchor(path, *at)

    def dates_in_order(self) -> None:
        dates = self.record.dates
        present: list[tuple[str, dt.date]] = [
            (n, d) for n in DATE_ORDER if (d := getattr(dates, n)) is not None
        ]
        if len(present) < 2:
            return
        for (a, da), (b, db) in itertools.pairwise(present):
            ok = da <= db
            paths = [f"dates.{a}", f"dates.{b}"]
            if not ok:
                # A date confirmed at its own label is not the wrong one of the pair.
                unconfirmed = [
                    p for p in paths if "header_value_beside_label" not in self.passed.get(p, ())
                ]
                paths = unconfirmed or paths
            self.add(
                "dates_in_order",
                CheckResult.PASSED if ok else CheckResult.FAILED,
                paths,
                "" if ok else f"{a} {da} is after {b} {db}",
            )

    # spans

    def _spans_within(self, path: str, region: tuple[int, int]) -> bool:
        entry = self.prov.get(path)
        if not entry or not entry["spans"]:
            return False
        return all(region[0] <= s["start"] and s["end"] <= region[1] for s in entry["spans"])

    def _reanchor(self, path: str, start: int, end: int) -> None:
        """Move a value's span to where the check found it (model quotes are often elsewhere)."""
        entry = self.prov.get(path)
        if entry is None or end <= start:
            return
        if len(entry["spans"]) == 1 and entry["spans"][0]["start"] == start:
            return
        if self._spans_within(path, (start, end)):
            return
        entry["spans"] = [{"start": start, "end": end, "page": self.page_of(start)}]
        self.grounded[path] = _ground(path, self.values[path], entry, self.text)


@functools.lru_cache(maxsize=4)  # the letter at hand
def _word_counts(text: str) -> Counter[str]:
    return Counter(m.group().lower() for m in _ALPHA_RX.finditer(text))


def _split_word(text: str, start: int, end: int) -> str | None:
    """Two letters-only words in ``text[start:end]`` that make a word the letter prints
    elsewhere ("s pine" / "spine", "Pa in" / "pain"), one of which the letter never prints
    on its own: a word a PDF-to-text tool split, not two words of the letter."""
    counts = _word_counts(text)
    for m in _PAIR_RX.finditer(text, start, end):
        a, b = m.group(1).lower(), m.group(2).lower()
        joined = a + b
        if len(joined) < 5 or counts.get(joined, 0) == 0:
            continue
        together = len(re.findall(rf"\b{a}\s+{b}\b", text, re.IGNORECASE))
        if counts[a] <= together or counts[b] <= together:
            return m.group()
    return None


def _in_address(text: str, pos: int) -> bool:
    """Whether ``pos`` is inside a web address (whose hyphens are its own, at a line's end too)."""
    start = pos
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    token = text[start:pos]
    return "://" in token or token.startswith("www.") or bool(_DOMAIN_RX.search(token))


def _comparable(value: Any) -> Any:
    """``value`` with its strings folded to words (a case or spacing difference is no
    disagreement)."""
    if isinstance(value, str):
        return tuple(tokens(value))
    if isinstance(value, dict):
        return tuple(sorted((k, _comparable(v)) for k, v in value.items()))
    if isinstance(value, list):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def _ends_sentence(text: str, dot: int) -> bool:
    """Whether the "." at ``dot`` ends a sentence: it closes a word of two or more characters
    with no dot of its own ("necessary.", "(ODG)."), not an abbreviation ("p.o.", "b.i.d.")."""
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot].lstrip("(\"'")
    return len(word) >= 2 and "." not in word and (word[-1].isalnum() or word[-1] in ")%\"'")


def _inner_sentence_end(text: str, start: int, end: int) -> int | None:
    """The first sentence end inside ``text[start:end]``, if any: a sentence-ending "." that a
    line break follows, or a sentence that closes and another that opens ("... necessary. The
    request for ...")."""
    pos = text.find(".", start, end)
    while pos >= 0:
        after = pos + 1
        while after < end and text[after] in " \t\r\f":
            after += 1
        if after < end and _ends_sentence(text, pos):
            if text[after] == "\n":
                return pos
            word = text[after : after + 12].split(" ", 1)[0]
            if after > pos + 1 and word[:1].isupper() and word[1:2].islower():
                return pos
        pos = text.find(".", pos + 1, end)
    return None


def _find_phrase(text: str, phrase: str) -> re.Match[str] | None:
    return re.search(r"\s+".join(map(re.escape, phrase.split())), text, re.IGNORECASE)


def _opens_block(text: str, start: int) -> tuple[bool | None, str]:
    """Whether an item's request may open at ``start``: (True, ""), (False, why), or (None,
    why) when what stands before it is a boundary this check does not know."""
    p = start
    while p > 0 and text[p - 1].isspace():
        p -= 1
    if p == 0:
        return True, ""
    line = text[text.rfind("\n", 0, p) + 1 : p].strip()
    c = text[p - 1]
    if c == ".":
        if _ends_sentence(text, p - 1):
            return True, ""
        return False, f"the request opens after an abbreviation ({line[-20:]!r}), mid-sentence"
    if c == ":":
        if ITEM_INTRO_RX.search(text[max(0, p - 60) : p]):
            return True, ""
        if p < start and "\n" in text[p:start] and _is_heading(line):
            return True, ""
        return None, f"the request opens after {line[-40:]!r}, which may belong to it"
    if PARTIAL_LEAD_RX.search(text, max(0, p - 40), p):
        return True, ""
    if "\n" in text[p:start] and _is_heading(line):
        return True, ""
    return False, f"the request opens mid-sentence, after {line[-40:]!r}"


def _is_heading(line: str) -> bool:
    """An upper-case line of two or more words (a section heading)."""
    letters = [c for c in line if c.isalpha()]
    return len(line.split()) >= 2 and bool(letters) and all(c.isupper() for c in letters)


def _grouped(checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failed checks first, one by one (each with its detail); passed checks of one name and
    item as one entry listing all their fields."""
    failed = [c for c in checks if c["result"] is CheckResult.FAILED]
    rest: dict[tuple[str, Any, Any, str], dict[str, Any]] = {}
    for c in checks:
        if c["result"] is CheckResult.FAILED:
            continue
        key = (c["name"], c["result"], c["item"], c["detail"])
        if key in rest:
            rest[key]["paths"] = rest[key]["paths"] + c["paths"]
        else:
            rest[key] = c
    return failed + list(rest.values())


# --- coverage and the entry point ----------------------------------------------------------------


def expected_paths(record: LetterRecord) -> list[str]:
    try:
        expected = list(layouts.get(record.layout).expected_fields)
    except KeyError:
        expected = list(layouts.GENERIC_EXPECTED_FIELDS)
    for i in range(max(len(record.items), 1)):  # a letter with no items still expects one
        expected.extend(f"items[{i}].{f}" for f in ITEM_EXPECTED_FIELDS)
    return expected


def _covered(path: str, status: dict[str, Status]) -> bool:
    if path in status:
        return status[path] is Status.VERIFIED
    # A list field (reviewer.licensure): covered when it has elements and all are verified.
    elements = [s for p, s in status.items() if p.startswith(path + "[")]
    return bool(elements) and all(s is Status.VERIFIED for s in elements)


def verify(record: LetterRecord, text: str, page_of: Any = None) -> LetterRecord:
    """``record`` with each value's status, the cross-checks and the coverage filled in.

    ``text`` is the letter's normalised text (``Document.text``) the spans index into;
    ``page_of`` maps an offset to its page (``Document.page_of``) for spans that checks move.
    """
    entries = {
        path: {
            "method": p.method,
            "rule": p.rule,
            "match": p.match,
            "spans": [{"start": s.start, "end": s.end, "page": s.page} for s in p.spans],
        }
        for path, p in record.provenance.items()
    }
    values = {path: value_at(record, path) for path in entries}
    return verify_entries(record, entries, values, text, page_of)


def _first_page(_offset: int) -> int:
    return 1


def verify_entries(
    record: LetterRecord,
    prov: dict[str, dict[str, Any]],
    values: dict[str, Any],
    text: str,
    page_of: Any,
) -> LetterRecord:
    page_of = page_of or _first_page
    grounded: dict[str, bool] = {}
    for path, entry in prov.items():
        entry["score"] = None
        grounded[path] = _ground(path, values[path], entry, text)

    checker = _Checker(record, prov, text, values, page_of, grounded, take_census(text))
    checker.run()

    statuses: dict[str, Status] = {}
    counts = dict.fromkeys(Status, 0)
    failed_by_path, passed_by_path = checker.failed, checker.passed
    for path, entry in prov.items():
        failed = failed_by_path.get(path)
        if failed:
            status = Status.CONTRADICTED
            entry["failed_checks"] = sorted(failed)
        # An item's value counts only where its item is: a passing tie-in check is required.
        elif (
            grounded[path]
            and not checker.doubted.get(path)
            and (not path.startswith("items[") or passed_by_path.get(path))
        ):
            status = Status.VERIFIED
        else:
            status = Status.UNVERIFIED
        entry["status"] = status
        statuses[path] = status
        counts[status] += 1

    expected = expected_paths(record)
    covered = sum(_covered(p, statuses) for p in expected)
    # A decision the letter states that no item holds is an item's worth of fields missing.
    missing = checker.unaccounted * len(ITEM_EXPECTED_FIELDS)
    denominator = len(expected) + missing
    coverage = round(covered / denominator, 3) if denominator else 0.0
    complete = (
        checker.accounting_done
        and checker.unaccounted == 0
        and checker.unaccounted_citations == 0
        and not checker.several_letters
        and not checker.structure_faked
        and not any(
            c["result"] is CheckResult.FAILED and c["name"] == "item_backed_by_census"
            for c in checker.checks
        )
    )
    checks = _CHECKS.validate_python(_grouped(checker.checks))
    verification = Verification(
        verified=counts[Status.VERIFIED],
        unverified=counts[Status.UNVERIFIED],
        contradicted=counts[Status.CONTRADICTED],
        coverage=coverage,
        expected_fields=denominator,
        novel_layout=record.layout == "unknown" or coverage < NOVEL_LAYOUT_THRESHOLD,
        complete=complete,
        unaccounted_decisions=checker.unaccounted,
        checks=checks,
    )
    # One pydantic-core pass over the whole map: much faster than a model per entry.
    validated = PROVENANCE_MAP.validate_python(prov)
    return record.model_copy(update={"provenance": validated, "verification": verification})
