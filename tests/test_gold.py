"""Every shared letter, every gold field: the rules extractor must match exactly."""

from __future__ import annotations

from typing import Any

import pytest

from conftest import gold_files, letter_path, load_gold, rules_record
from imr_extract.extract import extract_path
from imr_extract.schema import DATA_FIELDS


def diff(gold: Any, got: Any, path: str = "") -> list[str]:
    """Field-by-field differences, restricted to the fields gold defines."""
    if isinstance(gold, dict):
        if not isinstance(got, dict):
            return [f"{path}: expected an object, got {got!r}"]
        out = []
        for key, value in gold.items():
            if key not in got:
                out.append(f"{path}.{key}: missing")
            else:
                out.extend(diff(value, got[key], f"{path}.{key}"))
        return out
    if isinstance(gold, list):
        if not isinstance(got, list) or len(got) != len(gold):
            return [f"{path}: expected {gold!r}, got {got!r}"]
        return [
            d
            for i, (a, b) in enumerate(zip(gold, got, strict=True))
            for d in diff(a, b, f"{path}[{i}]")
        ]
    return [] if gold == got else [f"{path}: expected {gold!r}, got {got!r}"]


GOLD = gold_files()


def test_every_shared_letter_has_gold():
    assert len(GOLD) == 66
    for g in GOLD:
        assert letter_path(load_gold(g)["letter"]).exists()


@pytest.mark.parametrize("gold_path", GOLD, ids=[g.stem for g in GOLD])
def test_rules_match_gold(gold_path):
    gold = load_gold(gold_path)
    assert set(gold) == set(DATA_FIELDS)
    record = rules_record(gold["letter"]).model_dump(mode="json")
    problems = diff(gold, record)
    assert not problems, "\n".join(problems)


def test_diff_reports_mismatches():
    # The comparison itself must be able to fail, or the gold test proves nothing.
    assert diff({"a": [1, 2]}, {"a": [1, 3]}) == [".a[1]: expected 2, got 3"]
    assert diff({"a": {"b": None}}, {"a": {}}) == [".a.b: missing"]
    assert diff({"items": [1]}, {"items": []})


@pytest.mark.parametrize("name", ["CM16-0231706.pdf", "CM17-0014449.pdf", "CM16-0249724.pdf"])
def test_pypdf_fallback_reads_the_same_items(name):
    """The pure-Python engine gives the same decisions and request count as pypdfium2."""
    fast = rules_record(name)
    slow = extract_path(letter_path(name), pdf_engine="pypdf")
    assert slow.source.text_engine == "pypdf"
    assert [i.decision for i in slow.items] == [i.decision for i in fast.items]
    assert slow.case_number == fast.case_number
    assert slow.dates == fast.dates
