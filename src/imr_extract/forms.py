"""Facts about the printed forms: section headings and field labels, nothing that reads a value.

Invariant: every pattern here matches a heading or a label as the letters print it, never the
value that follows. The rules (which read values) and verification (which judges them) both use
these facts; neither imports the other's readings, so two independent readings of one letter
meet only at the labels the form itself prints.
"""

from __future__ import annotations

import re

from .schema import Sex
from .text import soft_phrase

# --- section headings ----------------------------------------------------------------------------

#: The heading of the decisions section, in the forms' wordings.
SECTION_RX = re.compile(
    r"IMR\s+ISSUES,?\s+DECISIONS?\s+AND\s+RATIONALES?"
    r"|IMR\s+DECISION\(?S?\)?\s+AND\s+RATIONALE\(?S?\)?"
    r"|ISSUES?\s+AT\s+DISPUTE",
)
#: The sentence that opens the 2016-17 decisions list ("... are set forth below:").
SECTION_INTRO_RX = re.compile(r"set\s+forth\s+below\s*:")
#: The heading each form prints once, over the section that states its decisions (the 2016-17
#: and prose forms, the MAXIMUS decisions form, the MEDICAL PROFESSIONAL REVIEW form, the 2013
#: notice), in capitals as printed. Unlike ``SECTION_RX`` it leaves out "ISSUE AT DISPUTE",
#: which lists the items without deciding them. Printed twice, it is a letter's structure
#: made up (or two letters): the decisions are read under one heading only.
DECISIONS_HEADING_RX = re.compile(
    r"IMR\s+ISSUES,?\s+DECISIONS?\s+AND\s+RATIONALES?"
    r"|IMR\s+DECISION\(?S?\)?\s+AND\s+RATIONALE\(?S?\)?"
    r"|DETERMINATIONS?\s+AND\s+RATIONALES?"
    r"|INDEPENDENT\s+MEDICAL\s+REVIEW\s+DECISION\s+AND\s+RATIONALE"
)
#: The heading of the case summary, in the forms' wordings ("CLINICAL CASE SUMMARY", "EXPERT
#: REVIEWER CASE SUMMARY", "CASE SUMMARY", the notice's "Expert Reviewer Case Summary:").
SUMMARY_HEADING_RX = re.compile(r"CASE\s+SUMMARY|Case\s+Summary\s*:")

# --- item labels ---------------------------------------------------------------------------------
# As the 2016-17 form prints them ("Claims Administrator guideline:", "MAXIMUS guideline:",
# "Decision rationale:"), as the MEDICAL PROFESSIONAL REVIEW form does ("Guidelines relied upon by
# the Claims Administrator:", "... by the Medical Reviewer:", "Rationale:"). A form's reader
# adds its labels here, so that verification ties items to them too.

# The 2013 notice prints "Medical Treatment Guideline(s) Relied Upon by the Claims
# Administrator:" / "... by the Expert Reviewer:" / "Rationale for the Decision:".

CA_LABEL_RX = re.compile(
    r"Claims\s+Administrator\s+guidelines?\s*:"
    r"|(?:Medical\s+Treatment\s+)?Guidelines?(?:\(s\))?\s+relied\s+upon\s+by\s+the\s+"
    r"Claims\s+Administrator\s*:",
    re.IGNORECASE,
)
IMR_LABEL_RX = re.compile(
    r"(?:MAXIMUS|IMR|Expert\s+Reviewer(?:'s)?|Reviewer(?:'s)?)\s+guidelines?\s*:"
    r"|(?:Medical\s+Treatment\s+)?Guidelines?(?:\(s\))?\s+relied\s+upon\s+by\s+the\s+"
    r"(?:Medical|Expert)\s+Reviewer\s*:",
    re.IGNORECASE,
)
RATIONALE_LABEL_RX = re.compile(
    r"(?:Decision\s+)?rationale\s*:|Rationale\s+for\s+the\s+Decision\s*:", re.IGNORECASE
)

#: The item labels with their spacing left out, matched at the start of a line whose whitespace is
#: removed: a PDF-to-text tool may split a label's word ("Claims Administrator gui deline:").
ITEM_LABELS_UNSPACED: tuple[re.Pattern[str], ...] = tuple(
    re.compile(rx.pattern.replace(r"\s+", "").replace(r"\s*", ""), rx.flags)
    for rx in (CA_LABEL_RX, IMR_LABEL_RX, RATIONALE_LABEL_RX)
)

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

# --- header labels -------------------------------------------------------------------------------

