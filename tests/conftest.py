"""Shared fixtures: the real letters and gold files copied into tests/data (never edited)."""

from __future__ import annotations

import json
import socket
import sys
from functools import cache
from pathlib import Path

import pytest

from imr_extract.extract import extract_document
from imr_extract.ingest import Document, read_path
from imr_extract.schema import LetterRecord

DATA = Path(__file__).parent / "data"
LETTERS = DATA / "letters"
GOLD = DATA / "gold"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--record-mode",
        default="none",
        choices=["none", "once", "new_episodes", "all"],
        help="vcrpy record mode for model calls (default none: replay only, no network).",
    )


@pytest.fixture(autouse=True)
def _store_in_tmp(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """CLI runs in tests keep their run store out of the working directory."""
    monkeypatch.setenv("IMR_STORE", str(tmp_path_factory.mktemp("store") / "imr-extract.sqlite"))


@pytest.fixture(autouse=True)
def _no_live_network(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Outside recording, nothing in the tests may reach past this machine's loopback."""
    if request.config.getoption("--record-mode") != "none":
        return
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: object) -> object:
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
            host.startswith("127.") or host in ("::1", "localhost") or self.family == socket.AF_UNIX
        ):
            raise ConnectionRefusedError(f"tests may not reach {host}: replay cassettes instead")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


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


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how the recorded LLM answers score against gold, when those tests ran."""
    for module, title in (
        ("test_llm_replay", "LLM per-field accuracy (recorded answers)"),
        ("test_llm_novel", "LLM per-field accuracy on novel layouts (recorded answers)"),
    ):
        scores = sys.modules.get(module)
        report = scores.pytest_terminal_summary_scores() if scores else ""
        if report:
            terminalreporter.write_sep("-", title)
            terminalreporter.write_line(report)
