"""``imr-extract eval``: scores against gold, what each perturbation moves, and the CLI."""

from __future__ import annotations

import copy
import csv
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from conftest import GOLD, gold_files, load_gold, rules_record
from imr_extract.cli import app
from imr_extract.evaluate import EvalReport, FieldScore, evaluate
from imr_extract.fields import (
    ITEM_FIELDS,
    LETTER_FIELDS,
    ItemPair,
    RecordsError,
    align_requests,
    data_fields,
    load_records,
    map_path,
)

runner = CliRunner()
TWO_ITEMS = "000_95767a46bf993051.txt"  # two items, pages in both guideline lines
PARTIAL = "CM16-0231706.pdf"  # one partly authorised item, every date


def rules_dicts(*letters: str) -> list[dict[str, Any]]:
    return [copy.deepcopy(rules_record(name).model_dump(mode="json")) for name in letters]


@pytest.fixture
def small_gold(tmp_path: Path) -> Path:
    """A gold directory holding only the two letters the perturbation tests use."""
    gold = tmp_path / "gold"
    gold.mkdir()
    for name in (TWO_ITEMS, PARTIAL):
        stem = Path(name).stem
        shutil.copy(GOLD / f"{stem}.json", gold / f"{stem}.json")
    return gold


def counts(report: EvalReport) -> dict[str, tuple[int, int, int]]:
    out = {name: (s.tp, s.fp, s.fn) for name, s in report.fields.items()}
    out["items"] = (report.items.tp, report.items.fp, report.items.fn)
    return out


def moved(before: EvalReport, after: EvalReport) -> dict[str, tuple[int, int, int]]:
    """(ΔTP, ΔFP, ΔFN) of every field whose counts changed."""
    a, b = counts(before), counts(after)
    return {k: tuple(y - x for x, y in zip(a[k], b[k], strict=True)) for k in a if a[k] != b[k]}


def misses(report: EvalReport) -> list[tuple[str, str, Any, Any]]:
    return [(m.letter, m.path, m.expected, m.got) for m in report.misses]


# --- the whole shared set --------------------------------------------------------------------


def test_rules_score_perfectly_on_every_shared_letter():
    records = [rules_record(load_gold(g)["letter"]) for g in gold_files()]
    report = evaluate(records, GOLD)
    assert len(report.letters) == 66
    assert report.missing_results == report.without_gold == report.duplicates == []
    assert report.misses == []
    for score in [*report.fields.values(), report.items]:
        # Every field is stated somewhere in the gold set, so every rate is defined.
        assert score.tp > 0 and score.fp == score.fn == 0, score
        assert score.precision == score.recall == score.f1 == 1.0, score
    assert report.items.tp == report.aligned_items == 156
    assert report.decision_accuracy == 1.0
    assert set(report.fields) == {s.name for s in LETTER_FIELDS + ITEM_FIELDS}


# --- perturbations: exactly these counts move, exactly these misses are listed ------------------


def test_flipping_a_decision(small_gold):
    base = evaluate(rules_dicts(TWO_ITEMS, PARTIAL), small_gold)
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    records[0]["items"][0]["decision"] = "overturned"
    report = evaluate(records, small_gold)
    # The decision is wrong (FP and FN), and so is the whole item.
    assert moved(base, report) == {"items.decision": (-1, 1, 1), "items": (-1, 1, 1)}
    assert misses(report) == [(TWO_ITEMS, "items[0].decision", "upheld", "overturned")]
    assert (report.aligned_items, report.decisions_equal) == (3, 2)
    assert report.decision_accuracy == pytest.approx(2 / 3)


