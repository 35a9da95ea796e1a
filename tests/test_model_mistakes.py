"""The model's real mistakes, per field: on every recorded answer of the local model, no value
that disagrees with gold comes back verified, and how many right values are verified is
printed per field (the share the checks can vouch for without a second reading).

The recorded answers are Qwen2.5-Coder-1.5B's (tests/cassettes), replayed: a change to the
checks is measured on the same real mistakes every time.
"""

from __future__ import annotations

from collections import Counter

import pytest

from conftest import document
from imr_extract.llm import LLMExtractor
from imr_extract.schema import Status
from llm_cassettes import recorded
from test_llm_replay import FULL_LETTERS, LONG_ANSWERS, cassette_name, meta_for, replay_config
from test_verify import GOLD, wrong_paths

WRONG_VERIFIED: Counter[str] = Counter()
RIGHT: Counter[str] = Counter()
RIGHT_VERIFIED: Counter[str] = Counter()
WRONG: Counter[str] = Counter()


def _field(path: str) -> str:
    """``items[3].imr_guideline.citations[1].pages[0]`` -> ``items.imr_guideline.citations.pages``."""
    return ".".join(part.split("[")[0] for part in path.split("."))


@pytest.mark.parametrize("letter", FULL_LETTERS)
def test_no_wrong_value_of_the_model_is_verified(letter, request, tmp_path):
    doc = document(letter)
    extractor = LLMExtractor(replay_config(tmp_path, max_tokens=LONG_ANSWERS.get(letter, 2048)))
    with recorded(request, cassette_name(letter), meta_for(extractor, doc.sha256)):
        record = extractor(doc)
    wrong = wrong_paths(record, GOLD[letter])
    for path, prov in record.provenance.items():
        field = _field(path)
        verified = prov.status is Status.VERIFIED
        if path in wrong:
            WRONG[field] += 1
            WRONG_VERIFIED[field] += verified
        else:
            RIGHT[field] += 1
            RIGHT_VERIFIED[field] += verified
    leaks = {p: w for p, w in wrong.items() if record.provenance[p].status is Status.VERIFIED}
    assert not leaks, leaks


def test_per_field_report(capsys):
    """Printed after the replays above (run in file order): wrong values verified (must be 0)
    and right values verified, per field."""
    if not (RIGHT or WRONG):
        pytest.skip("run with the replays above")
    lines = [f"{'field':52} {'wrong':>5} {'w-verif':>7} {'right':>5} {'r-verif':>7}"]
    for field in sorted(set(RIGHT) | set(WRONG)):
        lines.append(
            f"{field:52} {WRONG[field]:5} {WRONG_VERIFIED[field]:7} {RIGHT[field]:5} "
            f"{RIGHT_VERIFIED[field]:7}"
        )
    total_right = sum(RIGHT.values())
    lines.append(
        f"right values verified: {sum(RIGHT_VERIFIED.values())}/{total_right}; "
        f"wrong values verified: {sum(WRONG_VERIFIED.values())}/{sum(WRONG.values())}"
    )
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    assert sum(WRONG_VERIFIED.values()) == 0
    assert sum(WRONG.values()) > 0  # the recorded answers do hold mistakes to catch
