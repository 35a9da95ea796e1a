"""No key anywhere: endpoints that echo the API key, through every backend, sink and command.

A real local endpoint (tests/fake_openai.py, tests/batch_server.py) answers 401, 404, 500, a
timeout and a 200 of garbage, each repeating the key it was sent in its body and its headers (as
OpenAI's own 401 does: ``Incorrect API key provided: sk-...``, and proxies echo headers). The CLI
runs in its own processes -- ``extract`` with the llm and hybrid backends (``-o``, ``--errors``,
``--log-file`` at DEBUG, ``--store``), ``export`` and ``review`` from that store, ``batch submit``
and ``batch collect`` -- and every byte they write (stdout, stderr, every file under the test's
directory: outputs, logs, the SQLite store and its WAL, the answer cache, the job files, the
review page) is searched for the key and for every piece of it of 8 characters or more.

The key is made at run time: no key-shaped literal is in the repository.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import batch_server
from batch_server import BatchReply
from conftest import LETTERS, document
from fake_openai import Reply, serve
from imr_extract.errors import LLMRejectedError, LLMTransportError
from imr_extract.redact import MASK, redact, register_secret
from test_verify import HEADER

#: Each letter variant (the shared letter with its injury-date label renamed, so the hybrid
#: must ask the model for the header block) meets one way for the endpoint to fail.
CASES = {
    "alpha": "401",
    "beta": "404",
    "gamma": "500",
    "delta": "timeout",
    "epsilon": "garbage",
}
WINDOW = 8
#: The parts of a record that may hold what an endpoint said (the rest is read from the letter).
OUTSIDE = ("extractor", "warnings")


def make_key() -> str:
    """An OpenAI-shaped project key, new on every run (digits and both cases guaranteed)."""
    return "sk-" + "proj-" + secrets.token_urlsafe(40) + "Q7z" + secrets.token_urlsafe(40)


KEY = make_key()


def pieces(key: str = KEY, n: int = WINDOW) -> set[bytes]:
    raw = key.encode()
    return {raw[i : i + n] for i in range(len(raw) - n + 1)}


def leaks(blob: bytes, key: str = KEY) -> list[str]:
    """The pieces of ``key`` (``WINDOW`` characters or more) found in ``blob``."""
    return sorted(p.decode() for p in pieces(key) if p in blob)


def variant(marker: str) -> bytes:
    text = document(HEADER).text
    assert "Date of Injury:" in text
    return text.replace("Date of Injury:", f"Injury Dt ({marker}):", 1).encode()


def case_of(sent: str) -> str:
    for marker, case in CASES.items():
        if f"({marker})" in sent:
            return case
    return "401"


def echoing(body: dict[str, Any], headers: dict[str, str]) -> Reply:
    """What a hostile or careless endpoint says: the key it was sent, in its body and headers."""
    auth = headers.get("authorization", "")
    key = auth.removeprefix("Bearer ").strip()
    echo = {"X-Echo-Authorization": auth, "X-Request-Key": key}
    case = case_of(json.dumps(body))
    if case == "401":
        message = (
            f"Incorrect API key provided: {key}. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        )
        error = {"message": message, "type": "invalid_request_error", "code": "invalid_api_key"}
        return Reply(status=401, body=json.dumps({"error": error}).encode(), headers=echo)
    if case == "404":
        message = f"The model does not exist or key {key} has no access to it (auth: {auth})"
        return Reply(status=404, body=json.dumps({"error": {"message": message}}).encode())
    if case == "500":
        page = f"upstream failed; request headers were Authorization: {auth}; api_key={key}"
        return Reply(
            status=500,
            body=json.dumps({"error": {"message": page}}).encode(),
            headers={**echo, "Retry-After": "0"},
        )
    if case == "timeout":
        return Reply(delay_s=3.0, content=f"too late for {key}", headers=echo)
    return Reply(content=f"I cannot help with that, {key}.", headers=echo)


def batch_echo(line: dict[str, Any]) -> BatchReply | None:
    """The Batch API's view of the same failures: error-file lines and error bodies."""
    case = case_of(json.dumps(line))
    if case == "401":
        return BatchReply(error=("invalid_api_key", f"Incorrect API key provided: {KEY}."))
    if case in ("404", "500"):
        status = int(case)
        return BatchReply(status=status, body={"error": {"message": f"no access for {KEY}"}})
    if case == "timeout":
        return None  # never answered
    return BatchReply(content=f"I cannot help with that, {KEY}.")


