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
