"""The documentation is tested like code: a stale claim fails the build.

- Every fenced example in README.md and docs/**/*.md is executed: ``console`` blocks command by
  command (each ``$`` command must exit 0, or the code its ``# exit N`` comment names, and every
  output line shown must appear, in order, in
  what it prints), ``bash``/``sh`` blocks as scripts, ``python`` blocks with ``exec`` and ``pycon``
  blocks as doctests, ``sql`` blocks against a run store of the bundled letters. A block that
  cannot run here says why in an HTML comment right above it, ``<!-- not-run: REASON -->``, or
  names the test that runs it, ``<!-- tested: tests/FILE.py::NAME -->``.
- A ``json`` block marked ``<!-- excerpt-of: LETTER -->`` must agree with the record extracted
  from that letter, key by key and value by value (``"..."`` stands for what is left out).
- The field reference documents every field of the schema (walked from ``schema.LetterRecord``)
  with a meaning, and each example value there equals the value extracted from the letter the
  page names.
- The generated reference pages (CLI, error codes, store tables) are what
  ``scripts/docs_reference.py`` renders from the code now.
- ``mkdocs build --strict`` builds the site (required in CI: ``.ci/run`` sets
  ``IMR_REQUIRE_DOCS``).
"""

from __future__ import annotations

import doctest
import importlib.util
import json
import os
import re
import sqlite3
import subprocess
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from imr_extract import extract_path
from imr_extract.schema import LetterRecord

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
RUN = {"console", "bash", "sh", "python", "pycon", "sql"}
SHOWN = {"text", "json", "toml", "yaml", "html"}  # shown, not run (json excerpts are checked)
MARKER = re.compile(r"<!--\s*(not-run|tested|excerpt-of):\s*((?:(?!-->).)*?)\s*-->\s*$", re.DOTALL)
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str | None  # not-run | tested | excerpt-of
    note: str

    def where(self) -> str:
        page = self.page.relative_to(ROOT) if self.page.is_relative_to(ROOT) else self.page
        return f"{page}:{self.line}"


def blocks(page: Path) -> list[Block]:
    text = page.read_text(encoding="utf-8")
    found = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip()
        marker = MARKER.search(before[-400:])
        kind, note = (marker.group(1), marker.group(2)) if marker else (None, "")
        line = text.count("\n", 0, match.start()) + 1
        found.append(Block(page, line, match.group(1), match.group(2), kind, note))
    return found


ALL_BLOCKS = [b for page in PAGES for b in blocks(page)]


def test_the_docs_exist_and_every_block_is_of_a_known_kind():
    assert len(PAGES) >= 15
    unknown = [f"{b.where()} ```{b.lang}" for b in ALL_BLOCKS if b.lang not in RUN | SHOWN]
    assert not unknown, "a fence with no language (or an unknown one) is neither run nor shown"


def test_every_block_not_run_says_why_and_every_tested_block_names_a_real_test():
    not_run = [b for b in ALL_BLOCKS if b.marker == "not-run" and b.lang in RUN]
    assert all(len(b.note) >= 10 for b in not_run), [b.where() for b in not_run if len(b.note) < 10]
    for b in ALL_BLOCKS:
        if b.marker != "tested":
            continue
        file, _, name = b.note.partition("::")
        assert re.search(rf"^def {re.escape(name)}\(", (ROOT / file).read_text(), re.M), b.where()
    run = [b for b in ALL_BLOCKS if b.lang in RUN and b.marker is None]
    # Most examples run here; the rest need a hosted key, a model server or a fresh machine.
    assert len(run) > len(not_run), (len(run), len(not_run))


def _env(tmp: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "IMR_")) and k not in {"COLUMNS", "LINES"}
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(COLUMNS="100", NO_COLOR="1", TERM="dumb", HOME=str(tmp / "home"))
    return env


def _normal(line: str) -> str:
    return re.sub(r"─+", "─", re.sub(r"[ \t]+", " ", line)).strip()


