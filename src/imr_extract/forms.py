"""Facts about the printed forms: section headings and field labels, nothing that reads a value.

Invariant: every pattern here matches a heading or a label as the letters print it, never the
value that follows. The rules (which read values) and verification (which judges them) both use
these facts; neither imports the other's readings, so two independent readings of one letter
meet only at the labels the form itself prints.
"""

from __future__ import annotations

import re

# --- section headings ----------------------------------------------------------------------------

#: The heading of the decisions section, in the forms' wordings.
SECTION_RX = re.compile(
    r"IMR\s+ISSUES,?\s+DECISIONS?\s+AND\s+RATIONALES?"
    r"|IMR\s+DECISION\(?S?\)?\s+AND\s+RATIONALE\(?S?\)?"
    r"|ISSUES?\s+AT\s+DISPUTE",
)
#: The sentence that opens the 2016-17 decisions list ("... are set forth below:").
SECTION_INTRO_RX = re.compile(r"set\s+forth\s+below\s*:")

# --- item labels ---------------------------------------------------------------------------------
# As the 2016-17 form prints them ("Claims Administrator guideline:", "MAXIMUS guideline:",
# "Decision rationale:"), as the MEDICAL PROFESSIONAL REVIEW form does ("Guidelines relied upon by
# the Claims Administrator:", "... by the Medical Reviewer:", "Rationale:"). A form's reader
# adds its labels here, so that verification ties items to them too.

CA_LABEL_RX = re.compile(
    r"Claims\s+Administrator\s+guidelines?\s*:"
    r"|Guidelines?\s+relied\s+upon\s+by\s+the\s+Claims\s+Administrator\s*:",
    re.IGNORECASE,
)
IMR_LABEL_RX = re.compile(
    r"(?:MAXIMUS|IMR|Expert\s+Reviewer(?:'s)?|Reviewer(?:'s)?)\s+guidelines?\s*:"
    r"|Guidelines?\s+relied\s+upon\s+by\s+the\s+(?:Medical|Expert)\s+Reviewer\s*:",
    re.IGNORECASE,
)
RATIONALE_LABEL_RX = re.compile(r"(?:Decision\s+)?rationale\s*:", re.IGNORECASE)

# --- one per letter ------------------------------------------------------------------------------

#: Headings a letter prints once: two of one in a text mean two letters pasted together.
HOW_MADE_RX = re.compile(r"HOW\s+THE\s+IMR\s+FINAL\s+DETERMINATION\s+WAS\s+MADE")
ONE_PER_LETTER_HEADINGS: tuple[re.Pattern[str], ...] = (
    HOW_MADE_RX,
    re.compile(r"Notice\s+of\s+Independent\s+Medical\s+Review\s+Determination", re.IGNORECASE),
    re.compile(r"CLINICAL\s+CASE\s+SUMMARY"),
    re.compile(r"MEDICAL\s+PROFESSIONAL\s+REVIEW"),
)
#: The 2013 notice names each item before its guideline lines: "1. Regarding the request for X:".
REGARDING_RX = re.compile(
    r"Regarding\s+the\s+request\s+for\s+(?P<subject>[^:]{1,600}?)\s*:", re.IGNORECASE
)

# --- what opens an item's request ----------------------------------------------------------------

#: A line ending with one of these colons introduces the item that follows it: the decisions
#: list's intro ("... set forth below:", "... are medically necessary:") or an item label.
ITEM_INTRO_RX = re.compile(
    r"(?:set\s+forth\s+below|medically\s+necessary|(?:Item|Issue|Request)\s*#?\s*\d{1,3})\s*:\Z",
    re.IGNORECASE,
)
#: Words a partial authorisation prints right before the remaining request ("The remaining IMR
#: eligible portion of the original request, Z is: Upheld"; "The original request, Z").
PARTIAL_LEAD_RX = re.compile(r"original\s+request\s*,\Z", re.IGNORECASE)
