"""``imr-extract compare``: agreement counts, decision kappa, disagreements with their spans.

The rules-vs-LLM tests replay the recorded model answers (cassettes/), as test_llm_replay does.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from typer.testing import CliRunner

from conftest import GOLD, document, letter_path, rules_record
from imr_extract.cli import app
from imr_extract.compare import Comparison, cohen_kappa, compare, fuzzy_equal
from imr_extract.evaluate import evaluate
from imr_extract.fields import ITEM_FIELDS, LETTER_FIELDS, FieldKind
from imr_extract.llm import LLMExtractor
from imr_extract.schema import LetterRecord, MatchKind
from imr_extract.text import fold
from imr_extract.verify.grounding import span_holds, value_at
from llm_cassettes import RECORD_BASE_URL, RECORD_MODEL, recorded
from test_llm_replay import FULL_LETTERS, LONG_ANSWERS, cassette_name, meta_for, replay_config

runner = CliRunner()
LETTERS = ["CM16-0231706.pdf", "000_95767a46bf993051.txt"]
SPECS = {s.name: s for s in LETTER_FIELDS + ITEM_FIELDS}
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


def item(request: str, decision: str) -> dict[str, Any]:
    return {"request": request, "decision": decision}


# --- kappa and fuzzy agreement ---------------------------------------------------------------


def test_kappa_on_a_hand_computed_example():
    # Three letters, eight alignment rows (left, right):
    #   a.pdf: (upheld, upheld) x3, (upheld, overturned)
    #   b.pdf: (overturned, overturned), (overturned, missing)   right dropped an item
    #   c.pdf: (missing, upheld), (upheld, upheld)               right invented an item
    # p_o = 5 agreeing rows / 8 = 0.625
    # left:  upheld 5, overturned 2, missing 1; right: upheld 5, overturned 2, missing 1
    # p_e = (5*5 + 2*2 + 1*1) / 8^2 = 30/64 = 0.46875
    # kappa = (0.625 - 0.46875) / (1 - 0.46875) = 0.15625 / 0.53125 = 5/17 ~ 0.294
    left = [
        {
            "letter": "a.pdf",
            "items": [
                item("Lumbar MRI", "upheld"),
                item("Norco 10/325 #60", "upheld"),
                item("Acupuncture x6", "upheld"),
                item("TENS unit", "upheld"),
            ],
        },
        {
            "letter": "b.pdf",
            "items": [item("Home health aide", "overturned"), item("Gym membership", "overturned")],
        },
        {"letter": "c.pdf", "items": [item("Knee brace", "upheld")]},
    ]
    right = [
        {
            "letter": "a.pdf",
            "items": [
                item("Lumbar MRI", "upheld"),
                item("Norco 10/325 #60", "upheld"),
                item("Acupuncture x6", "upheld"),
                item("TENS unit", "overturned"),
            ],
        },
        {"letter": "b.pdf", "items": [item("Home health aide", "overturned")]},
        {
            "letter": "c.pdf",
            "items": [item("Psychotherapy sessions", "upheld"), item("Knee brace", "upheld")],
        },
    ]
    c = compare(left, right)
    assert c.decisions == [
        ("upheld", "upheld"),
        ("upheld", "upheld"),
        ("upheld", "upheld"),
        ("upheld", "overturned"),
        ("overturned", "overturned"),
        ("overturned", "missing"),
        ("missing", "upheld"),
        ("upheld", "upheld"),
    ]
    assert c.decision_agreement == 0.625
    assert c.kappa == pytest.approx(5 / 17)
    assert c.items_count() == {"aligned": 6, "left_only": 1, "right_only": 1}
    assert cohen_kappa(c.decisions) == c.kappa


def test_kappa_extremes():
    assert cohen_kappa([]) is None
    assert cohen_kappa([("upheld", "upheld")] * 3) is None  # p_e = 1: undefined
    assert cohen_kappa([("upheld", "upheld"), ("overturned", "overturned")]) == 1.0
    # Always disagreeing with balanced categories: p_o = 0, p_e = 0.5, kappa = -1.
    assert cohen_kappa([("upheld", "overturned"), ("overturned", "upheld")]) == -1.0


def test_fuzzy_agreement():
    assert fuzzy_equal("Physical Medicine & Rehabilitation", "physical  medicine &\nrehabilitation")
    # difflib ratio on the folded forms: 2 * 33 common / 70 chars = 0.943 >= 0.9
    assert fuzzy_equal("Chronic Pain Medical Treatment 2016", "Chronic Pain Medical Treatment 2009")
    assert not fuzzy_equal("Standard", "Standard Application")  # ratio 16/28 = 0.57
    assert not fuzzy_equal(["California"], ["CA"])
    assert fuzzy_equal(["ODG", "acoem"], ["ACOEM", "odg"], FieldKind.SET)
    assert not fuzzy_equal(["ODG", "acoem"], ["ACOEM", "odg"], FieldKind.LIST)  # order counts
    assert fuzzy_equal({"cited": True, "source": "ODG Knee"}, {"cited": True, "source": "odg knee"})
    assert not fuzzy_equal({"cited": True}, {"cited": False})
    assert not fuzzy_equal(46, 47)


def test_agreement_counts_and_disagreement_paths():
    left = {
        "letter": "a.pdf",
        "priority": "Standard",
        "patient": {"age": 40, "sex": "male"},
        "reviewer": {"specialty": "Orthopedic Surgery"},
        "items": [item("Lumbar MRI", "upheld"), item("Norco 10/325 #60", "upheld")],
    }
    right = {
        "letter": "a.pdf",
        "priority": "Standard",
        "patient": {"age": 41, "sex": None},
        "reviewer": {"specialty": "orthopedic  surgery"},
        "items": [item("Norco 10/325mg #60", "upheld")],
    }
    c = compare([left], [right], left_name="rules", right_name="llm")
    f = c.fields
    assert (f["priority"].compared, f["priority"].exact) == (1, 1)
    assert (f["reviewer.specialty"].exact, f["reviewer.specialty"].fuzzy) == (0, 1)
    assert (f["patient.age"].compared, f["patient.age"].disagree) == (1, 1)
    assert (f["patient.sex"].left_only, f["patient.sex"].right_only) == (1, 0)
    assert f["case_number"].compared == 0  # neither states one: not compared
    # Requests: one item only on the left, one aligned pair that agrees only fuzzily.
    assert (f["items.request"].compared, f["items.request"].exact, f["items.request"].fuzzy) == (
        2,
        0,
        1,
    )
    assert (f["items.decision"].compared, f["items.decision"].exact) == (2, 1)
    assert [(d.left_path, d.right_path, d.left, d.right, d.fuzzy) for d in c.disagreements] == [
        (
            "reviewer.specialty",
            "reviewer.specialty",
            "Orthopedic Surgery",
            "orthopedic  surgery",
            True,
        ),
        ("patient.age", "patient.age", 40, 41, False),
        ("patient.sex", "patient.sex", "male", None, False),
        ("items[0].request", None, "Lumbar MRI", None, False),
        ("items[0].decision", None, "upheld", None, False),
        ("items[1].request", "items[0].request", "Norco 10/325 #60", "Norco 10/325mg #60", True),
    ]
    assert c.letters == ["a.pdf"] and c.only_left == c.only_right == []


def test_letters_on_one_side_only_are_listed_not_compared():
    c = compare(
        [{"letter": "a.pdf"}, {"letter": "b.pdf"}], [{"letter": "b.pdf"}, {"letter": "c.pdf"}]
    )
    assert (c.letters, c.only_left, c.only_right) == (["b.pdf"], ["a.pdf"], ["c.pdf"])


# --- rules vs the recorded LLM answers ---------------------------------------------------------


@pytest.fixture(scope="module")
def llm_records(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    records = []
    for name in LETTERS:
        doc = document(name)
        extractor = LLMExtractor(replay_config(tmp_path_factory.mktemp("llm")))
        with recorded(request, cassette_name(name), meta_for(extractor, doc.sha256)):
            records.append(extractor(doc))
    return records


@pytest.fixture(scope="module")
def rules_vs_llm(llm_records) -> Comparison:
    return compare(
        [rules_record(n) for n in LETTERS], llm_records, left_name="rules", right_name="llm"
    )


def _holds(record: LetterRecord, text: str, path: str, span: tuple[int, int, int]) -> bool:
    """Whether ``span`` is the span of a field at or under ``path`` and holds that field's value."""
    pattern = re.escape(path).replace(r"\[\*\]", r"\[\d+\]")
    start, end, _page = span
    raw = text[start:end]
    for key, prov in record.provenance.items():
        if not re.match(rf"^{pattern}(?:$|[.\[])", key):
            continue
        if not any((s.start, s.end, s.page) == span for s in prov.spans):
            continue
        value = value_at(record, key)
        fuzzy = prov.match is MatchKind.FUZZY and isinstance(value, str)
        if span_holds(key, value, raw) or (fuzzy and fold(raw).casefold() == value.casefold()):
            return True
    return False