def test_dropping_an_item(small_gold):
    base = evaluate(rules_dicts(TWO_ITEMS, PARTIAL), small_gold)
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    del records[0]["items"][1]
    report = evaluate(records, small_gold)
    # Gold's second item states a request, a decision, both guideline lines, and one MTUS
    # source with pages 98-99 on the reviewer's line; each becomes an FN. Its claims
    # administrator line cites nothing and neither line names sections: nothing to miss there.
    fn = (-1, 0, 1)
    assert moved(base, report) == {
        "items.request": fn,
        "items.decision": fn,
        "items.claims_administrator_guideline": fn,
        "items.imr_guideline": fn,
        "items.imr_guideline.sources": fn,
        "items.imr_guideline.pages": fn,
        "items": fn,
    }
    assert misses(report) == [
        (
            TWO_ITEMS,
            "items[1].request",
            "Post-injection physical therapy, three times per week for two weeks",
            None,
        ),
        (TWO_ITEMS, "items[1].decision", "upheld", None),
        (
            TWO_ITEMS,
            "items[1].claims_administrator_guideline",
            {"cited": False, "outside_mtus": False, "citations": []},
            None,
        ),
        (
            TWO_ITEMS,
            "items[1].imr_guideline",
            load_gold(GOLD / "000_95767a46bf993051.json")["items"][1]["imr_guideline"],
            None,
        ),
        (
            TWO_ITEMS,
            "items[1].imr_guideline.citations[*].source",
            ["Chronic Pain Treatment Guidelines"],
            [],
        ),
        (TWO_ITEMS, "items[1].imr_guideline.citations[*].pages[*]", [98, 99], []),
    ]
    assert all(m.result_path is None and m.gold_path == m.path for m in report.misses)
    assert report.aligned_items == 2 and report.decision_accuracy == 1.0


def test_adding_an_invented_item(small_gold):
    base = evaluate(rules_dicts(TWO_ITEMS, PARTIAL), small_gold)
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    invented = {
        "request": "Magnetic resonance imaging of the left knee",
        "decision": "overturned",
        "original_request": None,
        "authorized": None,
        "claims_administrator_guideline": {"cited": False, "outside_mtus": False, "citations": []},
        "imr_guideline": {
            "cited": True,
            "outside_mtus": True,
            "citations": [
                {"kind": "Non-MTUS", "source": "ODG Knee", "sections": ["MRI"], "pages": []}
            ],
        },
        "rationale": None,
    }
    records[1]["items"].append(invented)
    report = evaluate(records, small_gold)
    fp = (0, 1, 0)
    assert moved(base, report) == {
        "items.request": fp,
        "items.decision": fp,
        "items.claims_administrator_guideline": fp,
        "items.imr_guideline": fp,
        "items.imr_guideline.sources": fp,
        "items.imr_guideline.sections": fp,
        "items": fp,
    }
    assert misses(report) == [
        (PARTIAL, "items[1].request", None, invented["request"]),
        (PARTIAL, "items[1].decision", None, "overturned"),
        (
            PARTIAL,
            "items[1].claims_administrator_guideline",
            None,
            invented["claims_administrator_guideline"],
        ),
        (PARTIAL, "items[1].imr_guideline", None, invented["imr_guideline"]),
        (PARTIAL, "items[1].imr_guideline.citations[*].source", [], ["ODG Knee"]),
        (PARTIAL, "items[1].imr_guideline.citations[*].sections[*]", [], ["MRI"]),
    ]
    # The path is the result's: gold has no such item.
    assert all(m.gold_path is None and m.result_path == m.path for m in report.misses)
    assert report.aligned_items == 3


def test_changing_a_page(small_gold):
    base = evaluate(rules_dicts(TWO_ITEMS, PARTIAL), small_gold)
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    records[0]["items"][0]["imr_guideline"]["citations"][0]["pages"] = [46, 48]
    report = evaluate(records, small_gold)
    # The page set and the guideline line it belongs to are both wrong; the item still counts
    # (request and decision are right).
    assert moved(base, report) == {
        "items.imr_guideline": (-1, 1, 1),
        "items.imr_guideline.pages": (-1, 1, 1),
    }
    assert [(m.path, m.expected, m.got) for m in report.misses][1] == (
        "items[0].imr_guideline.citations[*].pages[*]",
        [46, 47],
        [46, 48],
    )
    whole = report.misses[0]
    assert whole.path == "items[0].imr_guideline" and len(report.misses) == 2
    assert whole.expected["citations"][0]["pages"] == [46, 47]
    assert whole.got["citations"][0]["pages"] == [46, 48]


def test_nulling_a_date(small_gold):
    base = evaluate(rules_dicts(TWO_ITEMS, PARTIAL), small_gold)
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    records[1]["dates"]["decision"] = None
    report = evaluate(records, small_gold)
    assert moved(base, report) == {"dates.decision": (-1, 0, 1)}
    assert misses(report) == [(PARTIAL, "dates.decision", "2017-01-05", None)]
    # Of these two letters only this one states a decision date: with it gone nothing is
    # stated, so precision is undefined and recall is 0.
    score = report.fields["dates.decision"]
    assert (score.precision, score.recall, score.f1) == (None, 0.0, None)


