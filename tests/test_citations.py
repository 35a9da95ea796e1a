"""Citations as the guideline prints them: the rules' reading, the guideline vocabulary, and
verification's own reading of a guideline line (verify/citations.py), held to strictness by
planted wrong values."""

from __future__ import annotations

import ast
import dataclasses
from importlib import resources
from pathlib import Path

import pytest

from conftest import document, rules_record
from imr_extract import vocabulary
from imr_extract.errors import NoDecisionsError
from imr_extract.extract import extract_document
from imr_extract.rules.guidelines import parse_guideline
from imr_extract.schema import CheckResult, CitationKind, Status
from imr_extract.verify.citations import read_line
from test_verify import GOLD, gold_answer, model_record, status


def citations_of(line: str) -> list[tuple[str, str, list[str], list[int]]]:
    g = parse_guideline(line, 0, len(line))
    return [
        (
            c.kind.value.value,
            c.source.value,
            [s.value for s in c.sections],
            [p.value for p in c.pages],
        )
        for c in g.citations
    ]


# --- the rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            "Decision based on MTUS Chronic Pain Medical Treatment Guidelines Page(s): 67, "
            "Section(s): NSAIDs.",
            [("MTUS", "Chronic Pain Medical Treatment Guidelines", ["NSAIDs"], [67])],
        ),
        (
            "Decision based on MTUS Chronic Pain Medical Treatment 2009, Page(s): 67-69, "
            "Section(s): NSAIDs, GI symptoms & cardiovascular risk.",
            [
                (
                    "MTUS",
                    "Chronic Pain Medical Treatment 2009",
                    ["NSAIDs, GI symptoms & cardiovascular risk"],
                    [67, 68, 69],
                )
            ],
        ),
        (
            "Decision based on MTUS Chronic Pain Medical Treatment 2016, Section(s): Topical "
            "analgesics, Section(s): NSAIDs.",
            [("MTUS", "Chronic Pain Medical Treatment 2016", ["Topical analgesics", "NSAIDs"], [])],
        ),
    ],
)
def test_labels_inside_a_list_are_labels(line, expected):
    assert citations_of(line) == expected
    assert not any(s.startswith(("Section", "Page")) for c in citations_of(line) for s in c[2])


@pytest.mark.parametrize(
    ("tail", "source", "pages"),
    [
        (
            "ACOEM Practice Guidelines, 3rd Edition, Low Back Disorders, pg. 607.",
            "ACOEM Practice Guidelines, 3rd Edition, Low Back Disorders",
            [607],
        ),
        (
            "Official Disability Guidelines (ODG), Pain, page 137.",
            "Official Disability Guidelines (ODG), Pain",
            [137],
        ),
        (
            "Harrison's Principles of Internal Medicine, p 301.",
            "Harrison's Principles of Internal Medicine",
            [301],
        ),
        ("ODG, Knee, Page(s): 12-14.", "ODG, Knee", [12, 13, 14]),
        ("ODG Low Back, pages 5 and 7.", "ODG Low Back", [5, 7]),
    ],
)
def test_pages_inside_a_non_mtus_source_are_pages(tail, source, pages):
    line = f"Decision based on Non-MTUS Citation {tail}"
    assert citations_of(line) == [("Non-MTUS", source, [], pages)]


def test_numbers_that_are_not_pages_stay_in_the_source():
    line = (
        "Decision based on Non-MTUS Citation University of Michigan Health System. "
        "Gastroesophageal reflux disease (GERD). Ann Arbor (MI); 2007 Jan. 10."
    )
    [(_, source, _, pages)] = citations_of(line)
    assert pages == [] and source.endswith("2007 Jan. 10")


@pytest.mark.parametrize(
    "marker", ["Non-MTUS", "Non-MTUS Citation", "Non-\nMTUS Citation", "Non-MTUS Citation:"]
)
def test_the_non_mtus_prefix_is_never_in_the_source(marker):
    line = f"Decision based on {marker} Official Disability Guidelines (ODG), Pain."
    assert citations_of(line) == [
        ("Non-MTUS", "Official Disability Guidelines (ODG), Pain", [], [])
    ]