def refuse_uploads(
    method: str, path: str, headers: dict[str, str]
) -> tuple[int, dict[str, Any]] | None:
    if (method, path) != ("POST", "/v1/files"):
        return None
    auth = headers.get("authorization", "")
    message = f"Incorrect API key provided: {auth.removeprefix('Bearer ')}"
    return 401, {"error": {"message": message, "type": "invalid_request_error"}}


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OPENAI_", "IMR_")) and k != "XDG_CACHE_HOME"
    }
    env.update(
        OPENAI_API_KEY=KEY,
        IMR_CACHE_DIR=str(tmp_path / "cache"),
        XDG_CACHE_HOME=str(tmp_path / "xdg-cache"),
        COLUMNS="200",
        **extra,
    )
    return env


class Runs:
    """Every CLI process of the test, with what it wrote to stdout and stderr."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.done: list[tuple[list[str], int, bytes, bytes]] = []

    def start(self, *args: str, **env: str) -> tuple[list[str], subprocess.Popen[bytes]]:
        argv = [sys.executable, "-m", "imr_extract.cli", *args]
        proc = subprocess.Popen(
            argv,
            cwd=self.tmp,
            env=environment(self.tmp, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        return list(args), proc

    def wait(self, *started: tuple[list[str], subprocess.Popen[bytes]]) -> list[int]:
        codes = []
        for args, proc in started:
            out, err = proc.communicate(timeout=180)
            self.done.append((args, proc.returncode, out, err))
            codes.append(proc.returncode)
        return codes

    def run(self, *args: str, **env: str) -> tuple[int, bytes, bytes]:
        self.wait(self.start(*args, **env))
        _args, code, out, err = self.done[-1]
        return code, out, err

    def streams(self) -> Iterator[tuple[str, bytes]]:
        for args, _code, out, err in self.done:
            yield f"stdout of {' '.join(args[:2])}", out
            yield f"stderr of {' '.join(args[:2])}", err


def written(root: Path) -> Iterator[tuple[str, bytes]]:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            yield str(path.relative_to(root)), path.read_bytes()


@pytest.fixture
def letters(tmp_path: Path) -> Path:
    folder = tmp_path / "letters"
    folder.mkdir()
    for marker in CASES:
        (folder / f"{marker}.txt").write_bytes(variant(marker))
    return folder


def test_no_piece_of_the_key_is_written_anywhere(tmp_path: Path, letters: Path) -> None:
    runs = Runs(tmp_path)
    with serve([], respond=echoing) as fake:
        common = ["--model", "fake-model", "--timeout", "1", "--no-progress", "--log-level"]
        # The hybrid's endpoint carries the key in its URL, as some gateways want it.
        keyed_url = fake.base_url.replace("/v1", f"/{KEY}/v1")
        started = []
        for backend, url in (("llm", fake.base_url), ("hybrid", keyed_url)):
            started.append(runs.start(
                "extract", str(letters), "--backend", backend, "--base-url", url, *common,
                "DEBUG", "-o", f"{backend}.jsonl", "--errors", f"{backend}.errors.jsonl",
                "--log-file", f"{backend}.log", "--store", f"{backend}.sqlite",
            ))  # fmt: skip
        assert runs.wait(*started) == [1, 0], [d[3].decode() for d in runs.done]
        # export and review read what the store kept.
        exports = [
            runs.start(
                "export", "--store", f"{backend}.sqlite", "-f", fmt, "-o", f"x.{backend}.{fmt}"
            )
            for backend in ("llm", "hybrid")
            for fmt in ("jsonl", "csv")
        ]
        assert runs.wait(*exports) == [0, 0, 0, 0]
        code, _out, review_err = runs.run(
            "review", str(letters / "alpha.txt"), "--results", "x.hybrid.jsonl", "--llm",
            "-o", "alpha.review.html",
            OPENAI_BASE_URL=fake.base_url, IMR_LLM_MODEL="fake-model",
        )  # fmt: skip
        assert code == 0, review_err.decode()
        sent_keys = {h.get("authorization") for h in fake.headers}
    # The endpoint was asked with the key, for every case, and echoed it back.
    assert sent_keys == {f"Bearer {KEY}"}
    asked = {case_of(json.dumps(r)) for r in fake.requests}
    assert asked == set(CASES.values())

    with batch_server.serve(batch_echo) as api:
        submits, collects = [], []
        for backend in ("llm", "hybrid"):
            job = f"{backend}.job.json"
            submits.append([
                "batch", "submit", str(letters), "--job", job, "--backend", backend,
                "--base-url", api.base_url, "--model", "fake-model", "--mode", "md_json",
            ])  # fmt: skip
            collects.append([
                "batch", "collect", "--job", job, "--poll-interval", "0", "--fallback", "rules",
                "-o", f"b.{backend}.jsonl", "--errors", f"b.{backend}.errors.jsonl",
            ])  # fmt: skip
        codes = runs.wait(*(runs.start(*args) for args in submits))
        assert codes == [0, 0], [d[3].decode() for d in runs.done[-2:]]
        codes = runs.wait(*(runs.start(*args) for args in collects))
        assert codes == [0, 0], [d[3].decode() for d in runs.done[-2:]]
    # An upload refused by an endpoint that repeats the key it was sent.
    with batch_server.serve(batch_echo, refuse=refuse_uploads) as api:
        code, _out, refused = runs.run(
            "batch", "submit", str(letters), "--job", "refused.job.json",
            "--base-url", api.base_url, "--model", "fake-model",
        )  # fmt: skip

    found = {
        where: leaked
        for where, blob in [*runs.streams(), *written(tmp_path)]
        if (leaked := leaks(blob))
    }
    assert sorted(found) == [], "\n".join(sorted(found))

    # What was written says what went wrong, without the key.
    assert code == 1 and b"uploading the requests failed" in refused and MASK.encode() in refused
    llm_errors = [json.loads(x) for x in (tmp_path / "llm.errors.jsonl").read_text().splitlines()]
    assert {Path(e["letter"]).stem: e["error"] for e in llm_errors} == {
        "alpha": "llm-rejected",
        "beta": "llm-rejected",
        "gamma": "llm-transport",
        "delta": "llm-transport",
        "epsilon": "llm-invalid",
    }
    alpha = next(e for e in llm_errors if "alpha" in e["letter"])
    assert "Incorrect API key provided: " + MASK in alpha["cause"]
    hybrid = [json.loads(x) for x in (tmp_path / "hybrid.jsonl").read_text().splitlines()]
    assert len(hybrid) == len(CASES)
    assert all(r["extractor"]["model_error"] for r in hybrid)
    echoed = [r for r in hybrid if r["letter"].split(".")[0] in ("alpha", "beta", "gamma")]
    assert len(echoed) == 3 and all(MASK in r["extractor"]["model_error"] for r in echoed)
    # Only what came from outside is masked: the values read from the letter are whole.
    for record in hybrid:
        assert MASK not in json.dumps({k: v for k, v in record.items() if k not in OUTSIDE})
        assert record["case_number"] == "CM16-0231706" and record["items"]
    exported = (tmp_path / "x.hybrid.jsonl").read_text().splitlines()
    assert sorted(exported) == sorted((tmp_path / "hybrid.jsonl").read_text().splitlines())
    with sqlite3.connect(tmp_path / "llm.sqlite") as db:
        causes = dict(db.execute("SELECT letter, cause FROM letters WHERE status = 'error'"))
    assert "Incorrect API key provided: " + MASK in causes["alpha.txt"]
    assert MASK in (tmp_path / "alpha.review.html").read_text()  # the hybrid's model_error
    batch = [json.loads(x) for x in (tmp_path / "b.llm.jsonl").read_text().splitlines()]
    alpha_batch = next(r for r in batch if r["letter"] == "alpha.txt")
    assert "Incorrect API key provided: " + MASK in alpha_batch["extractor"]["model_error"]


# --- the redaction itself -----------------------------------------------------------------------


def test_the_configured_key_is_masked_whatever_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from imr_extract.llm import LLMConfig

    plain = "correct-horse-battery-" + secrets.token_hex(6)  # no key shape at all
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert plain in redact(f"denied for {plain}")
    LLMConfig(api_key=plain)  # configuring a key registers it
    assert redact(f"denied for {plain}!") == f"denied for {MASK}!"
    other = "another-plain-secret-" + secrets.token_hex(6)
    monkeypatch.setenv("IMR_LLM_API_KEY", other)
    assert redact(f"x {other} y") == f"x {MASK} y"


@pytest.mark.parametrize(
    "shaped",
    [
        "sk-" + secrets.token_urlsafe(36),
        "sk-" + "proj-" + secrets.token_urlsafe(60),
        "sk-" + "ant-api03-" + secrets.token_urlsafe(60),
        "gh" + "p_" + secrets.token_hex(18),
        "github" + "_pat_" + secrets.token_hex(20),
        "x" + "oxb-" + secrets.token_hex(12) + "-" + secrets.token_hex(12),
        "AI" + "za" + secrets.token_urlsafe(27) + "Q7",
        "eyJ" + secrets.token_urlsafe(24) + ".eyJ" + secrets.token_urlsafe(30) + "."
        + secrets.token_urlsafe(20),
    ],
    ids=["sk", "sk-proj", "sk-ant", "github", "github-pat", "slack", "google", "jwt"],
)  # fmt: skip
def test_a_key_nobody_configured_is_masked_by_its_shape(
    shaped: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OPENAI_API_KEY", "IMR_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for text in (
        f"Incorrect API key provided: {shaped}.",
        f"Authorization: Bearer {shaped}",
        f'{{"x-api-key": "{shaped}"}}',
        f"https://proxy.example/v1?api_key={shaped}&x=1",
    ):
        masked = redact(text)
        assert leaks(masked.encode(), shaped) == [], (text, masked)
        assert MASK in masked
        assert redact(masked) == masked  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "sk- alone, sk-1 and pk_ are not keys",
        "Upheld. Overturned. Partially upheld.",
        "case CM16-0123456 and CM16-0224814",
        "token budget of 60000 spent after 2 attempt(s) (1834 tokens) without a valid answer",
        "Basic Medical Necessity Guidelines; Bearer of this letter",
        "task-specific, risk-benefit, desk-top, ask-the-doctor, rk-1234567",
        "sha256 6f1ed002ab5595859014ebf0951522d9bf44f8f1f0b4f1fa2a8c7d1e6f3e4d21",
        "custom_id imr-0231706-6f1ed002ab55-0-5877-1-1; request req_0123456789abcdef0123",
        "Official Disability Guidelines (ODG), Treatment in Workers' Compensation 2016",
        "the secret of recovery is rest",
    ],
)
def test_ordinary_words_and_numbers_are_not_masked(text: str) -> None:
    assert redact(text) == text


def test_no_letter_text_is_touched_by_the_key_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    """An error may quote a letter: the shapes must leave every shared letter's text alone."""
    for name in ("OPENAI_API_KEY", "IMR_LLM_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    paths = sorted(p for p in LETTERS.rglob("*") if p.suffix in (".pdf", ".txt"))
    assert len(paths) > 20
    from imr_extract.ingest import read_path

    changed = [p.name for p in paths if redact(text := read_path(p).text) != text]
    assert changed == []


def test_an_error_is_clean_where_it_is_made_and_across_processes() -> None:
    register_secret(KEY)
    exc = LLMRejectedError("a.pdf", f"endpoint answered HTTP 401: Incorrect key {KEY}")
    assert leaks(str(exc).encode()) == [] and leaks(exc.cause.encode()) == []
    again = pickle.loads(pickle.dumps(exc))
    assert again.cause == exc.cause and leaks(str(again).encode()) == []
    assert "a.pdf" in str(again) and MASK in again.cause


def test_each_sink_redacts_a_cause_that_skipped_the_first_pass(tmp_path: Path) -> None:
    """A cause set after the error was made (or by code that bypassed it) is caught again at
    the store, the hybrid's record and the CLI's lines."""
    from imr_extract.hybrid import rules_record, rules_standing
    from imr_extract.ingest import read_bytes
    from imr_extract.schema import Backend, ExtractorInfo, schema_hash
    from imr_extract.store import ResultKey, RunStore, code_version

    register_secret(KEY)
    exc = LLMTransportError("alpha.txt", "boom")
    exc.cause = f"boom {KEY}"  # skipped the first pass
    doc = read_bytes(variant("alpha"), "alpha.txt")
    info = ExtractorInfo(backend=Backend.HYBRID, schema_hash=schema_hash())
    record = rules_standing(rules_record(doc), exc, info)
    assert leaks(record.model_dump_json().encode()) == []

    key = ResultKey("llm", schema_hash=schema_hash(), version=code_version())
    with RunStore(tmp_path / "s.sqlite") as store:
        run = store.start_run(key, argv=["--base-url", f"http://h/{KEY}/v1"], inputs=[], config={})
        store.write(key, run, "alpha.txt", doc.sha256, error=exc)
        store.finish_run(run, letters=1, reused=0)
    assert all(leaks(blob) == [] for _, blob in written(tmp_path))


def test_a_library_warning_with_no_handler_reaches_stderr_redacted(tmp_path: Path) -> None:
    """Without --log-file, Python prints a library's warnings to stderr itself (its last-resort
    handler): the CLI redacts those lines as well."""
    script = (
        "import logging, sys\n"
        "from imr_extract.cli import app\n"
        "try:\n"
        "    app(['layouts'], standalone_mode=False)\n"
        "finally:\n"
        "    logging.getLogger('openai').warning('retrying: Incorrect API key %s', sys.argv[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, KEY],
        capture_output=True,
        env=environment(tmp_path),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"retrying: Incorrect API key " + MASK.encode() in done.stderr
    assert leaks(done.stderr) == [] and leaks(done.stdout) == []


def test_a_traceback_that_escapes_the_cli_is_printed_redacted(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from imr_extract import cli\n"
        "key = sys.argv[1]\n"
        "@cli.app.command('boom')\n"
        "def boom() -> None:\n"
        "    raise RuntimeError('endpoint said: Incorrect API key ' + key)\n"
        "sys.argv = ['imr-extract', 'boom']\n"
        "cli.main()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, KEY],
        capture_output=True,
        env=environment(tmp_path),
        timeout=60,
    )
    assert done.returncode == 1
    assert b"RuntimeError: endpoint said: Incorrect API key " + MASK.encode() in done.stderr
    assert leaks(done.stderr) == []


def test_a_worker_that_receives_a_config_masks_its_key_once_it_makes_a_client(
    tmp_path: Path,
) -> None:
    """A config reaches a worker process pickled (``__post_init__`` does not run there): the
    key is registered where the client that sends it is made."""
    from imr_extract.llm import LLMConfig

    plain = "plain-words-key-" + secrets.token_hex(8)
    blob = pickle.dumps(LLMConfig(api_key=plain, cache_dir=tmp_path)).hex()
    script = (
        "import pickle, sys\n"
        "from imr_extract.llm.client import make_openai_client\n"
        "from imr_extract.redact import redact\n"
        "config = pickle.loads(bytes.fromhex(sys.argv[1]))\n"
        "print(redact('before ' + config.api_key))\n"
        "make_openai_client(config)\n"
        "print(redact('after ' + config.api_key))\n"
    )
    env = environment(tmp_path)
    del env["OPENAI_API_KEY"]
    done = subprocess.run(
        [sys.executable, "-c", script, blob], capture_output=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().splitlines() == [f"before {plain}", f"after {MASK}"]