def test_a_value_where_gold_has_none_is_a_false_positive(small_gold):
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    records[0]["priority"] = "Expedited"  # the older letter states no priority
    report = evaluate(records, small_gold)
    assert counts(report)["priority"] == (1, 1, 0)
    assert misses(report) == [(TWO_ITEMS, "priority", None, "Expedited")]


def test_missing_letters_and_results_without_gold(small_gold):
    stray = rules_dicts(TWO_ITEMS)[0] | {"letter": "ZZ-0000000.pdf"}
    report = evaluate([*rules_dicts(PARTIAL), stray], small_gold)
    assert report.letters == [PARTIAL]
    assert report.missing_results == [TWO_ITEMS] and report.without_gold == ["ZZ-0000000.pdf"]
    assert report.misses == []
    # Scoring the missing letter as empty: every field its gold states becomes an FN.
    strict = evaluate([*rules_dicts(PARTIAL), stray], small_gold, score_missing=True)
    gold_items = 2
    assert strict.items.fn == gold_items and strict.items.fp == 0
    assert counts(strict)["reviewer.licensure"] == (1, 0, 1)
    assert counts(strict)["case_number"] == (1, 0, 0)  # the older letter states none
    assert {m.letter for m in strict.misses} == {TWO_ITEMS}


def test_a_duplicate_result_is_listed_and_the_first_one_counts(small_gold):
    first, second = rules_dicts(PARTIAL, PARTIAL)
    second["priority"] = "Expedited"
    report = evaluate([first, second], small_gold)
    assert report.duplicates == [PARTIAL] and report.misses == []


def test_rates_and_their_undefined_cases():
    s = FieldScore("x", tp=3, fp=1, fn=2)
    # P = 3/4, R = 3/5, F1 = 2PR/(P+R) = 0.9/1.35 = 2/3
    assert (s.precision, s.recall, s.f1) == (0.75, 0.6, pytest.approx(2 / 3))
    assert FieldScore("y").f1 is None  # nothing stated on either side
    assert FieldScore("z", fn=2).precision is None and FieldScore("z", fn=2).recall == 0.0
    assert FieldScore("w", fp=1, fn=1).f1 == 0.0


def test_bad_gold_dirs_are_errors(tmp_path):
    with pytest.raises(RecordsError, match="gold directory not found"):
        evaluate([], tmp_path / "nope")
    with pytest.raises(RecordsError, match="no gold files"):
        evaluate([], tmp_path)
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(RecordsError, match="unreadable gold file"):
        evaluate([], tmp_path)


# --- fields: records as data, item alignment, paths ---------------------------------------------


def test_data_fields_are_the_gold_shape():
    record = rules_record(PARTIAL)
    gold = load_gold(GOLD / "CM16-0231706.json")
    data = data_fields(record)
    assert set(data) == set(gold)
    assert data["dates"] == gold["dates"] and data["patient"] == gold["patient"]
    assert data_fields({"letter": "a.pdf"})["items"] == []


def test_alignment_keeps_order_and_pairs_exact_then_similar_requests():
    left = ["Lumbar MRI", "Physical therapy 12 visits", "Norco 10/325 #60", "Urine drug screen"]
    right = ["physical   therapy 12 visits", "Norco 10/325mg #60", "Acupuncture x6"]
    pairs = align_requests(left, right)
    assert pairs == [
        ItemPair(0, None),
        ItemPair(1, 0, 1.0),  # equal once whitespace and case are folded
        ItemPair(2, 1, pairs[2].score),  # difflib ratio >= 0.6
        ItemPair(3, None),
        ItemPair(None, 2),
    ]
    assert 0.6 <= pairs[2].score < 1.0
    # No crossing pairs: a swapped order keeps one anchor and leaves the other unmatched.
    assert align_requests(["Aa item", "Bb item"], ["Bb item", "Aa item"]) == [
        ItemPair(None, 0),
        ItemPair(0, 1, 1.0),
        ItemPair(1, None),
    ]
    assert align_requests([], ["x"]) == [ItemPair(None, 0)]