@pytest.mark.parametrize(
    ("sections", "expected"),
    [
        (
            "NSAIDs, GI symptoms & cardiovascular risk, Proton Pump Inhibitors (PPIs)",
            ["NSAIDs, GI symptoms & cardiovascular risk", "Proton Pump Inhibitors (PPIs)"],
        ),
        (
            "3.3.1.1 Opioids for Chronic Pain and Chronic Opioid Treatment: Screening for Risk of "
            "Addiction or Adverse Events, Prior to Chronic Opioid Treatment: Screening for Drug "
            "Misuse/Abuse, 4.1 Tapering Opioids: Indications for Tapering Opioids",
            [
                "3.3.1.1 Opioids for Chronic Pain and Chronic Opioid Treatment: Screening for Risk "
                "of Addiction or Adverse Events, Prior to Chronic Opioid Treatment: Screening for "
                "Drug Misuse/Abuse",
                "4.1 Tapering Opioids: Indications for Tapering Opioids",
            ],
        ),
        (  # a numbered title the vocabulary does not know: the numbers say where sections start
            "3.2 Opioids for Chronic Pain: Risks, Benefits, 4.1 Tapering Opioids: Indications "
            "for Tapering Opioids",
            [
                "3.2 Opioids for Chronic Pain: Risks, Benefits",
                "4.1 Tapering Opioids: Indications for Tapering Opioids",
            ],
        ),
        (
            "NSAIDs (non-steroidal anti-inflammatory drugs), NSAIDs, hypertension and renal "
            "function, NSAIDs, specific drug list & adverse effects",
            [
                "NSAIDs (non-steroidal anti-inflammatory drugs)",
                "NSAIDs, hypertension and renal function",
                "NSAIDs, specific drug list & adverse effects",
            ],
        ),
    ],
)
def test_section_titles_with_commas_are_kept_whole(sections, expected):
    line = f"Decision based on MTUS Opioid Treatment 2016, Section(s): {sections}."
    [(_, _, got, _)] = citations_of(line)
    assert got == expected


def test_a_parenthesised_edition_belongs_to_the_title_and_ca_mtus_marks_the_kind():
    line = (
        "Decision based on CA MTUS: Chronic Pain Medical Treatment Guidelines (2009), Opioids, "
        "criteria for use, pages 76-78."
    )
    g = parse_guideline(line, 0, len(line))
    [cit] = g.citations
    assert line[cit.kind.start : cit.kind.end] == "MTUS"
    assert citations_of(line) == [
        (
            "MTUS",
            "Chronic Pain Medical Treatment Guidelines (2009)",
            ["Opioids, criteria for use"],
            [76, 77, 78],
        )
    ]
    # Verification's reader finds the same slots, on its own.
    r = read_line(line, 0, len(line))
    own = r.own_citation("Chronic Pain Medical Treatment Guidelines (2009)", set())
    assert own == 0
    assert r.source_verdict(own, cit.source.value).result is CheckResult.PASSED
    assert r.section_verdict(own, "Opioids, criteria for use").result is CheckResult.PASSED
    assert r.kind_verdict(own, CitationKind.MTUS).span == (18, 25)  # "CA MTUS"
    assert r.page_verdict(own, 2009).result is CheckResult.FAILED


# --- the vocabulary ----------------------------------------------------------------------------


def test_the_vocabulary_ships_in_the_package_and_knows_titles_and_sections():
    data = resources.files("imr_extract.vocabulary").joinpath("mtus.json")
    assert data.is_file()
    assert vocabulary.is_known_title("Low Back Complaints 2004")
    assert vocabulary.is_known_title("Forearm, Wrist, and Hand\nComplaints 2004")
    assert vocabulary.is_known_title("Chronic Pain Treatment Guidelines")
    assert not vocabulary.is_known_title("Low Back Complaints 2016")  # an edition it never had
    assert vocabulary.is_known_section("NSAIDs, GI symptoms &\ncardiovascular risk")
    assert not vocabulary.is_known_section("GI symptoms & cardiovascular risk")


