"""The reviewer's credentials and the patient's age and sex, at their own label or sentence.

Invariant: a value is verified only where the letter gives it to that field: a state of
licensure is a state's name standing in the licensure slot (after its label, or in "licensed to
practice in ..."); a specialty is the whole of its slot, not a piece of it nor a phrase from
elsewhere; an age is a number printed as an age ("45 year old"), a sex the word of that same
statement. Slots are found from the forms' labels and cue phrases (``imr_extract.forms``), read
here line by line; nothing is taken from the rules.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..forms import (
    CREDENTIAL_CLAUSE_END_RX,
    LICENSURE_CUE_RX,
    LICENSURE_LABEL_RX,
    SEX_WORDS,
    SPECIALTY_CUE_RX,
    SPECIALTY_LABEL_RX,
    SUBSPECIALTY_CUE_RX,
    SUBSPECIALTY_LABEL_RX,
    US_STATES,
)
from .census import tokens
from .scan import near

_STATE_TOKENS = {tuple(tokens(s)) for s in US_STATES}
# A line that opens something else: a label ("Word(s):"), or an upper-case heading.
_LABEL_LINE_RX = re.compile(r"^[^:\n]{1,60}:")
_AGE_AFTER_RX = re.compile(r"\s*-?\s*years?\s*-?\s*old\b", re.IGNORECASE)
_AGE_PHRASE_RX = re.compile(r"\b(\d{1,3})\s*-?\s*years?\s*-?\s*old\b", re.IGNORECASE)


@dataclass(frozen=True)
class Slot:
    start: int
    end: int


def _is_heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 4 and all(c.isupper() for c in letters)


def _labelled_slots(text: str, label_end: int) -> list[Slot]:
    """From a label to the end of its line, and on over lines that continue the value (no
    label, no heading, not a sentence); a second reading goes on past blank lines too (the
    value wrapped in double-spaced text), where a continuation follows them."""
    out: list[Slot] = []
    for over_blank in (False, True):
        end = text.find("\n", label_end)
        end = len(text) if end < 0 else end
        while end < len(text):
            nxt = text.find("\n", end + 1)
            nxt = len(text) if nxt < 0 else nxt
            line = text[end + 1 : nxt].strip()
            if not line and over_blank:
                probe = nxt
                while probe < len(text) and not text[probe + 1 : _eol(text, probe + 1)].strip():
                    probe = _eol(text, probe + 1)
                    if probe - nxt > 40:
                        break
                following = text[probe + 1 : _eol(text, probe + 1)].strip()
                if following and _continues(following):
                    end = probe
                    continue
                break
            if not line or not _continues(line):
                break
            end = nxt
        if not out or out[-1].end != end:
            out.append(Slot(label_end, end))
    return out


def _eol(text: str, pos: int) -> int:
    end = text.find("\n", pos)
    return len(text) if end < 0 else end


def _continues(line: str) -> bool:
    """Whether a line may continue a wrapped credential: no label, no heading, no sentence."""
    return not (_LABEL_LINE_RX.match(line) or _is_heading(line) or len(line.split()) > 8)


def _prose_slot(text: str, cue_end: int) -> Slot:
    m = CREDENTIAL_CLAUSE_END_RX.search(text, cue_end, cue_end + 400)
    return Slot(cue_end, m.start() if m else min(len(text), cue_end + 400))


@functools.lru_cache(maxsize=16)  # the letter at hand, asked once per element of a list
def slots(text: str, field: str) -> list[Slot]:
    """Where the letter gives ``field`` (``reviewer.licensure``, ``.specialty``,
    ``.subspecialty``)."""
    (label, label_anchor), (cue, cue_anchor) = {
        "reviewer.licensure": ((LICENSURE_LABEL_RX, "licensure"), (LICENSURE_CUE_RX, "licensed")),
        "reviewer.specialty": (
            (SPECIALTY_LABEL_RX, "certification"),
            (SPECIALTY_CUE_RX, "certified"),
        ),
        "reviewer.subspecialty": (
            (SUBSPECIALTY_LABEL_RX, "specialty"),
            (SUBSPECIALTY_CUE_RX, "specialty"),
        ),
    }[field]
    out = [s for m in near(label, text, label_anchor, 40) for s in _labelled_slots(text, m.end())]
    out += [_prose_slot(text, m.end()) for m in near(cue, text, cue_anchor, 40)]
    return out


def _slot_tokens(text: str, slot: Slot) -> list[str]:
    return tokens(text[slot.start : slot.end])


def _occurs(words: list[str], within: list[str]) -> bool:
    n = len(words)
    return n > 0 and any(within[k : k + n] == words for k in range(len(within) - n + 1))


def judge_state(text: str, value: str) -> tuple[bool | None, str]:
    """A state of licensure: a state's name, standing in a licensure slot."""
    words = tokens(value)
    if tuple(words) not in _STATE_TOKENS:
        return False, f"{value[:50]!r} is not the name of a state"
    found = slots(text, "reviewer.licensure")
    if not found:
        return None, "the letter prints no licensure label or sentence"
    if any(_occurs(words, _slot_tokens(text, s)) for s in found):
        return True, ""
    return False, f"{value!r} is not among the states the letter gives for licensure"


def state_in_slot(text: str, value: str) -> tuple[int, int] | None:
    """Where a licensure slot prints the state ``value`` (its first such place)."""
    rx = re.compile(r"\b" + r"\s+".join(map(re.escape, value.split())) + r"\b", re.IGNORECASE)
    for s in slots(text, "reviewer.licensure"):
        m = rx.search(text, s.start, s.end)
        if m is not None:
            return m.span()
    return None


def judge_whole_slot(text: str, field: str, value: str) -> tuple[bool | None, str]:
    """A specialty or subspecialty: the whole of its slot, as printed."""
    found = slots(text, field)
    if not found:
        return None, "the letter prints no label or sentence for this credential"
    words = tokens(value)
    if any(_slot_tokens(text, s) == words for s in found):
        return True, ""
    if any(_occurs(words, _slot_tokens(text, s)) for s in found):
        return False, f"{value[:50]!r} is a piece of the letter's {field.split('.')[1]}, not all"
    return False, f"{value[:50]!r} is not what the letter gives for {field.split('.')[1]}"


def judge_age(text: str, start: int, end: int) -> tuple[bool | None, str]:
    """The number at ``[start, end)`` is printed as an age, and every age the letter states
    agrees with it (another person's age is not the patient's)."""
    if not _AGE_AFTER_RX.match(text, end):
        return False, "the number is not printed as an age ('N year old')"
    phrases = near(_AGE_PHRASE_RX, text, "old", 30)
    ages = {m.group(1) for m in phrases}
    if len(ages) > 1 and phrases[0].start(1) != start:
        return None, f"the letter states several ages ({', '.join(sorted(ages))})"
    return True, ""


def judge_sex(text: str, start: int, end: int) -> tuple[bool | None, str]:
    """The word at ``[start, end)`` is a sex word of the age statement ("45 year old male")."""
    if text[start:end].casefold() not in SEX_WORDS:
        return False, "the word is not a word for a sex"
    if _AGE_AFTER_RX.pattern and re.search(
        r"years?\s*-?\s*old\W{0,3}$", text[max(0, start - 30) : start], re.IGNORECASE
    ):
        return True, ""
    return None, "the word does not follow the patient's age statement"