#: Record field -> the labels the forms print before it (2016-17 form, the MAXIMUS decisions form,
#: the MEDICAL PROFESSIONAL REVIEW form, the 2013 notice). Words may be split by any whitespace.
HEADER_LABELS: dict[str, tuple[str, ...]] = {
    "case_number": ("IMR Case Number:", "IMR Case No.:", "Case Number:", "Case No.:"),
    "priority": ("Review Priority:", "Priority:"),
    "dates.assigned": ("Date Assigned:", "Assignment Date:"),
    "dates.injury": ("Date of Injury:",),
    "dates.decision": ("Decision Date:", "Date of Review:", "Dated:"),
    "dates.ur_denial": ("UR Denial Date:", "Utilization Review Date:", "Date of UR Decision:"),
    "dates.application_received": (
        "IMR Application Received:",
        "IMR Application Date:",
        "Application Received:",
    ),
}
#: Record field -> phrases after which a letter states the date in prose (the 2013 notice, the
#: older letters' case summaries): "filed on 9/6/2013", "Utilization Review Denial dated ...".
PROSE_DATE_CUES: dict[str, tuple[str, ...]] = {
    "dates.application_received": ("Independent Medical Review was filed on",),
    "dates.ur_denial": ("Utilization Review Denial dated", "Utilization Review decision dated"),
    "dates.assigned": ("was provided to the above parties on",),
    "dates.injury": (
        "industrial injury on",
        "work injury on",
        "work injury dated",
        "injury dated",
        "injury on",
        "date of injury of",
        "date of injury on",
    ),
}

# --- partial authorisations ----------------------------------------------------------------------
# The two wordings the forms print for a partly authorised request:
#   "X was the original request. Y was authorized by the Claims Administrator. The remaining IMR
#    eligible portion of the original request, Z is: Upheld"
#   "X was the original request. The Claims Administrator authorized Y, leaving the original
#    request IMR eligible. The original request, Z"
#: The words right after the original request (X).
ORIGINAL_FOLLOWED_BY = "was the original request"
#: (words right before, words right after) the authorised part (Y), per wording.
AUTHORIZED_BETWEEN: tuple[tuple[str, str], ...] = (
    ("was the original request", "was authorized by the Claims Administrator"),
    ("The Claims Administrator authorized", "leaving the original request"),
)
#: What stands right before the remaining request (Z) in both wordings.
REMAINING_LEAD_RX = re.compile(r"original\s+request\s*,", re.IGNORECASE)

# --- wording -------------------------------------------------------------------------------------

#: The words a case summary uses for the patient's sex ("a 48 year old male").
SEX_WORDS = {
    "male": Sex.MALE,
    "man": Sex.MALE,
    "gentleman": Sex.MALE,
    "boy": Sex.MALE,
    "female": Sex.FEMALE,
    "woman": Sex.FEMALE,
    "lady": Sex.FEMALE,
    "girl": Sex.FEMALE,
}

# --- the 2013 "Notice of Independent Medical Review Determination" -------------------------------
# Its header prints labelled values; its decisions section opens with a sentence giving three
# dates, then numbered decision sentences ("1. MAXIMUS Federal Services, Inc. has determined the
# request for <request> is not medically necessary and appropriate."), which a letter may print
# twice; each item is then set out under "1. Regarding the request for <request>:" and closes
# with "The reviewer has determined that the request for <request> is ... . The Utilization Review
# decision is upheld." Numbering is "1." or "1)".

