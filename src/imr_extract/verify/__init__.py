"""Verification: decide from the letter's text alone how far each value of a record can be trusted.

Invariant: nothing in this package reads a value the way the rules do. It imports facts about the
printed forms (``imr_extract.forms``: headings and labels) but no pattern or parser from
``imr_extract.rules``, so a misreading of the rules is not repeated by the check that judges it
(an import contract in CI keeps it so).

- ``checks``: grounding, the cross-checks, statuses and coverage (``verify``).
"""

from .checks import (
    FUZZY_VERIFIED,
    NOVEL_LAYOUT_THRESHOLD,
    expected_paths,
    verified_record,
    verify,
)

__all__ = [
    "FUZZY_VERIFIED",
    "NOVEL_LAYOUT_THRESHOLD",
    "expected_paths",
    "verified_record",
    "verify",
]