def test_the_wheel_carries_the_vocabulary():
    """pyproject's hatch config ships the whole package directory, data files included."""
    pyproject = (Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert 'packages = ["src/imr_extract"]' in pyproject
    package = Path(vocabulary.__file__).parent
    assert (package / "mtus.json").is_file()


def test_every_mtus_title_and_multi_section_list_in_gold_is_known():
    """Grown from the bundled letters: every MTUS source in gold is a known title, and every
    section of a list of several is a known section (so no split of them is a guess)."""
    for g in GOLD.values():
        for item in g["items"]:
            for line in ("claims_administrator_guideline", "imr_guideline"):
                for c in item[line]["citations"]:
                    if c["kind"] != "MTUS":
                        continue
                    assert vocabulary.is_known_title(c["source"]), c["source"]
                    if len(c["sections"]) > 1:
                        for s in c["sections"]:
                            assert vocabulary.is_known_section(s), s


# --- verification's own reading -----------------------------------------------------------------


def test_verification_imports_nothing_from_the_rules():
    source = Path(read_line.__code__.co_filename).read_text(encoding="utf-8")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            assert "rules" not in (node.module or ""), node.module
        elif isinstance(node, ast.Import):
            assert all("rules" not in a.name for a in node.names)


def slots(line: str) -> list[tuple[str | None, str | None, dict[int, str]]]:
    r = read_line(line, 0, len(line))
    return [
        (
            c.kind.value if c.kind else None,
            line[c.source[0] : c.source[1]] if c.source else None,
            {n: line[s:e] for n, (s, e) in c.pages.items()},
        )
        for c in r.citations
    ]


def test_the_reader_finds_each_citations_slots():
    line = (
        "Decision based on MTUS Low Back Complaints 2004, Section(s): Special Studies, and "
        "Forearm, Wrist, and Hand\nComplaints 2004, Section(s): Summary. Decision based on Non-\n"
        "MTUS Citation ACOEM, Low Back Disorders, pg. 607-608."
    )
    assert slots(line) == [
        ("MTUS", "Low Back Complaints 2004", {}),
        ("MTUS", "Forearm, Wrist, and Hand\nComplaints 2004", {}),
        ("Non-MTUS", "ACOEM, Low Back Disorders", {607: "607", 608: "608"}),
    ]


@pytest.mark.parametrize("marker", ["Non-MTUS", "Non-\nMTUS", "Non- MTUS", "non-mtus"])
def test_the_non_mtus_marker_is_read_however_it_is_broken(marker):
    line = f"Decision based on {marker} Citation ODG, Knee."
    r = read_line(line, 0, len(line))
    [cit] = r.citations
    assert cit.kind is CitationKind.NON_MTUS
    assert line[cit.source[0] : cit.source[1]] == "ODG, Knee"
    assert r.kind_verdict(0, CitationKind.MTUS).result is CheckResult.FAILED


def test_a_number_is_a_page_only_after_a_page_label():
    line = "Decision based on MTUS Elbow Complaints 2007, Section(s): 326, Page(s): 46-48."
    r = read_line(line, 0, len(line))
    assert set(r.citations[0].pages) == {46, 47, 48}
    for number in (2007, 326):
        assert r.page_verdict(0, number).result is CheckResult.FAILED
    assert r.page_verdict(0, 47).result is CheckResult.PASSED


def test_a_page_of_another_citation_in_the_line_fails():
    line = (
        "Decision based on MTUS Chronic Pain Treatment Guidelines Page(s): 46. Decision based on "
        "Non-MTUS Citation ODG Low Back, pg. 12."
    )
    r = read_line(line, 0, len(line))
    mtus = r.own_citation("Chronic Pain Treatment Guidelines", set())
    assert r.page_verdict(mtus, 46).result is CheckResult.PASSED
    assert r.page_verdict(mtus, 12).result is CheckResult.FAILED


def test_a_split_the_vocabulary_does_not_know_is_not_verified():
    line = (
        "Decision based on MTUS Chronic Pain Medical Treatment 2016, Section(s): Foo bar, Baz qux."
    )
    r = read_line(line, 0, len(line))
    for section in ("Foo bar", "Baz qux", "Foo bar, Baz qux"):
        assert r.section_verdict(0, section).result is CheckResult.INCONCLUSIVE
    assert r.section_verdict(0, "Foo").result is CheckResult.FAILED


# --- planted wrong values: never verified --------------------------------------------------------

LOW_BACK_AND_CPMT = "CM17-0003890.pdf"  # imr: Low Back Complaints 2004 (2 sections), and CPMT 2016
NSAIDS_GI = "CM17-0009995.pdf"  # item 1 imr: "NSAIDs, GI symptoms & cardiovascular risk"
NON_MTUS_ONLY = "CM16-0249724.pdf"  # every line outside the MTUS, Non-MTUS citations only
NOT_CITED = "CM16-0231745.pdf"  # item 0's claims administrator line cites nothing


def _imr(answer, i=0):
    return answer.items[i].imr_guideline


def test_an_edition_year_is_not_a_page():
    answer = gold_answer(GOLD[LOW_BACK_AND_CPMT])
    low_back = _imr(answer).citations[0]
    assert low_back.source == "Low Back Complaints 2004"
    low_back.pages = [2004]
    record = model_record(LOW_BACK_AND_CPMT, answer)
    path = "items[0].imr_guideline.citations[0].pages[0]"
    assert status(record, path) is Status.CONTRADICTED
    assert record.provenance[path].failed_checks == ["pages_in_guideline_line"]


def test_a_section_of_the_other_citation_is_contradicted():
    answer = gold_answer(GOLD[LOW_BACK_AND_CPMT])
    low_back, cpmt = _imr(answer).citations
    low_back.sections.append(cpmt.sections[0])  # "Physical medicine treatment", the 2016 part's
    record = model_record(LOW_BACK_AND_CPMT, answer)
    assert status(record, "items[0].imr_guideline.citations[0].sections[2]") is Status.CONTRADICTED
    assert status(record, "items[0].imr_guideline.citations[1].sections[0]") is Status.VERIFIED


@pytest.mark.parametrize(
    "source",
    [
        "Physical medicine treatment",  # a section given as the source
        "Chronic Pain Medical Treatment",  # truncated: no edition
        "Chronic Pain Medical Treatment 2016, Section(s): Physical medicine treatment",
        "MTUS Chronic Pain Medical Treatment 2016",
    ],
)
def test_a_source_that_is_not_a_whole_source_slot_is_not_verified(source):
    answer = gold_answer(GOLD[LOW_BACK_AND_CPMT])
    _imr(answer).citations[1].source = source
    record = model_record(LOW_BACK_AND_CPMT, answer)
    assert status(record, "items[0].imr_guideline.citations[1].source") is not Status.VERIFIED
    assert status(record, "items[0].imr_guideline.citations[0].source") is Status.VERIFIED


def test_a_non_mtus_source_keeping_its_label_or_cut_short_is_not_verified():
    for source in (
        "Non-MTUS Citation Official Disability Guidelines (ODG) Knee & Leg, Durable medical "
        "equipment (DME)",
        "Official Disability Guidelines (ODG) Knee & Leg",
    ):
        answer = gold_answer(GOLD[NON_MTUS_ONLY])
        _imr(answer).citations[0].source = source
        record = model_record(NON_MTUS_ONLY, answer)
        assert status(record, "items[0].imr_guideline.citations[0].source") is not Status.VERIFIED


def test_a_kind_is_verified_only_by_its_own_marker():
    answer = gold_answer(GOLD[NON_MTUS_ONLY])
    # The line says "outside of the MTUS Guidelines" and "Non-MTUS": "MTUS" is in it, but this
    # citation is marked Non-MTUS.
    _imr(answer).citations[0].kind = CitationKind.MTUS
    record = model_record(NON_MTUS_ONLY, answer)
    assert status(record, "items[0].imr_guideline.citations[0].kind") is Status.CONTRADICTED

    answer = gold_answer(GOLD[LOW_BACK_AND_CPMT])
    _imr(answer).citations[1].kind = CitationKind.NON_MTUS
    record = model_record(LOW_BACK_AND_CPMT, answer)
    assert status(record, "items[0].imr_guideline.citations[1].kind") is Status.CONTRADICTED


def test_a_known_section_cut_in_two_is_not_verified():
    letter = NSAIDS_GI
    answer = gold_answer(GOLD[letter])
    cit = _imr(answer, 1).citations[0]
    assert cit.sections == ["NSAIDs, GI symptoms & cardiovascular risk"]
    cit.sections = ["NSAIDs", "GI symptoms & cardiovascular risk"]
    record = model_record(letter, answer)
    for s in range(2):
        path = f"items[1].imr_guideline.citations[0].sections[{s}]"
        assert status(record, path) is not Status.VERIFIED


def test_a_section_keeping_its_label_is_contradicted():
    answer = gold_answer(GOLD[LOW_BACK_AND_CPMT])
    _imr(answer).citations[0].sections[0] = "Section(s): Initial Care"
    record = model_record(LOW_BACK_AND_CPMT, answer)
    assert status(record, "items[0].imr_guideline.citations[0].sections[0]") is Status.CONTRADICTED


@pytest.mark.parametrize(
    ("letter", "flag", "value"),
    [
        (LOW_BACK_AND_CPMT, "outside_mtus", True),  # the line says nothing of outside the MTUS
        (NON_MTUS_ONLY, "outside_mtus", False),  # it says "outside of the MTUS Guidelines"
        (NOT_CITED, "cited", True),  # "did not cite any medical evidence"
    ],
)
def test_a_flag_is_checked_by_its_own_words(letter, flag, value):
    answer = gold_answer(GOLD[letter])
    line = "imr_guideline" if letter != NOT_CITED else "claims_administrator_guideline"
    setattr(getattr(answer.items[0], line), flag, value)
    record = model_record(letter, answer)
    assert status(record, f"items[0].{line}.{flag}") is Status.CONTRADICTED


def test_an_invented_citation_on_a_line_that_cites_nothing_is_contradicted():
    answer = gold_answer(GOLD[NOT_CITED])
    ca = answer.items[0].claims_administrator_guideline
    assert ca.citations == []
    ca.citations = [_imr(answer).citations[0].model_copy(deep=True)]
    record = model_record(NOT_CITED, answer)
    for field in ("source", "kind"):
        path = f"items[0].claims_administrator_guideline.citations[0].{field}"
        assert status(record, path) is Status.CONTRADICTED


# --- rule output: every bundled letter, and a hyphenated marker ---------------------------------


@pytest.mark.parametrize("letter", sorted(GOLD))
def test_every_rules_citation_value_is_verified_by_its_own_check(letter):
    record = rules_record(letter)
    checked = {
        p
        for c in record.verification.checks
        if c.result is CheckResult.PASSED
        and c.name
        in (
            "guideline_flags_match_line",
            "sources_in_guideline_line",
            "sections_in_guideline_line",
            "pages_in_guideline_line",
            "citation_kind_in_line",
        )
        for p in c.paths
    }
    paths = [p for p in record.provenance if "_guideline." in p]
    assert paths
    assert [p for p in paths if record.provenance[p].status is not Status.VERIFIED] == []
    assert [p for p in paths if p not in checked] == []


def test_a_non_mtus_marker_hyphenated_across_a_line_break_passes():
    letter = NON_MTUS_ONLY
    doc = document(letter)
    assert "Non-MTUS Citation" in doc.text
    variant = dataclasses.replace(
        doc, text=doc.text.replace("Non-MTUS Citation", "Non-\nMTUS Citation")
    )
    record = extract_document(variant)
    kinds = [p for p in record.provenance if p.endswith(".kind")]
    assert kinds
    for p in kinds:
        assert record.provenance[p].status is Status.VERIFIED, p
    # The same citations as the letter printed without the break.
    assert record.items == rules_record(letter).items


VARIANTS = {
    "padded": lambda t: t.replace("\n", "    \n  "),  # a layout-preserving tool's padding
    "double-spaced": lambda t: t.replace("\n", "\n\n"),
    "hyphenated marker": lambda t: t.replace("Non-MTUS", "Non-\nMTUS"),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_derived_text_variants_keep_every_rules_citation_value_verified(variant):
    """The same letters as other tools print them: no right citation value is flagged."""
    checked = 0
    for letter in sorted(GOLD):
        doc = document(letter)
        text = VARIANTS[variant](doc.text)
        try:
            record = extract_document(dataclasses.replace(doc, text=text))
        except NoDecisionsError:  # a variant the item rules cannot read: another part's concern
            continue
        for p, prov in record.provenance.items():
            if "_guideline." in p:
                checked += 1
                assert prov.status is Status.VERIFIED, (letter, p, prov.failed_checks)
    assert checked > 1000
