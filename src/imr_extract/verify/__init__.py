"""Verification: decide from the letter's text alone how far each value of a record can be trusted.

Invariant: nothing in this package reads a value the way the rules do. It imports facts about the
printed forms (``imr_extract.forms``: headings and labels) but no pattern or parser from
``imr_extract.rules``, so a misreading of the rules is not repeated by the check that judges it
(an import contract in CI keeps it so).

- ``grounding``: does the text at a span hold the value claimed for it (``span_holds``)?
- ``census``: an independent count of the decisions a letter states, and their accounting.
- ``conclusion``: the rationale's conclusion about medical necessity, negations included.
- ``labels``: header values paired with their labels by the layout, prose dates by their cues.
- ``citations``: a guideline line read into citation slots; each citation value judged at its own
  slot (kind by its marker, source as a whole slot, sections as units the guideline vocabulary
  knows, pages only after a page label).
- ``checks``: the cross-checks, statuses, coverage and completeness (``verify``).
- ``external``: records from any other tool, located in their letters and verified
  (``verify_external``, ``verify_records``).
"""

from .checks import (
    FUZZY_VERIFIED,
    NOVEL_LAYOUT_THRESHOLD,
    expected_paths,
    verify,
    verify_entries,
)
from .external import (
    FITS_SCHEMA,
    ExternalOutcome,
    InvalidValue,
    LetterIndex,
    LetterNotFoundError,
    invalid_checks,
    parse_external,
    verify_external,
    verify_records,
)

__all__ = [
    "FITS_SCHEMA",
    "FUZZY_VERIFIED",
    "NOVEL_LAYOUT_THRESHOLD",
    "ExternalOutcome",
    "InvalidValue",
    "LetterIndex",
    "LetterNotFoundError",
    "expected_paths",
    "invalid_checks",
    "parse_external",
    "verify",
    "verify_entries",
    "verify_external",
    "verify_records",
]
