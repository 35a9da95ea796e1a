"""The README's service example, run as written: its ``imr-extract serve`` command started as
it stands (on a free port and a throwaway store), its stated first line checked, and its curl
command run against it with its output checked (``test_docs``'s console rules)."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import httpx

from service_server import free_port
from test_docs import ROOT, _console, _env, blocks

README = ROOT / "README.md"
THIS = "tests/test_readme_service.py::test_the_readme_starts_the_service_and_it_answers_a_letter"
README_URL = "http://127.0.0.1:8000"


def test_the_readme_starts_the_service_and_it_answers_a_letter(tmp_path: Path):
    serve, *calls = [b for b in blocks(README) if b.marker == "tested" and b.note == THIS]
    assert calls and all(README_URL in b.code for b in calls)
    (command, stated), *_ = [
        (line[2:], next(iter(serve.code.splitlines()[i + 1 :]), ""))
        for i, line in enumerate(serve.code.splitlines())
        if line.startswith("$ ")
    ]
    argv = shlex.split(command)
    assert argv[:2] == ["imr-extract", "serve"], command
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    (tmp_path / "home").mkdir()
    env = _env(tmp_path)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [*argv, "--port", str(port), "--letter-workers", "1"],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        assert stated.replace(README_URL, url) in log.read_text()
        for block in calls:
            _console(replace(block, code=block.code.replace(README_URL, url)), tmp_path, env)
        # The store it was started on, in the directory it was started in, holds the letter.
        assert (tmp_path / "imr-extract.sqlite").is_file()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(15)