def shown_lines_appear(shown: list[str], printed: str) -> str | None:
    """None when every shown line (``…`` = anything) appears, in order, in ``printed``."""
    lines = [_normal(x) for x in printed.splitlines()]
    at = 0
    for want in (_normal(x) for x in shown):
        if not want:
            continue
        pattern = re.compile("^" + ".*?".join(map(re.escape, want.split("…"))) + "$")
        while at < len(lines) and not pattern.match(lines[at]):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def _console(block: Block, cwd: Path, env: dict[str, str]) -> None:
    commands: list[tuple[str, list[str]]] = []
    continuing = False
    for line in block.code.splitlines():
        if continuing:
            commands[-1] = (commands[-1][0] + "\n" + line, [])
        elif line.startswith("$ "):
            commands.append((line[2:], []))
        else:
            assert commands, f"{block.where()}: output before any $ command"
            commands[-1][1].append(line)
        continuing = line.endswith("\\")
    for command, shown in commands:
        # A command that is meant to fail says so: `$ imr-extract ... # exit 1`.
        expect = re.search(r"#\s*exit (\d+)$", command)
        code = int(expect.group(1)) if expect else 0
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
        )
        assert done.returncode == code, (
            f"{block.where()}: `{command}` exited {done.returncode}, not {code}:\n{done.stdout}"
        )
        missing = shown_lines_appear(shown, done.stdout)
        assert missing is None, (
            f"{block.where()}: `{command}` did not print {missing!r}:\n{done.stdout}"
        )


def _store(cwd: Path, env: dict[str, str]) -> Path:
    db = cwd / "imr-extract.sqlite"
    if not db.exists():
        subprocess.run(
            ["imr-extract", "extract", "examples/letters", "-o", os.devnull, "--no-summary"],
            cwd=cwd,
            env=env,
            check=True,
            capture_output=True,
        )
    return db


def run_page(page: Path, cwd: Path, monkeypatch: pytest.MonkeyPatch) -> int:
    """Run every runnable block of ``page`` in order, in ``cwd``; the number run."""
    for name in ("examples", "tests"):
        (cwd / name).symlink_to(ROOT / name)
    (cwd / "home").mkdir()
    env = _env(cwd)
    monkeypatch.chdir(cwd)
    for key in [k for k in os.environ if k.startswith(("OPENAI_", "IMR_"))]:
        monkeypatch.delenv(key)
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    ran = 0
    for block in blocks(page):
        if block.lang not in RUN or block.marker is not None:
            continue
        ran += 1
        if block.lang == "console":
            _console(block, cwd, env)
        elif block.lang in {"bash", "sh"}:
            done = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", block.code],
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert done.returncode == 0, f"{block.where()}:\n{done.stdout}{done.stderr}"
        elif block.lang == "python":
            exec(compile(block.code, block.where(), "exec"), namespace)  # our own docs
        elif block.lang == "pycon":
            test = doctest.DocTestParser().get_doctest(
                block.code, namespace, block.where(), str(page), block.line
            )
            runner = doctest.DocTestRunner(
                optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
            )
            report: list[str] = []
            # clear_globs=False: what a block defines is there for the next (the update below)
            result = runner.run(test, out=report.append, clear_globs=False)
            assert result.failed == 0, f"{block.where()}:\n{''.join(report)}"
            namespace.update(test.globs)
        elif block.lang == "sql":
            con = sqlite3.connect(_store(cwd, env))
            try:
                con.execute(block.code).fetchall()
            finally:
                con.close()
    return ran


RUNNABLE = [p for p in PAGES if any(b.lang in RUN and b.marker is None for b in blocks(p))]
#: A page whose examples import an optional extra's modules names them: ``<!-- needs: a, b -->``.
NEEDS = re.compile(r"<!--\s*needs:\s*([\w.]+(?:\s*,\s*[\w.]+)*)\s*-->")


def _skip_without_needed_modules(page: Path) -> None:
    """Skip a page whose extra is not installed; in CI (``IMR_REQUIRE_PARQUET``), fail."""
    needs = NEEDS.search(page.read_text(encoding="utf-8"))
    names = [n.strip() for n in needs.group(1).split(",")] if needs else []
    missing = [n for n in names if importlib.util.find_spec(n) is None]
    if missing:
        why = f"{', '.join(missing)} not installed (pip install -e '.[analysis]')"
        if os.environ.get("IMR_REQUIRE_PARQUET"):
            pytest.fail(why)
        pytest.skip(why)


