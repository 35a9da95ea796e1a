"""Shared fixtures: the real letters and gold files copied into tests/data (never edited)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import pytest

from imr_extract.extract import extract_document
from imr_extract.ingest import Document, read_path
from imr_extract.schema import LetterRecord

DATA = Path(__file__).parent / "data"
LETTERS = DATA / "letters"
GOLD = DATA / "gold"


def gold_files() -> list[Path]:
    return sorted(GOLD.glob("*.json"))


def letter_path(name: str) -> Path:
    matches = sorted(LETTERS.glob(f"*/{name}"))
    assert matches, f"no letter {name} under {LETTERS}"
    return matches[0]


@cache
def document(name: str) -> Document:
    return read_path(letter_path(name))


@cache
def rules_record(name: str) -> LetterRecord:
    return extract_document(document(name))


def load_gold(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.fixture
def letter_text():
    """The normalised text of a shared letter, by file name."""
    return lambda name: document(name).text
