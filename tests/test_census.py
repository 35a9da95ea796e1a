"""The census: an independent count of the decisions a letter states, and what it catches.

Each test plants, in a real letter's text, the loss or invention the census exists to catch and
asserts that the record no longer looks complete; the untouched letters must all be complete
(a flag that cries wolf is a failure too).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imr_extract.errors import NoDecisionsError, SeveralLettersError
from imr_extract.extract import extract_document
from imr_extract.ingest import read_path, read_text_bytes
from imr_extract.schema import CheckResult, Decision, LetterRecord, Status
from imr_extract.verify import verify
from imr_extract.verify.census import take_census, tokens

DATA = Path(__file__).parent / "data"
LETTERS = sorted((DATA / "letters").rglob("*.pdf")) + sorted((DATA / "letters").rglob("*.txt"))
RELAID = sorted((DATA / "relaid").rglob("*.txt"))
_WORD_LINE_RX = re.compile(r"(?<=:)([ \t]*\n?[ \t]*)(Upheld|Overturned)\b")


def _text(path: Path) -> str:
    return read_path(path).text


def _extract(text: str, name: str = "letter.txt") -> LetterRecord:
    return extract_document(read_text_bytes(text.encode("utf-8"), name))


def _gold_items(path: Path) -> int:
    gold = json.loads((DATA / "gold" / f"{path.stem}.json").read_text(encoding="utf-8"))
    return len(gold["items"])


def _failed(record: LetterRecord) -> list[str]:
    assert record.verification is not None
    return [c.name for c in record.verification.checks if c.result is CheckResult.FAILED]


@pytest.mark.parametrize("path", LETTERS, ids=lambda p: p.name)
def test_census_counts_every_gold_item_and_the_record_is_complete(path: Path) -> None:
    text = _text(path)
    census = take_census(text)
    assert len(census.statements) == _gold_items(path)
    assert census.letters == [] and census.orphan_lines == []
    record = extract_document(read_path(path))
    assert record.verification is not None
    assert record.verification.complete is True
    assert record.verification.unaccounted_decisions == 0


@pytest.mark.parametrize("path", RELAID, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_census_reads_the_other_forms(path: Path) -> None:
    gold = json.loads(
        (DATA / "relaid" / "gold" / f"{path.parent.name}__{path.stem}.json").read_text()
    )
    census = take_census(path.read_text(encoding="utf-8"))
    decided = {s.decision for s in census.statements}
    assert decided == {Decision(i["decision"]) for i in gold["items"]}
    # The 2013 notice prints each decision twice (summary and detail): at least once each.
    assert len(census.statements) >= len(gold["items"])


def test_deleting_one_decision_word_makes_the_record_incomplete() -> None:
    text = _text(DATA / "letters" / "pdf" / "CM17-0014449.pdf")  # 15 items
    words = list(_WORD_LINE_RX.finditer(text))
    assert len(words) == 15
    for k in (0, 7, 14):
        m = words[k]
        planted = text[: m.start(2)] + text[m.end(2) :]
        try:
            record = _extract(planted)
        except NoDecisionsError:  # pragma: no cover - a one-item letter would say so
            continue
        assert record.verification is not None
        assert len(record.items) == 14
        assert record.verification.complete is False
        assert record.verification.coverage < 1.0
        assert "guideline_lines_accounted_for" in _failed(record)


def test_a_decision_word_two_lines_below_its_request_is_counted() -> None:
    text = _text(DATA / "letters" / "pdf" / "CM17-0002857.pdf")
    m = _WORD_LINE_RX.search(text)
    assert m is not None
    planted = text[: m.start(1)] + "  \n\n   \n" + text[m.start(2) :]
    census = take_census(planted)
    assert [s.decision for s in census.statements] == [Decision.UPHELD]


def test_running_headers_between_request_and_decision_are_skipped() -> None:
    text = _text(DATA / "letters" / "pdf" / "CM16-0245466.pdf")  # 8 items
    header = "IMR Case Number CM16-0245466 (continued)"
    planted = _WORD_LINE_RX.sub(lambda m: f"\n\f{header}\nPage 3 of 9\n{m.group(2)}", text)
    planted += f"\n{header}\n"
    census = take_census(planted)
    assert len(census.statements) == 8


def test_an_item_the_rules_drop_is_an_unaccounted_decision() -> None:
    """The census reads a decision the rules do not ("...hip and foot:" / "Upheld." in prose
    of a shape the rules miss): the record must say it holds fewer decisions than the letter."""
    text = _text(DATA / "letters" / "pdf" / "CM16-0236380.pdf")  # 3 items
    words = list(_WORD_LINE_RX.finditer(text))
    m = words[1]
    # "Upheld" -> "Upheld." on a line of its own, two lines below: the rules' decision pattern
    # wants the word at the end of the line right after the colon.
    planted = text[: m.start(1)] + "\n\n" + m.group(2).upper() + " ." + text[m.end(2) :]
    record = _extract(planted)
    assert record.verification is not None
    census = take_census(planted)
    assert len(census.statements) == 3
    if len(record.items) < 3:
        assert record.verification.complete is False
        assert record.verification.unaccounted_decisions >= 1
        assert "decisions_accounted_for" in _failed(record)
    else:  # the rules read it: then every item is held and the record is complete
        assert record.verification.complete is True


def test_two_letters_pasted_together_are_flagged() -> None:
    a = _text(DATA / "letters" / "pdf" / "CM16-0239479.pdf")
    b = _text(DATA / "letters" / "pdf" / "CM17-0002857.pdf")
    census = take_census(a + "\n\f" + b)
    assert len(census.letters) == 2
    # Extraction refuses it, naming the file and the cause ...
    with pytest.raises(SeveralLettersError, match=r"pasted\.txt: the text holds 2 letters"):
        _extract(a + "\n\f" + b, "pasted.txt")
    # ... and a record of it from elsewhere is never complete.
    record = _extract(a)
    record = verify(record.model_copy(update={"provenance": record.provenance}), a + "\n\f" + b)
    assert record.verification is not None
    assert record.verification.complete is False
    assert "one_letter_per_text" in _failed(record)


def test_numbered_decision_sentences_with_glued_negation() -> None:
    text = (
        "A decision has been made for each of the treatment and/or services in dispute:\n"
        "1) MAXIMUS Federal Services, Inc. has determined the request for a 28 day\n"
        "functional restoration program is notmedically necessary and appropriate.\n"
        "2) MAXIMUS Federal Services, Inc. has determined the request for physical\n"
        "therapy is medically necessary and appropriate.\n"
    )
    census = take_census(text)
    assert [s.decision for s in census.statements] == [Decision.UPHELD, Decision.OVERTURNED]
    subject = census.statements[0].subject
    assert subject is not None
    assert tokens(text[subject[0] : subject[1]]) == tokens(
        "a 28 day functional restoration program"
    )


def test_tokens_fold_case_hyphenation_and_padding() -> None:
    assert tokens("Non-\nMTUS  Citation") == tokens("non-MTUS citation")
    assert tokens("medi-\n  cally NECESSARY") == ["medically", "necessary"]


def test_a_request_cut_at_a_date_line_is_not_verified() -> None:
    """`…, #1 box with 1 refill, DOS: ` / `11/11/2016:  Upheld` read as the request
    `11/11/2016`: the request does not open where its block opens, so it is not verified."""
    text = _text(DATA / "letters" / "pdf" / "CM16-0239479.pdf")
    m = _WORD_LINE_RX.search(text)
    assert m is not None
    colon = m.start() - 1
    line_start = text.rfind("\n", 0, colon) + 1
    request = text[line_start:colon]
    planted = (
        text[:line_start]
        + request.rstrip()
        + ", #1 box with 1 refill, DOS:\n11/11/2016"
        + text[colon:]
    )
    record = _extract(planted)
    req = record.items[0].request
    prov = record.provenance["items[0].request"]
    if req == "11/11/2016":
        assert prov.status is not Status.VERIFIED
    else:
        assert req.endswith("DOS: 11/11/2016")
        assert prov.status is Status.VERIFIED