@pytest.mark.parametrize("page", RUNNABLE, ids=[str(p.relative_to(ROOT)) for p in RUNNABLE])
def test_every_example_on_the_page_runs(page, tmp_path, monkeypatch):
    _skip_without_needed_modules(page)
    assert run_page(page, tmp_path, monkeypatch) >= 1


def test_the_runner_catches_a_stale_claim(tmp_path, monkeypatch):
    page = tmp_path / "stale.md"
    page.write_text(
        "```console\n$ imr-extract layouts\n│ notice_2013 │ dedicated │ …\n…no_such_layout…\n```\n"
    )
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssertionError, match="no_such_layout"):
        run_page(page, work, monkeypatch)
    pycon = tmp_path / "stale2.md"
    pycon.write_text("```pycon\n>>> 1 + 1\n3\n```\n")
    work2 = tmp_path / "work2"
    work2.mkdir()
    with pytest.raises(AssertionError, match=r"Expected:\s+3\s+Got:\s+2"):
        run_page(pycon, work2, monkeypatch)


def test_a_page_needing_a_missing_module_is_skipped_here_and_fails_in_ci(tmp_path, monkeypatch):
    page = tmp_path / "needs.md"
    page.write_text("<!-- needs: json, imr_no_such_module -->\n```pycon\n>>> 1\n1\n```\n")
    monkeypatch.delenv("IMR_REQUIRE_PARQUET", raising=False)
    with pytest.raises(pytest.skip.Exception, match="imr_no_such_module not installed"):
        _skip_without_needed_modules(page)
    monkeypatch.setenv("IMR_REQUIRE_PARQUET", "1")
    with pytest.raises(pytest.fail.Exception, match="imr_no_such_module not installed"):
        _skip_without_needed_modules(page)
    page.write_text("<!-- needs: json -->\n")
    _skip_without_needed_modules(page)  # all there: runs


def test_a_marker_belongs_to_the_block_right_below_it(tmp_path):
    page = tmp_path / "two.md"
    page.write_text(
        "<!-- not-run: first reason here -->\n```bash\ntrue\n```\n\n"
        "text between\n\n<!-- not-run: second reason -->\n```bash\ntrue\n```\n\n```bash\ntrue\n```\n"
    )
    found = blocks(page)
    assert [(b.marker, b.note) for b in found] == [
        ("not-run", "first reason here"),
        ("not-run", "second reason"),
        (None, ""),
    ]


def test_the_quick_start_is_what_ci_runs():
    readme = ROOT / "README.md"
    quick = next(b for b in blocks(readme) if b.marker == "not-run")
    lines = quick.code.splitlines()
    assert lines[0].startswith("python3 -m venv .venv && .venv/bin/pip install -e '.[test]'")
    assert lines[0].endswith(".venv/bin/imr-extract extract examples/letters")
    assert lines[1] == ".venv/bin/pytest"
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python3 -m venv .venv" in ci and "\n.venv/bin/pytest\n" in ci


# --- record excerpts ----------------------------------------------------------------------------


def _agrees(shown: Any, real: Any, path: str = "") -> list[str]:
    """Where ``shown`` (an excerpt with ``"..."`` for the rest) says other than ``real``."""
    if shown == "...":
        return []
    if isinstance(shown, str) and shown.endswith("...") and isinstance(real, str):
        return [] if real.startswith(shown[:-3]) else [path]
    if isinstance(shown, dict):
        if not isinstance(real, dict):
            return [path]
        return [
            p
            for k, v in shown.items()
            if k != "..."
            for p in ([f"{path}.{k}"] if k not in real else _agrees(v, real[k], f"{path}.{k}"))
        ]
    if isinstance(shown, list):
        if not isinstance(real, list):
            return [path]
        open_end = bool(shown) and shown[-1] == "..."
        head = shown[:-1] if open_end else shown
        if len(head) > len(real) or (not open_end and len(head) != len(real)):
            return [f"{path} (length)"]
        return [p for i, v in enumerate(head) for p in _agrees(v, real[i], f"{path}[{i}]")]
    return [] if shown == real else [f"{path}: shown {shown!r}, extracted {real!r}"]


