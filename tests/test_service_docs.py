"""The service how-to's examples (docs/how-to/service.md), run against a real server.

The page's curl and httpx blocks name this test (``<!-- tested: ... -->``): each is run here,
in order, as ``test_docs`` runs a page (``console`` command by command with its shown output
checked, ``python`` with ``exec``), against an ``imr-extract serve`` started for it, with the
page's address replaced by the server's and ``IMR_KEY`` a key made with ``keys create``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from service_server import cli, serving
from test_docs import ROOT, _console, _env, blocks

PAGE = ROOT / "docs" / "how-to" / "service.md"
THIS = "tests/test_service_docs.py::test_the_examples_on_the_page_run_against_a_real_server"
PAGE_URL = "http://127.0.0.1:8000"


def test_the_examples_on_the_page_run_against_a_real_server(tmp_path: Path, monkeypatch):
    mine = [b for b in blocks(PAGE) if b.marker == "tested" and b.note == THIS]
    assert len(mine) >= 3 and {b.lang for b in mine} == {"console", "python"}
    assert all(PAGE_URL in b.code for b in mine if b.lang == "console")
    work = tmp_path / "work"
    work.mkdir()
    (work / "examples").symlink_to(ROOT / "examples")
    (work / "home").mkdir()
    made = cli("keys", "create", "--name", "docs", "--store", str(tmp_path / "service.sqlite"))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with serving(tmp_path, "--letter-workers", "1") as server:
        # keys commands find the service's store as the page's do (serve and keys share it)
        env = _env(work) | {"IMR_KEY": key, "IMR_STORE": str(server.store)}
        monkeypatch.chdir(work)
        monkeypatch.setenv("IMR_KEY", key)
        namespace: dict[str, object] = {"__name__": "__docs__"}
        for block in mine:
            block = replace(block, code=block.code.replace(PAGE_URL, server.url))
            if block.lang == "console":
                _console(block, work, env)
            else:
                exec(compile(block.code, block.where(), "exec"), namespace)
        assert namespace["record"]["case_number"] == "CM17-0014449"  # type: ignore[index]
        checked = namespace["checked"]["provenance"]  # type: ignore[index]
        assert checked["items[0].decision"]["status"] == "contradicted"


def test_the_page_is_in_the_site_navigation():
    assert "how-to/service.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("command", ["serve", "keys"])
def test_the_page_names_the_commands(command: str):
    assert f"imr-extract {command}" in PAGE.read_text(encoding="utf-8")
