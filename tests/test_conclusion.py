"""The rationale's conclusion, read with the negations letters use; unsure answers stay unsure."""

from __future__ import annotations

import pytest

from imr_extract.verify.conclusion import Conclusion, last_conclusion

NEGATIVE = [
    "Therefore, the request is determined to not be medically necessary.",
    "The request for X is not medically necessary and appropriate.",
    "the request is notmedically necessary and appropriate.",
    "this request cannot be deemed medically necessary.",
    "Medical necessity for the requested MRI has not been established.",
    "The requested treatment is not medically necessary at this time.",
    "The requested sessions were not medically necessary.",
    "Thus, the request isn't necessary.",
    "additional physical therapy, as written above, is not a medical necessity at this time.",
    "The request is not medi-\ncally necessary.",
    "Ultimately the request is\nnot\nmedically necessary.",
]
POSITIVE = [
    "The request is medically necessary.",
    "As such, medical necessity has been established.",
    "Given the patient has not improved, the request is medically necessary.",
    "The request was medi-\ncally necessary and appropriate.",
    "Therefore, the request is considered medically necessary.",
]


@pytest.mark.parametrize("text", NEGATIVE)
def test_negations_read_as_not_necessary(text: str) -> None:
    got = last_conclusion(text, 0, len(text))
    assert isinstance(got, Conclusion) and got.necessary is False


@pytest.mark.parametrize("text", POSITIVE)
def test_affirmations_read_as_necessary(text: str) -> None:
    got = last_conclusion(text, 0, len(text))
    assert isinstance(got, Conclusion) and got.necessary is True


def test_a_hedged_conclusion_is_unsure_not_wrong() -> None:
    text = "The request is not medically necessary unless the patient improves."
    assert last_conclusion(text, 0, len(text)) is None


@pytest.mark.parametrize(
    "text", ["Use as necessary for pain.", "The necessity of the MRI is unclear."]
)
def test_words_that_conclude_nothing(text: str) -> None:
    assert last_conclusion(text, 0, len(text)) is False


def test_the_last_conclusion_wins() -> None:
    text = (
        "The prior request was medically necessary. The patient has since improved. "
        "Therefore, the request is not medically necessary."
    )
    got = last_conclusion(text, 0, len(text))
    assert isinstance(got, Conclusion) and got.necessary is False
