"""Layout registry: which form a letter is printed in, and the reader for that form.

A layout is one module in this package that calls ``register(Layout(...))`` at import time; the
package imports every module in it on first use, so adding a form never means editing this file.
``detect`` scores every registered layout on the text and returns the best, or ``UNKNOWN``.
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..ingest import Document
    from ..rules import LetterFound

#: Below this detection score a letter is reported as of unknown layout.
MIN_DETECT_SCORE = 0.5

#: Letter-level fields every IMR determination states, whatever its form: what the coverage score
#: (``imr_extract.verify``) expects of a layout that does not say otherwise. Each item is
#: expected to have its request, decision and both guideline lines.
GENERIC_EXPECTED_FIELDS: tuple[str, ...] = (
    "case_number",
    "dates.decision",
    "reviewer.licensure",
    "reviewer.specialty",
    "patient.age",
    "patient.sex",
)

#: What a form with a labelled header block prints: the case number, all five dates, the
#: priority, and labelled credentials (the 2016-17 form, the medical professional review form).
HEADER_FORM_EXPECTED_FIELDS: tuple[str, ...] = (
    "case_number",
    "dates.assigned",
    "dates.injury",
    "dates.decision",
    "dates.ur_denial",
    "dates.application_received",
    "priority",
    "reviewer.licensure",
    "reviewer.specialty",
    "patient.age",
    "patient.sex",
)


@dataclass(frozen=True)
class Layout:
    name: str
    description: str
    detect: Callable[[str], float]  # confidence in [0, 1] that the text is of this form
    read: Callable[[Document], LetterFound]
    #: False for forms that are recognised but read by the generic rules until they get a reader.
    dedicated_reader: bool = True
    #: Letter-level field paths this form prints (the coverage score's denominator).
    expected_fields: tuple[str, ...] = GENERIC_EXPECTED_FIELDS


_REGISTRY: dict[str, Layout] = {}
_loaded = False
_load_lock = threading.RLock()


def register(layout: Layout) -> Layout:
    if layout.name in _REGISTRY and _REGISTRY[layout.name] is not layout:
        raise ValueError(f"layout {layout.name!r} is registered twice")
    _REGISTRY[layout.name] = layout
    return layout


def _load_builtin() -> None:
    global _loaded
    if _loaded:
        return
    # Threads extracting at once must not see a half-loaded registry: the flag is set only
    # after every module has registered, under a lock.
    with _load_lock:
        if _loaded:
            return
        for mod in pkgutil.iter_modules(__path__):
            if not mod.name.startswith("_"):
                importlib.import_module(f"{__name__}.{mod.name}")
        _loaded = True


def all_layouts() -> list[Layout]:
    _load_builtin()
    return list(_REGISTRY.values())


def get(name: str) -> Layout:
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown layout {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def detect(text: str) -> tuple[Layout, float]:
    """The best-scoring layout for ``text`` and its score; ``unknown`` when none scores enough."""
    _load_builtin()
    best, score = _REGISTRY["unknown"], 0.0
    for layout in _REGISTRY.values():
        if layout.name == "unknown":
            continue
        s = layout.detect(text)
        if s > score:
            best, score = layout, s
    if score < MIN_DETECT_SCORE:
        return _REGISTRY["unknown"], score
    return best, score