NOTICE_TITLE_RX = re.compile(r"Notice\s+of\s+Independent\s+Medical\s+Review\s+Determination")
NOTICE_DECISIONS_HEADING_RX = re.compile(
    r"INDEPENDENT\s+MEDICAL\s+REVIEW\s+DECISION\s+AND\s+RATIONALE"
)
NOTICE_QUALIFICATIONS_RX = re.compile(
    r"Medical\s+Qualifications\s+of\s+the\s+Expert\s+Reviewer\s*:", re.IGNORECASE
)
#: "Expert Reviewer Case Summary:" or "Case Summary:".
NOTICE_SUMMARY_RX = re.compile(r"Case\s+Summary\s*:", re.IGNORECASE)
#: Record field -> the header label printed before it.
NOTICE_DATE_LABELS: dict[str, str] = {
    "decision": "Dated:",
    "ur_denial": "Date of UR Decision:",
    "injury": "Date of Injury:",
    "application_received": "IMR Application Received:",
}
#: Record field -> the words the decisions section's opening sentence prints before that date
#: ("An application for Independent Medical Review was filed on <date> disputing the Utilization
#: Review Denial dated <date>. A Notice of Assignment ... was provided to the above parties on
#: <date>.").
NOTICE_PROSE_DATE_PHRASES: dict[str, str] = {
    "application_received": "Independent Medical Review was filed on",
    "ur_denial": "Utilization Review Denial dated",
    "assigned": "provided to the above parties on",
}
#: An item number at a line's start: "1." or "1)".
NOTICE_NUMBER = r"^[ \t\f]*(?P<number>\d{1,2})[ \t]*[.)][ \t]+"
#: The words that open a numbered decision sentence, up to its request.
NOTICE_DECISION_OPENING = (
    r"MAXIMUS\s+Federal\s+Services,?\s+Inc\.?,?\s+has\s+determined\s+(?:that\s+)?"
    r"the\s+request\s+for\s+"
)
#: The heading of one item's detailed section, up to its request.
NOTICE_ITEM_HEADING_RX = re.compile(
    NOTICE_NUMBER + r"Regarding\s+the\s+request\s+for\s+", re.MULTILINE | re.IGNORECASE
)
#: The sentence that closes an item's detailed section, up to its request.
NOTICE_CLOSING_OPENING_RX = re.compile(
    r"The\s+(?:expert\s+|physician\s+)?reviewer\s+has\s+determined\s+(?:that\s+)?"
    r"the\s+request\s+for\s+",
    re.IGNORECASE,
)
#: "The Utilization Review decision is upheld." (after it, the decision word).
NOTICE_UR_DECISION_RX = re.compile(r"The\s+Utilization\s+Review\s+decision\s+is\s+", re.IGNORECASE)

# --- the reviewer's credentials ------------------------------------------------------------------

#: Labels before the reviewer's states of licensure, specialty and subspecialty.
LICENSURE_LABEL_RX = re.compile(r"State\(s\)\s+of\s+Licensure\s*:|(?<![\w)])Licensure\s*:")
SPECIALTY_LABEL_RX = re.compile(
    r"Certification\(s\)\s*/\s*Specialty\s*:|Board\s+Certifications?(?:\(s\))?\s*:"
)
SUBSPECIALTY_LABEL_RX = re.compile(r"Sub-?specialty\s*:", re.IGNORECASE)
#: The prose form: "is Board Certified in X, has a subspecialty in Y and is licensed to practice
#: in Z." (the words right before each value).
SPECIALTY_CUE_RX = re.compile(r"Board\s+Certified\s+in\s+", re.IGNORECASE)
SUBSPECIALTY_CUE_RX = re.compile(
    "(?:" + soft_phrase("subspecialty") + "|" + soft_phrase("sub-specialty") + r")\s+in\s+",
    re.IGNORECASE,
)
LICENSURE_CUE_RX = re.compile(r"licensed\s+to\s+practice\s+in\s+", re.IGNORECASE)
#: Where a prose credential value ends: the next clause of the sentence, or its end.
CREDENTIAL_CLAUSE_END_RX = re.compile(
    r",?\s+(?:has|with)\s+a\s+(?:"
    + soft_phrase("subspecialty")
    + "|"
    + soft_phrase("sub-specialty")
    + r")\b|,?\s+and\s+(?:is\s+)?"
    + soft_phrase("licensed")
    + r"\b|\.(?=\s)|\.\Z",
    re.IGNORECASE,
)
#: The states, districts and territories a reviewer may be licensed in.
US_STATES: frozenset[str] = frozenset(
    {
        "Alabama", "Alaska", "Arizona", "Arkansas", "California", "Colorado", "Connecticut",
        "Delaware", "Florida", "Georgia", "Hawaii", "Idaho", "Illinois", "Indiana", "Iowa",
        "Kansas", "Kentucky", "Louisiana", "Maine", "Maryland", "Massachusetts", "Michigan",
        "Minnesota", "Mississippi", "Missouri", "Montana", "Nebraska", "Nevada",
        "New Hampshire", "New Jersey", "New Mexico", "New York", "North Carolina",
        "North Dakota", "Ohio", "Oklahoma", "Oregon", "Pennsylvania", "Rhode Island",
        "South Carolina", "South Dakota", "Tennessee", "Texas", "Utah", "Vermont", "Virginia",
        "Washington", "West Virginia", "Wisconsin", "Wyoming", "District of Columbia",
        "Puerto Rico", "Guam", "Virgin Islands",
    }
)  # fmt: skip