def test_rules_vs_llm_lists_disagreements_with_spans_that_hold_the_values(
    rules_vs_llm, llm_records
):
    c = rules_vs_llm
    assert c.letters == LETTERS
    by_letter = {n: (rules_record(n), llm) for n, llm in zip(LETTERS, llm_records, strict=True)}
    assert len(c.disagreements) > 20
    checked = 0
    for d in c.disagreements:
        text = document(d.letter).text
        for record, path, shown, support in (
            (by_letter[d.letter][0], d.left_path, d.left, d.left_support),
            (by_letter[d.letter][1], d.right_path, d.right, d.right_support),
        ):
            for span in support.spans:
                assert path is not None
                assert _holds(record, text, path, span), (
                    d.letter,
                    path,
                    span,
                    text[span[0] : span[1]],
                )
                checked += 1
            if path is not None and "[*]" not in path:
                # One field (not a set gathered by wildcard): the report prints its value.
                assert _ANY.dump_python(value_at(record, path), mode="json") == shown, path
    assert checked > 30


def test_rules_vs_llm_on_the_partly_authorised_letter(rules_vs_llm, llm_records):
    c = rules_vs_llm
    text = document("CM16-0231706.pdf").text
    found = {(d.letter, d.left_path, d.right_path): d for d in c.disagreements}
    priority = found[("CM16-0231706.pdf", "priority", "priority")]
    assert (priority.left, priority.right) == ("Standard", "Standard Application")
    assert priority.left_support.spans == ((142, 150, 1),)
    assert priority.right_support.spans == ((142, 162, 1),)
    assert text[142:150] == "Standard" and fold(text[142:162]) == "Standard Application"
    rules, llm = rules_record("CM16-0231706.pdf"), llm_records[0]
    assert priority.left_support.status == rules.provenance["priority"].status.value
    assert priority.right_support.status == llm.provenance["priority"].status.value
    # The model read the original request as an item of its own: it has no partner on the
    # left, and the rules' item 0 aligns with the model's item 1.
    assert ("CM16-0231706.pdf", None, "items[0].request") in found
    request = found[("CM16-0231706.pdf", "items[0].request", "items[1].request")]
    assert request.left == "Chiropractic physiotherapy treatment 6 visits"
    assert request.right.startswith("Chiropractic physiotherapy treatment 6 visits was")