def _extracted(letter: str) -> dict[str, Any]:
    return extract_path(letter).model_dump(mode="json")


def test_every_record_excerpt_agrees_with_a_real_extraction(monkeypatch):
    monkeypatch.chdir(ROOT)
    excerpts = [b for b in ALL_BLOCKS if b.marker == "excerpt-of"]
    assert excerpts
    for block in excerpts:
        shown = json.loads(block.code)
        wrong = _agrees(shown, _extracted(block.note))
        assert not wrong, f"{block.where()}: {wrong}"


def test_the_excerpt_check_catches_a_wrong_count():
    real = {"verification": {"verified": 30}, "items": [{"a": 1}, {"a": 2}]}
    assert _agrees({"verification": {"verified": 38}}, real)
    assert _agrees({"items": [{"a": 1}]}, real)
    assert not _agrees({"items": [{"a": 1}, "..."], "...": "..."}, real)


# --- the field reference ------------------------------------------------------------------------

FIELDS_PAGE = DOCS / "reference" / "fields.md"
ROW = re.compile(r"^\| `([^`]+)` \| (.*?) \| (.*?) \|$", re.M)


def schema_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every field path of ``model``: ``items[].request``, ``provenance.*.spans[].page``, ..."""
    paths = []
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.append(path)
        paths += _paths_of(field.annotation, path)
    return paths


def _paths_of(annotation: Any, path: str) -> list[str]:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _paths_of(args[0], path)
    if origin in (typing.Union, types.UnionType):
        return [p for a in args if a is not type(None) for p in _paths_of(a, path)]
    if origin is list:
        return _paths_of(args[0], f"{path}[]")
    if origin is dict:
        return _paths_of(args[1], f"{path}.*")
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return schema_paths(annotation, f"{path}.")
    return []


def test_schema_paths_walks_nested_models():
    paths = schema_paths(LetterRecord)
    for path in (
        "dates.ur_denial",
        "items[].imr_guideline.citations[].pages",
        "provenance.*.spans[].page",
        "verification.checks[].detail",
        "extractor.usage.total_tokens",
    ):
        assert path in paths


def field_rows() -> dict[str, tuple[str, str]]:
    return {m[1]: (m[2].strip(), m[3].strip()) for m in ROW.finditer(FIELDS_PAGE.read_text())}


def test_the_field_reference_covers_every_field_of_the_schema():
    rows = field_rows()
    paths = schema_paths(LetterRecord)
    missing = [p for p in paths if p not in rows]
    assert not missing, f"fields without a row in {FIELDS_PAGE.name}: {missing}"
    unknown = [p for p in rows if p not in paths]
    assert not unknown, f"rows for fields the schema does not have: {unknown}"
    vague = [p for p, (meaning, _) in rows.items() if len(meaning) < 8]
    assert not vague, f"fields without a meaning: {vague}"


# Where a path's ``[]`` and ``*`` point, for the example column.
DICT_KEY = {"provenance": "items[0].request", "alternatives": None}


def _resolve(record: dict[str, Any], path: str) -> tuple[bool, Any]:
    value: Any = record
    for part in re.findall(r"[^.\[\]]+|\[\]", path):
        if part == "[]":
            if not value:
                return False, None
            value = value[0]
        elif part == "*":
            key = DICT_KEY[path.split(".")[0]]
            if key is None or key not in value:
                return False, None
            value = value[key]
        else:
            value = value[part]
    return True, value


def test_every_example_in_the_field_reference_is_the_extracted_value(monkeypatch):
    text = FIELDS_PAGE.read_text()
    letter = re.search(r"<!-- example-letter: (\S+) -->", text)
    assert letter, "the page names the letter its examples come from"
    monkeypatch.chdir(ROOT)
    record = _extracted(letter.group(1))
    wrong = []
    for path, (_, example) in field_rows().items():
        found, value = _resolve(record, path)
        leaf = not isinstance(value, (dict, list)) or (
            isinstance(value, list) and all(not isinstance(v, (dict, list)) for v in value)
        )
        if example in {"", "-", "—"}:
            if found and leaf:
                wrong.append(f"{path}: no example, extracted {json.dumps(value)}")
            continue
        assert example.startswith("`") and example.endswith("`"), path
        shown = example[1:-1]
        if shown.endswith('…"') and isinstance(value, str):
            ok = value.startswith(json.loads(shown[:-2] + '"'))
        else:
            ok = found and json.loads(shown) == value
        if not ok:
            wrong.append(f"{path}: shown {shown}, extracted {json.dumps(value)}")
    assert not wrong, "\n".join(wrong)


# --- generated pages ------------------------------------------------------------------------------


def _docs_reference() -> Any:
    spec = importlib.util.spec_from_file_location(
        "docs_reference", ROOT / "scripts/docs_reference.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["cli.md", "errors.md", "store.md"])
def test_the_generated_reference_pages_are_in_sync(name):
    module = _docs_reference()
    committed = (DOCS / "reference" / name).read_text(encoding="utf-8")
    assert committed == module.PAGES[name](), (
        f"docs/reference/{name} is out of date: run `python scripts/docs_reference.py`"
    )


def test_the_cli_reference_names_every_command_and_option():
    import typer

    from imr_extract.cli import app

    page = (DOCS / "reference" / "cli.md").read_text()
    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        assert f"## `imr-extract {name}`" in page
        for param in cmd.params:
            for opt in param.opts:
                assert opt.startswith("-") is False or opt in page, (name, opt)


def test_every_error_code_has_a_meaning():
    from imr_extract.errors import ImrExtractError

    module = _docs_reference()
    classes = module._error_classes()
    assert ImrExtractError in classes
    page = (DOCS / "reference" / "errors.md").read_text()
    for cls in classes:
        assert module.error_meaning(cls), f"{cls.__name__} ({cls.code}) has no meaning"
        assert f"| `{cls.code}` |" in page
    # Every code the package declares is there (the walk found every module).
    src = ROOT / "src" / "imr_extract"
    declared = {
        code
        for path in src.rglob("*.py")
        for code in re.findall(r'^\s+code = "([^"]+)"$', path.read_text(), re.M)
    }
    assert declared == {cls.code for cls in classes}


def test_the_layouts_page_has_a_row_per_layout():
    from imr_extract import layouts

    page = (DOCS / "reference" / "layouts.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \|", page, re.M)
    assert rows == [layout.name for layout in layouts.all_layouts()]


# --- the store's size, as the docs state it ------------------------------------------------------


def test_the_stated_store_size_per_letter_holds(tmp_path):
    page = (DOCS / "explanation" / "batch-runs.md").read_text()
    stated = re.search(r"about (\d+) KiB per letter", page)
    assert stated
    db = tmp_path / "s.sqlite"
    subprocess.run(
        [
            str(Path(sys.executable).parent / "imr-extract"), "extract", str(ROOT / "tests/data/letters"),
            "--store", str(db), "-o", os.devnull, "--no-summary", "--workers", "1",
        ],
        check=True,
        capture_output=True,
        env=_env(tmp_path),
    )  # fmt: skip
    letters = sqlite3.connect(db).execute("SELECT count(*) FROM letters").fetchone()[0]
    per_letter = db.stat().st_size / letters / 1024
    assert abs(per_letter - int(stated.group(1))) <= 0.25 * per_letter, per_letter


# --- the site -------------------------------------------------------------------------------------


def test_mkdocs_builds_the_site_strictly(tmp_path):
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        if os.environ.get("IMR_REQUIRE_DOCS"):
            pytest.fail("mkdocs-material is not installed (pip install -e '.[docs]')")
        pytest.skip("mkdocs-material is not installed (pip install -e '.[docs]')")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tmp_path / "site" / "reference" / "fields" / "index.html").exists()
