"""The guideline vocabulary: MTUS titles, editions and section titles as letters print them.

Invariant: this package holds facts about the guidelines letters cite (``mtus.json``, shipped in
the wheel), never a reading of a letter. A title or section listed here is one unit, commas
included ("NSAIDs, GI symptoms & cardiovascular risk" is one section; "Forearm, Wrist, and Hand
Complaints" one title): the rules keep such a unit whole, and verification will not accept a
split that cuts one. Both the rules and verification may import it.

Lookups go through ``key``: case, runs of whitespace and a hyphen broken across a line ("EC-
Naprosyn") do not matter.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from importlib import resources

_SPACE_RX = re.compile(r"\s+")
_HYPHEN_BREAK_RX = re.compile(r"-\s+")
_PAREN_EDITION_RX = re.compile(r"\s*\(((?:19|20)\d{2})\)$")


def key(s: str) -> str:
    """The form a title or section is looked up by: case-folded, whitespace folded, a hyphen
    and the whitespace after it joined, trailing punctuation dropped."""
    s = _HYPHEN_BREAK_RX.sub("-", _SPACE_RX.sub(" ", s).strip())
    return s.rstrip(".:;, ").casefold()


@dataclass(frozen=True, slots=True)
class Guideline:
    """One MTUS guideline: its title, the editions letters print, other printed names, sections."""

    title: str
    editions: tuple[str, ...]
    aliases: tuple[str, ...]
    sections: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Vocabulary:
    guidelines: tuple[Guideline, ...]
    non_mtus_titles: tuple[str, ...]
    odg_chapters: tuple[str, ...]
    #: key -> the guideline, for every title, title + edition and alias
    titles: dict[str, Guideline]
    #: keys of every known section title (of any guideline)
    sections: frozenset[str]
    #: the most commas any known section title holds (how far a merge need look ahead)
    max_section_commas: int


@functools.cache
def vocabulary() -> Vocabulary:
    """The vocabulary, loaded once from ``mtus.json``."""
    raw = json.loads(resources.files(__package__).joinpath("mtus.json").read_text("utf-8"))
    guidelines = tuple(
        Guideline(
            g["title"], tuple(g["editions"]), tuple(g.get("aliases", ())), tuple(g["sections"])
        )
        for g in raw["mtus"]
    )
    titles: dict[str, Guideline] = {}
    sections: set[str] = set()
    most = 0
    for g in guidelines:
        for name in (g.title, *g.aliases):
            titles[key(name)] = g
            for edition in g.editions:
                titles[key(f"{name} {edition}")] = g
        for s in g.sections:
            sections.add(key(s))
            most = max(most, s.count(","))
    return Vocabulary(
        guidelines,
        tuple(raw["non_mtus_titles"]),
        tuple(raw["odg_chapters"]),
        titles,
        frozenset(sections),
        most,
    )


def is_known_section(text: str) -> bool:
    """Whether ``text`` is a section title of some MTUS guideline, as letters print it."""
    return key(text) in vocabulary().sections


def guideline_of(title: str) -> Guideline | None:
    """The MTUS guideline ``title`` names ("Low Back Complaints 2004", "Chronic Pain Treatment
    Guidelines"), or None. A printed edition must be one the guideline has."""
    k = key(title)
    if k.endswith(")") and _PAREN_EDITION_RX.search(k):
        k = _PAREN_EDITION_RX.sub(r" \1", k)  # "... Guidelines (2009)" -> "... Guidelines 2009"
    return vocabulary().titles.get(k)


def is_known_title(title: str) -> bool:
    """Whether ``title`` (with or without its edition) names an MTUS guideline."""
    return guideline_of(title) is not None


@functools.cache
def _by_letters() -> dict[str, str]:
    """Every known title and section by its letters alone (spaces and hyphens dropped)."""
    v = vocabulary()
    return {k.replace(" ", "").replace("-", ""): k for k in (*v.titles, *v.sections)}


def respaced(text: str) -> str | None:
    """The known title or section that ``text`` spells with its spaces in other places
    ("Chronic Pa in Medical Treatment 2016", "InitialCare"), or None: a word a tool split or
    joined, which the letter itself does not print."""
    k = key(text)
    known = _by_letters().get(k.replace(" ", "").replace("-", ""))
    return known if known is not None and known != k else None