def test_rules_vs_llm_decision_kappa(rules_vs_llm):
    # Rows: CM16-0231706 (missing, upheld) for the model's extra item, (upheld, upheld);
    # 000_95767a46bf993051 (upheld, upheld) x2. p_o = 3/4; left: upheld 3, missing 1;
    # right: upheld 4; p_e = (3*4 + 1*0) / 16 = 0.75; kappa = (0.75 - 0.75) / 0.25 = 0:
    # every decision agrees, but one side always says upheld, so no better than chance.
    c = rules_vs_llm
    assert sorted(c.decisions) == [("missing", "upheld")] + [("upheld", "upheld")] * 3
    assert c.decision_agreement == 0.75 and c.kappa == 0.0


def test_against_gold_equal_rules_disagreements_are_the_eval_misses(rules_vs_llm, llm_records):
    # The rules match gold exactly on these letters (test_gold), so comparing the model with the
    # rules must find exactly the fields that evaluating the model against gold finds wrong.
    # (eval goes in gold's letter order, compare in the left side's: sort by letter, stably.)
    report = evaluate(llm_records, GOLD)
    misses = [(m.letter, m.gold_path, m.result_path, m.expected, m.got) for m in report.misses]
    disagreements = [
        (d.letter, d.left_path, d.right_path, d.left, d.right) for d in rules_vs_llm.disagreements
    ]
    assert len(misses) == 31
    assert sorted(misses, key=lambda m: m[0]) == sorted(disagreements, key=lambda d: d[0])


# --- the command -----------------------------------------------------------------------------


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


@pytest.fixture
def result_files(tmp_path, llm_records) -> tuple[Path, Path]:
    rules_path, llm_path = tmp_path / "rules.jsonl", tmp_path / "llm.json"
    rules_path.write_text("".join(rules_record(n).model_dump_json() + "\n" for n in LETTERS))
    llm_path.write_text(json.dumps([r.model_dump(mode="json") for r in llm_records]))
    return rules_path, llm_path


