"""The "Limits and security" tables (README and docs/explanation/security.md) say what the code
does: every ``Limits`` field is a row, its default is the one ``Limits()`` has, its flag exists on
``extract`` and sets that field, and its code is a code some error class declares."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from imr_extract import errors
from imr_extract.cli import app, make_limits, parse_size
from imr_extract.limits import DEFAULT_LIMITS, Limits
from imr_extract.llm.config import LLMConfig

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", ROOT / "docs" / "explanation" / "security.md"]

#: The flag that sets each ``Limits`` field (``make_limits``'s keyword for it).
FIELD_OF_FLAG = {
    "--max-pages": ("max_pages", "max_pages"),
    "--max-chars": ("max_chars", "max_chars"),
    "--max-items": ("max_items", "max_items"),
    "--letter-timeout": ("letter_seconds", "letter_timeout"),
    "--worker-memory": ("worker_memory", "worker_memory"),
    "--max-stdin": ("max_stdin_bytes", "max_stdin"),
}
_ROW = re.compile(r"^\|([^|]+)\|([^|]+)\|([^|]+)\|([^|]+)\|$")


def table(page: Path) -> dict[str, tuple[str, str]]:
    """Flag -> (default as printed, code) of the page's limits table."""
    text = page.read_text(encoding="utf-8")
    section = text[text.index("# Limits and security") :]
    rows = {}
    for line in section.splitlines():
        found = _ROW.match(line.strip())
        if found:
            _, default, flag, code = (cell.strip() for cell in found.groups())
            if flag.startswith("`--"):
                rows[flag.strip("`")] = (default, code.strip("`"))
    return rows


def printed(default: str) -> float:
    """A default as the table prints it: ``2,000,000``, ``900``, ``2G``, ``64M``."""
    if default[-1] in "KMGT":
        return parse_size(default)
    return float(default.replace(",", ""))


def declared_codes() -> set[str]:
    return {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type) and issubclass(cls, errors.ImrExtractError)
    }


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_limit_is_a_row_with_the_code_default(page: Path) -> None:
    rows = table(page)
    assert set(FIELD_OF_FLAG) <= set(rows), f"{page.name} lacks rows for some limits"
    assert {name for name, _ in FIELD_OF_FLAG.values()} == set(Limits.__dataclass_fields__)
    for flag, (name, _) in FIELD_OF_FLAG.items():
        default, code = rows[flag]
        assert printed(default) == getattr(DEFAULT_LIMITS, name), (page.name, flag, default)
        assert code in declared_codes(), (page.name, flag, code)
    default, code = rows["--timeout"]
    assert printed(default) == LLMConfig().timeout_s
    assert code in declared_codes()


def test_every_flag_exists_and_sets_its_limit() -> None:
    result = CliRunner().invoke(app, ["extract", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag, (name, keyword) in FIELD_OF_FLAG.items():
        assert flag in result.output, flag
        value = "3M" if name in ("worker_memory", "max_stdin_bytes") else 3
        limits = make_limits(**{keyword: value})
        assert getattr(limits, name) == (3 * 2**20 if value == "3M" else 3), flag
        others = [n for n, _ in FIELD_OF_FLAG.values() if n != name]
        assert all(getattr(limits, n) == getattr(DEFAULT_LIMITS, n) for n in others)