def test_map_path_follows_the_alignment():
    pairs = align_requests(["A request", "B request"], ["B request"])
    assert map_path("items[1].imr_guideline.citations[0].pages[1]", pairs) == (
        "items[0].imr_guideline.citations[0].pages[1]"
    )
    assert map_path("items[0].request", pairs) is None  # no partner
    assert map_path("items[0].decision", pairs, from_left=False) == "items[1].decision"
    assert map_path("dates.injury", pairs) == "dates.injury"


def test_load_records_reads_jsonl_json_arrays_and_one_object(tmp_path):
    one = rules_dicts(PARTIAL)[0]
    (tmp_path / "a.jsonl").write_text(json.dumps(one) + "\n\n" + json.dumps(one) + "\n")
    (tmp_path / "b.json").write_text(json.dumps([one], indent=2))
    (tmp_path / "c.json").write_text(json.dumps(one, indent=2))
    assert [len(load_records(tmp_path / n)) for n in ("a.jsonl", "b.json", "c.json")] == [2, 1, 1]
    (tmp_path / "bad.jsonl").write_text('{"letter": "x"}\n{oops\n')
    with pytest.raises(RecordsError, match="not JSON"):
        load_records(tmp_path / "bad.jsonl")
    (tmp_path / "nums.json").write_text("[1, 2]")
    with pytest.raises(RecordsError, match="expected records"):
        load_records(tmp_path / "nums.json")


# --- the command -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("results") / "rules.jsonl"
    lines = [rules_record(load_gold(g)["letter"]).model_dump_json() for g in gold_files()]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_cli_eval_table(rules_results):
    result = run("eval", str(rules_results), "--gold", str(GOLD))
    assert result.exit_code == 0, result.output
    assert "imr-extract eval: 66 letters" in result.stdout
    assert "items (request + decision)" in result.stdout
    row = next(line for line in result.stdout.splitlines() if "items.imr_guideline.pages" in line)
    assert [cell.strip() for cell in row.split("│")[2:8]] == [
        "3",
        "0",
        "0",
        "1.000",
        "1.000",
        "1.000",
    ]


def test_cli_eval_json_and_csv(rules_results, tmp_path):
    out = tmp_path / "report.json"
    result = run("eval", str(rules_results), "--gold", str(GOLD), "-f", "json", "-o", str(out))
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["letters_scored"] == 66 and report["misses"] == []
    assert {f["f1"] for f in report["fields"]} == {1.0}
    assert report["items"]["tp"] == 156 and report["decision_accuracy"] == 1.0

    result = run("eval", str(rules_results), "--gold", str(GOLD), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [r["field"] for r in rows] == [*(s.name for s in LETTER_FIELDS + ITEM_FIELDS), "items"]
    assert list(rows[0]) == ["field", "tp", "fp", "fn", "precision", "recall", "f1"]
    assert rows[0]["field"] == "case_number" and rows[0]["tp"] == "64"


def test_cli_eval_lists_misses(small_gold, tmp_path):
    records = rules_dicts(TWO_ITEMS, PARTIAL)
    records[1]["dates"]["decision"] = None
    path = tmp_path / "perturbed.json"
    path.write_text(json.dumps(records))
    result = run("eval", str(path), "--gold", str(small_gold), "-f", "json")
    assert json.loads(result.stdout)["misses"] == [
        {
            "letter": PARTIAL,
            "path": "dates.decision",
            "expected": "2017-01-05",
            "got": None,
            "gold_path": "dates.decision",
            "result_path": "dates.decision",
        }
    ]
    table = run("eval", str(path), "--gold", str(small_gold)).stdout
    assert "dates.decision" in table and "2017-01-05" in table


def test_cli_eval_usage_errors(rules_results, tmp_path):
    result = run("eval", str(rules_results), "--gold", str(tmp_path / "missing"))
    assert result.exit_code == 2
    assert "gold directory not found" in result.stderr
    result = run("eval", str(rules_results), "--gold", str(GOLD), "-f", "xml")
    assert result.exit_code == 2 and "--format must be one of" in result.stderr
    result = run("eval", str(tmp_path / "none.jsonl"), "--gold", str(GOLD))
    assert result.exit_code == 2 and "cannot read results" in result.stderr
    assert run("eval", str(rules_results)).exit_code == 2  # --gold is required