def test_cli_compare_two_result_files_json(result_files, rules_vs_llm):
    rules_path, llm_path = result_files
    result = run("compare", str(rules_path), str(llm_path), "-f", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["left"] == str(rules_path) and report["right"] == str(llm_path)
    assert report["letters"] == LETTERS
    assert report["decisions"]["kappa"] == 0.0
    assert report["disagreements"] == [d.to_dict() for d in rules_vs_llm.disagreements]
    priority = next(d for d in report["disagreements"] if d["path"] == "priority")
    assert priority["left_spans"] == [[142, 150, 1]] and priority["right_spans"] == [[142, 162, 1]]
    # --left/--right is the same comparison.
    flags = run("compare", "--left", str(rules_path), "--right", str(llm_path), "-f", "json")
    assert json.loads(flags.stdout) == report


def test_cli_compare_csv_and_table(result_files, tmp_path):
    rules_path, llm_path = result_files
    out = tmp_path / "agreement.csv"
    assert (
        run("compare", str(rules_path), str(llm_path), "-f", "csv", "-o", str(out)).exit_code == 0
    )
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["field"] for r in rows] == list(SPECS)
    priority = next(r for r in rows if r["field"] == "priority")
    assert (priority["compared"], priority["exact"], priority["disagree"]) == ("1", "0", "1")
    table = run("compare", str(rules_path), str(llm_path)).stdout
    assert "Cohen's kappa (decisions)" in table and "0.000" in table
    assert "142-150 p1" in table and "142-162 p1" in table


def test_cli_compare_reads_letters_with_rules_and_llm(request, monkeypatch, tmp_path):
    for var in (
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "IMR_LLM_MODEL",
        "OPENAI_MODEL",
        "IMR_LLM_MODE",
        "IMR_LLM_MAX_REASKS",
        "IMR_CACHE_DIR",
    ):
        monkeypatch.delenv(var, raising=False)
    name = "CM16-0231706.pdf"
    doc = document(name)
    meta = meta_for(LLMExtractor(replay_config(tmp_path)), doc.sha256)
    with recorded(request, cassette_name(name), meta):
        result = run(
            "compare",
            str(letter_path(name)),
            "--base-url",
            RECORD_BASE_URL,
            "--model",
            RECORD_MODEL,
            "--no-cache",
            "-f",
            "json",
        )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert (report["left"], report["right"], report["letters"]) == ("rules", "llm", [name])
    assert {
        "path": "priority",
        "left": "Standard",
        "right": "Standard Application",
    }.items() <= next(d for d in report["disagreements"] if d["path"] == "priority").items()


def test_cli_compare_usage_errors(result_files, tmp_path):
    rules_path, llm_path = result_files
    cases = [
        (["--left", str(rules_path)], "--left and --right go together"),
        (["--left", str(rules_path), "--right", str(llm_path), str(rules_path)], "not both"),
        ([str(rules_path), str(letter_path("CM16-0231706.pdf"))], "exactly two result files"),
        ([], "nothing to compare"),
        ([str(tmp_path / "empty-dir")], "no letters"),
        ([str(rules_path), str(llm_path), "-f", "xml"], "--format must be one of"),
        ([str(rules_path), str(tmp_path / "absent.jsonl")], "cannot read results"),
    ]
    (tmp_path / "empty-dir").mkdir()
    for args, message in cases:
        result = run("compare", *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


# --- the documentation's excerpt ----------------------------------------------------------------

COMPARE_DOCS = Path(__file__).parents[1] / "docs" / "reference" / "compare-eval.md"


def test_the_docs_compare_excerpt_is_what_compare_prints(request, tmp_path, monkeypatch):
    """docs/reference/compare-eval.md shows `compare` on the eight recorded letters: every line it
    shows is a line the command prints on those records."""
    from test_docs import blocks, shown_lines_appear

    records = []
    for name in FULL_LETTERS:
        doc = document(name)
        config = replay_config(tmp_path / name, max_tokens=LONG_ANSWERS.get(name, 2048))
        extractor = LLMExtractor(config)
        with recorded(request, cassette_name(name), meta_for(extractor, doc.sha256)):
            records.append(extractor(doc))
    monkeypatch.chdir(tmp_path)
    Path("rules.jsonl").write_text(
        "".join(rules_record(n).model_dump_json() + "\n" for n in FULL_LETTERS)
    )
    Path("llm.jsonl").write_text("".join(r.model_dump_json() + "\n" for r in records))
    printed = run("compare", "rules.jsonl", "llm.jsonl").stdout
    name = "test_the_docs_compare_excerpt_is_what_compare_prints"
    excerpt = next(b for b in blocks(COMPARE_DOCS) if b.note.endswith(name))
    shown = excerpt.code.splitlines()
    assert len(shown) >= 10
    missing = shown_lines_appear(shown, printed)
    assert missing is None, f"not printed: {missing!r}\n{printed}"
