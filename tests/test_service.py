"""The extraction service against a real uvicorn process on 127.0.0.1 (``imr-extract serve``):
real letters in, the gold records out; bad files, oversized bodies and missing keys answered
with problem+json naming the cause; concurrent uploads all answered; the OpenAPI document in
sync with the app."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conftest import letter_path, load_gold
from hostile import corpus
from imr_extract.service.problems import PROBLEM_BASE
from service_server import Server, clean_env, cli, serving
from test_gold import diff

ROOT = Path(__file__).parents[1]
OPENAPI = ROOT / "schemas" / "openapi.json"
GOLD = ROOT / "tests" / "data" / "gold"
#: Letters whose gold record the service must answer (PDF and text).
LETTERS = ["CM16-0231706.pdf", "CM17-0014449.pdf", "CM16-0249724.pdf", "000_95767a46bf993051.txt"]
MAX_BODY = 6 * 2**20


def _gold(name: str) -> dict:
    return load_gold(GOLD / f"{Path(name).stem}.json")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("service")
    made = cli("keys", "create", "--name", "tests", "--store", str(tmp / "service.sqlite"))
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with serving(tmp, "--letter-workers", "2", "--max-body", "6M") as srv:
        srv.key = key
        yield srv


@pytest.fixture(scope="module")
def client(server: Server):
    with server.client(server.key) as c:
        yield c


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == PROBLEM_BASE + code
    assert problem["code"] == code
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    assert "Traceback" not in response.text
    return problem


# --------------------------------------------------------------------------- health


def test_healthz_and_readyz_answer_without_a_key(server: Server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}


# --------------------------------------------------------------------------- letters in, gold out


@pytest.mark.parametrize("name", LETTERS)
def test_a_real_letter_in_its_gold_record_out(client: httpx.Client, name: str):
    data = letter_path(name).read_bytes()
    kind = "application/pdf" if name.endswith(".pdf") else "text/plain"
    r = client.post(
        "/v1/extract", content=data, params={"name": name}, headers={"Content-Type": kind}
    )
    assert r.status_code == 200, r.text
    record = r.json()
    problems = diff(_gold(name), record)
    assert not problems, "\n".join(problems)
    assert record["source"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert record["source"]["path"] is None  # never a path of the server
    assert record["provenance"] and record["verification"]["checks"]


def test_multipart_and_json_bodies_give_the_same_record(client: httpx.Client):
    name = "CM16-0249724.pdf"
    data = letter_path(name).read_bytes()
    r = client.post("/v1/extract", files={"file": (name, data, "application/pdf")})
    assert r.status_code == 200, r.text
    assert not diff(_gold(name), r.json())
    text_name = "000_95767a46bf993051.txt"
    text = letter_path(text_name).read_text(encoding="utf-8")
    r = client.post("/v1/extract", json={"text": text, "name": text_name})
    assert r.status_code == 200, r.text
    assert not diff(_gold(text_name), r.json())


@pytest.mark.parametrize("view", ["data", "compact"])
def test_views_are_the_clis_views(client: httpx.Client, view: str):
    """view=data / compact: what the CLI's --view writes, by the same code (output.view_json)."""
    from imr_extract.output import View, view_json

    name = "CM16-0231706.pdf"
    data = letter_path(name).read_bytes()
    pdf = {"Content-Type": "application/pdf"}
    full = client.post("/v1/extract", content=data, params={"name": name}, headers=pdf)
    r = client.post("/v1/extract", content=data, params={"view": view, "name": name}, headers=pdf)
    assert r.status_code == 200, r.text
    assert r.json() == json.loads(view_json(full.text, View(view)))
    assert not diff(_gold(name), r.json())
    if view == "data":
        assert "provenance" not in r.json() and "verification" not in r.json()
    else:
        assert all(set(p) == {"status", "spans"} for p in r.json()["provenance"].values())


def test_the_stored_record_and_its_review_page(client: httpx.Client, server: Server):
    name = "CM17-0014449.pdf"
    data = letter_path(name).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    posted = client.post(
        "/v1/extract",
        content=data,
        params={"name": name},
        headers={"Content-Type": "application/pdf"},
    ).json()
    stored = client.get(f"/v1/letters/{sha}")
    assert stored.status_code == 200, stored.text
    assert stored.json() == posted
    page = client.get(f"/v1/letters/{sha}/review")
    assert page.status_code == 200, page.text
    assert page.headers["content-type"].startswith("text/html")
    assert posted["case_number"] in page.text
    assert_problem(client.get(f"/v1/letters/{'0' * 64}"), 404, "not-found")
    assert_problem(client.get("/v1/letters/not-a-sha"), 422, "invalid-request")


def test_a_letter_the_cli_extracted_is_served_from_the_same_store(tmp_path: Path):
    """One code path, one key: the CLI's result is the service's (not extracted again)."""
    name = "CM16-0231706.pdf"
    store = tmp_path / "service.sqlite"
    done = cli("extract", str(letter_path(name)), "--store", str(store), "-o", str(tmp_path / "o"))
    assert done.returncode == 0, done.stderr
    sha = hashlib.sha256(letter_path(name).read_bytes()).hexdigest()
    with serving(tmp_path, "--no-auth", "--letter-workers", "1") as srv, srv.client() as c:
        got = c.get(f"/v1/letters/{sha}")
        assert got.status_code == 200, got.text
        assert got.json()["source"]["path"] is None  # the CLI's path is not shown
        assert not diff(_gold(name), got.json())
    # The service's run is recorded, and the letter was not written again.
    import sqlite3

    db = sqlite3.connect(store)
    assert db.execute("SELECT count(*) FROM letters WHERE sha256 = ?", (sha,)).fetchone() == (1,)
    assert db.execute("SELECT status FROM runs WHERE argv = '[\"serve\"]'").fetchone() == (
        "finished",
    )


# --------------------------------------------------------------------------- bad files


BAD = {
    "garbage.pdf": (b"%PDF-1.4\nthis is not a pdf at all\n%%EOF", 422, "pdf"),
    "empty.txt": (b"", 422, "empty"),
    "binary.txt": (bytes(range(256)) * 40, 422, "binary"),
    "no-letter.txt": (b"Dear Sir, nothing was decided here.\n" * 20, 422, "no-decisions"),
}
HOSTILE = {name: (data, code) for name, data, code in corpus() if code is not None}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_file_is_a_problem_naming_its_cause(client: httpx.Client, name: str, server: Server):
    data, status, code = BAD[name]
    r = client.post(
        "/v1/extract", content=data, params={"name": name}, headers={"Content-Type": "text/plain"}
    )
    problem = assert_problem(r, status, code)
    assert problem["letter"] == name
    assert str(server.store.parent) not in r.text


@pytest.mark.parametrize(
    "name", ["10000-pages.pdf", "unreadable-page.pdf", "utf16-without-bom.txt"]
)
def test_a_hostile_file_is_refused_with_its_limit_code(client: httpx.Client, name: str):
    data, code = HOSTILE[name]
    r = client.post(
        "/v1/extract",
        content=data,
        params={"name": name},
        headers={"Content-Type": "application/octet-stream"},
    )
    assert_problem(r, 422, code)


def test_requests_that_cannot_be_read_are_problems(client: httpx.Client):
    assert_problem(
        client.post("/v1/extract", content=b"x", headers={"Content-Type": "image/png"}),
        415,
        "unsupported-media-type",
    )
    assert_problem(
        client.post("/v1/extract", content=b"{", headers={"Content-Type": "application/json"}),
        400,
        "bad-request",
    )
    two = {"a": ("a.txt", b"one"), "b": ("b.txt", b"two")}
    assert_problem(client.post("/v1/extract", files=two), 400, "bad-request")
    assert_problem(
        client.post(
            "/v1/extract",
            content=b"x",
            params={"backend": "hybrid"},
            headers={"Content-Type": "text/plain"},
        ),
        409,
        "backend-unavailable",
    )
    assert_problem(client.get("/v1/nothing-here"), 404, "not-found")
    assert_problem(client.get("/v1/extract"), 405, "method-not-allowed")


# --------------------------------------------------------------------------- the body cap


def _raw(
    server: Server, head: bytes, send: int, block: int = 65536, *, chunked: bool = False
) -> tuple[bytes, int]:
    """Send ``head``, then up to ``send`` bytes of body (``block`` at a time, each framed as a
    chunk when ``chunked``) while the server keeps reading; the answer, and how many body bytes
    went out before it came."""
    piece = b"x" * block
    if chunked:
        piece = f"{block:x}\r\n".encode() + piece + b"\r\n"
    port = int(server.url.rsplit(":", 1)[1])
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(head)
        s.settimeout(0.005)
        answer = b""
        while sent < send:
            try:
                answer += s.recv(65536)
                if answer:
                    break
            except TimeoutError:
                pass
            try:
                s.sendall(piece)
                sent += block
            except OSError:  # the server closed the connection
                break
        s.settimeout(10)
        while b"\r\n\r\n" not in answer:
            more = s.recv(65536)
            if not more:
                break
            answer += more
    return answer, sent


def test_a_declared_length_past_the_cap_is_413_before_the_body_is_read(server: Server):
    key = server.key
    head = (
        b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\n"
        b"Authorization: Bearer " + key.encode() + b"\r\n"
        b"Content-Length: 10737418240\r\n\r\n"
    )
    started = time.monotonic()
    answer, sent = _raw(server, head, send=64 * 2**20)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"application/problem+json" in answer
    assert sent < MAX_BODY  # refused long before the cap's worth was sent, let alone 10 GiB
    assert time.monotonic() - started < 5


def test_a_chunked_body_past_the_cap_is_stopped_at_the_cap(server: Server):
    key = server.key
    head = (
        b"POST /v1/extract HTTP/1.1\r\nHost: x\r\nContent-Type: application/pdf\r\n"
        b"X-API-Key: " + key.encode() + b"\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    answer, sent = _raw(server, head, send=4 * MAX_BODY, chunked=True)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    # Stopped once the cap was passed: not the four caps' worth the client would have sent
    # (what the socket buffers held on the way is the slack).
    assert sent < 2 * MAX_BODY, sent


# --------------------------------------------------------------------------- keys


def test_no_key_a_wrong_key_or_a_revoked_key_is_401(server: Server):
    name = "CM16-0231706.pdf"
    data = letter_path(name).read_bytes()
    pdf = {"Content-Type": "application/pdf"}
    with server.client() as anon:
        problem = assert_problem(
            anon.post("/v1/extract", content=data, headers=pdf), 401, "unauthorized"
        )
        assert "keys create" in problem["detail"]
        assert_problem(anon.get(f"/v1/letters/{'0' * 64}"), 401, "unauthorized")
    wrong = "imr-sk-" + "A1b2" * 10
    with server.client(wrong) as c:
        assert_problem(c.post("/v1/extract", content=data, headers=pdf), 401, "unauthorized")
    made = cli("keys", "create", "--name", "short-lived", "--store", str(server.store))
    token = made.stdout.strip()
    with httpx.Client(base_url=server.url, headers={"X-API-Key": token}) as c:
        assert c.post("/v1/extract", content=data, headers=pdf).status_code == 200
        listed = cli("keys", "list", "--store", str(server.store)).stdout
        key_id = next(line.split("\t")[0] for line in listed.splitlines() if "short-lived" in line)
        assert token not in listed
        assert cli("keys", "revoke", key_id, "--store", str(server.store)).returncode == 0
        assert_problem(c.post("/v1/extract", content=data, headers=pdf), 401, "unauthorized")
    assert token.encode() not in server.store.read_bytes()  # only its hash is kept


def test_a_hosted_model_without_its_key_is_refused_before_the_service_starts(tmp_path: Path):
    env = {**clean_env(), "IMR_LLM_MODEL": "gpt-4o-mini"}  # the hosted endpoint, no key
    done = cli("serve", "--no-auth", "--store", str(tmp_path / "s.sqlite"), env=env)
    assert done.returncode == 2
    assert "OPENAI_API_KEY is not set" in done.stderr + done.stdout


def test_no_auth_is_refused_on_a_host_other_machines_can_reach(tmp_path: Path):
    done = cli("serve", "--no-auth", "--host", "0.0.0.0", "--store", str(tmp_path / "s.sqlite"))
    assert done.returncode == 2
    assert "--no-auth is allowed only on a loopback host" in done.stderr + done.stdout


# --------------------------------------------------------------------------- concurrency


def test_50_concurrent_uploads_every_good_letter_its_gold_every_bad_one_a_4xx_naming_its_cause(
    client: httpx.Client,
):
    """The issue's load: 50 uploads at once, 10% of them bad files (five causes). Every good
    letter is answered 200 with its gold values; every bad one a 4xx problem whose ``type``
    names its own cause."""
    goods = sorted(p.name for p in (ROOT / "tests/data/letters/pdf").glob("*.pdf"))[:45]
    bads = {n: BAD[n][::2] for n in ("garbage.pdf", "empty.txt", "binary.txt", "no-letter.txt")}
    bads["10000-pages.pdf"] = (HOSTILE["10000-pages.pdf"][0], "too-many-pages")
    jobs = [(n, letter_path(n).read_bytes(), None) for n in goods]
    jobs += [(n, data, code) for n, (data, code) in bads.items()]
    jobs = jobs[::2] + jobs[1::2]  # bad ones among the good
    assert len(jobs) == 50 and sum(code is not None for _, _, code in jobs) == 5
    assert len({code for _, _, code in jobs if code}) == 5  # five different causes

    def send(job: tuple[str, bytes, str | None]) -> tuple[str, str | None, httpx.Response]:
        name, data, code = job
        kind = "application/pdf" if name.endswith(".pdf") else "text/plain"
        r = client.post(
            "/v1/extract", content=data, params={"name": name}, headers={"Content-Type": kind}
        )
        return name, code, r

    started = time.monotonic()
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(send, jobs))
    elapsed = time.monotonic() - started
    assert len(answers) == 50
    for name, code, r in answers:
        if code is None:
            assert r.status_code == 200, (name, r.text)
            problems = diff(_gold(name), r.json())
            assert not problems, (name, problems)
            assert r.json()["letter"] == name
        else:
            assert 400 <= r.status_code < 500, (name, r.text)
            problem = assert_problem(r, r.status_code, code)
            assert problem["letter"] == name
    assert elapsed < 90


# --------------------------------------------------------------------------- OpenAPI, logs


def test_the_openapi_document_is_in_sync_with_the_app(server: Server):
    from imr_extract.service.openapi import openapi_text

    assert OPENAPI.read_text(encoding="utf-8") == openapi_text(), (
        "schemas/openapi.json is stale: regenerate it with "
        "`python -m imr_extract.service.openapi schemas/openapi.json` and commit it"
    )
    served = httpx.get(server.url + "/openapi.json").json()
    assert served == json.loads(OPENAPI.read_text(encoding="utf-8"))
    assert {"/v1/extract", "/v1/letters/{sha256}", "/healthz", "/readyz"} <= set(served["paths"])


# --------------------------------------------------------------------------- verify, metrics

THEIRS = {  # another tool's record, in the output shape (as docs/how-to/verify-records.md)
    "letter": "CM16-0231706.pdf",
    "case_number": "CM16-0231706",
    "dates": {"decision": "2017-01-05", "ur_denial": "11/29/2016"},  # a US-format date
    "items": [
        {
            "request": "Chiropractic physiotherapy treatment 6 visits",
            "decision": "overturned",  # the letter says Upheld
            "claims_administrator_guideline": {"cited": True, "outside_mtus": False},
            "imr_guideline": {"cited": True, "outside_mtus": False},
        }
    ],
}


def test_verify_answers_another_tools_record_with_statuses(client: httpx.Client):
    name = "CM16-0231706.pdf"
    data = letter_path(name).read_bytes()
    r = client.post(
        "/v1/verify",
        files={"letter": (name, data, "application/pdf"), "record": (None, json.dumps(THEIRS))},
    )
    assert r.status_code == 200, r.text
    record = r.json()
    assert record["extractor"]["backend"] == "external"
    assert record["provenance"]["case_number"]["status"] == "verified"
    assert record["provenance"]["items[0].decision"]["status"] == "contradicted"
    invalid = [
        c["paths"] for c in record["verification"]["checks"] if c["name"] == "value_fits_schema"
    ]
    assert invalid == [["dates.ur_denial"]]
    # the same as JSON, with the letter's text
    text_name = "000_95767a46bf993051.txt"
    gold = _gold(text_name)
    r = client.post(
        "/v1/verify",
        json={
            "text": letter_path(text_name).read_text(encoding="utf-8"),
            "name": text_name,
            "record": gold,
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["verification"]["contradicted"] == 0
    assert r.json()["verification"]["verified"] > 0
    # not a record, a letter that cannot be read, a form without its parts
    r = client.post("/v1/verify", json={"text": "x", "record": [1, 2]})
    assert_problem(r, 422, "record")
    r = client.post("/v1/verify", files={"letter": ("e.txt", b""), "record": (None, "{}")})
    assert_problem(r, 422, "empty")
    assert_problem(client.post("/v1/verify", files={"letter": ("a.pdf", data)}), 400, "bad-request")


def _metric(text: str, line_start: str) -> float:
    for line in text.splitlines():
        if line.startswith(line_start + " "):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_requests_letters_and_errors_by_code(client: httpx.Client, server: Server):
    before = httpx.get(server.url + "/metrics").text
    name = "CM16-0249724.pdf"
    pdf = {"Content-Type": "application/pdf"}
    client.post("/v1/extract", content=letter_path(name).read_bytes(), headers=pdf)
    client.post("/v1/extract", content=b"%PDF-1.4 nothing", headers=pdf)
    r = httpx.get(server.url + "/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    ok = 'imr_letters_total{outcome="ok"}'
    reused = 'imr_letters_total{outcome="reused"}'
    assert (
        _metric(after, ok) + _metric(after, reused)
        == _metric(before, ok) + _metric(before, reused) + 1
    )
    assert (
        _metric(after, 'imr_errors_total{code="pdf"}')
        == _metric(before, 'imr_errors_total{code="pdf"}') + 1
    )
    posted = 'imr_requests_total{route="/v1/extract",method="POST",status="200"}'
    assert _metric(after, posted) >= _metric(before, posted) + 1
    count = 'imr_request_duration_seconds_count{route="/v1/extract"}'
    inf = 'imr_request_duration_seconds_bucket{route="/v1/extract",le="+Inf"}'
    assert _metric(after, count) == _metric(after, inf) >= 2
    assert "# TYPE imr_request_duration_seconds histogram" in after
    # a path a caller made up is counted under one label, not as a new series
    httpx.get(server.url + "/no/such/" + "x" * 20)
    assert "/no/such" not in httpx.get(server.url + "/metrics").text


def test_the_server_log_holds_no_traceback_and_no_key(server: Server):
    key = server.key
    log = server.log.read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log
    assert key not in log and key[7:20] not in log


def test_a_letter_past_its_deadline_and_a_key_past_its_rate(tmp_path: Path):
    """--letter-timeout: the letter's worker is stopped and the letter is a 422 ``timeout``, the
    service goes on (a new worker takes the next); --rate: past it, 429 with Retry-After."""
    store = tmp_path / "service.sqlite"
    key = cli("keys", "create", "--store", str(store)).stdout.strip()
    args = ("--letter-workers", "1", "--letter-timeout", "0.001", "--rate", "12")
    with serving(tmp_path, *args) as srv, srv.client(key) as c:
        data = letter_path("CM16-0231706.pdf").read_bytes()
        pdf = {"Content-Type": "application/pdf"}
        for _ in range(2):  # a burst of 12/6 = 2
            problem = assert_problem(
                c.post("/v1/extract", content=data, headers=pdf), 422, "timeout"
            )
            assert "--letter-timeout" in problem["detail"]
        r = c.post("/v1/extract", content=data, headers=pdf)
        assert_problem(r, 429, "rate-limited")
        assert int(r.headers["Retry-After"]) >= 1
        assert httpx.get(srv.url + "/healthz").status_code == 200


def test_the_model_endpoint_down_hybrid_answers_from_the_rules(tmp_path: Path):
    """A model configured on the server (its endpoint a closed port): /readyz says so, and
    ``backend=hybrid`` answers the rules' record with the model's failure recorded in it (and in
    the store); the key is in no answer and no log line. (``backend=llm`` is then a 502
    ``llm-transport`` problem: ``test_service_app``, without waiting for the retries.)"""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    secret = "imr-test-placeholder-not-a-key"
    env = {
        "IMR_LLM_MODEL": "test-model",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{closed}/v1",
        "OPENAI_API_KEY": secret,
    }
    # A letter the rules do not verify whole: the hybrid sends it to the model.
    letter = ROOT / "tests/data/relaid/notice_2013/000_95767a46bf993051.txt"
    data = letter.read_bytes()
    text = {"Content-Type": "text/plain"}
    with serving(tmp_path, "--no-auth", "--letter-workers", "1", env=env) as srv, srv.client() as c:
        ready = c.get("/readyz")
        assert_problem(ready, 503, "model-unreachable")
        assert "backend=rules still works" in ready.json()["detail"] and secret not in ready.text
        r = c.post("/v1/extract", content=data, params={"backend": "hybrid"}, headers=text)
        assert r.status_code == 200, r.text
        record = r.json()
        assert record["extractor"]["backend"] == "hybrid"
        assert record["extractor"]["routed"] == "letter"
        assert "Connection error" in record["extractor"]["model_error"]
        assert record["items"] and secret not in r.text
        sha = hashlib.sha256(data).hexdigest()
        stored = c.get(f"/v1/letters/{sha}", params={"backend": "hybrid"}).json()
        assert stored["extractor"]["model_error"] == record["extractor"]["model_error"]
    assert secret not in srv.log.read_text(encoding="utf-8", errors="replace")


@pytest.mark.parametrize("workers", ["1", "2"])
def test_uvicorns_log_lines_pass_redact(tmp_path: Path, workers: str):
    """uvicorn's own lines (startup, one access line per request with its query string, the
    client's address from X-Forwarded-For) pass ``redact``: key-shaped values a caller put in
    the path, the query string and the headers never reach the log, while the lines naming
    those requests are there (masked). With ``--workers 2`` the lines come from uvicorn's
    worker processes, each configured from the same (pickled) logging configuration."""
    import secrets

    def key_shaped(prefix: str) -> str:  # built at run time: no key-shaped literal is committed
        return prefix + secrets.token_urlsafe(24).replace("-", "x").replace("_", "y") + "Q7"

    in_path = key_shaped("sk-" + "proj-")
    in_query = key_shaped("")
    in_header = key_shaped("sk-")
    bearer = key_shaped("")
    forwarded = key_shaped("sk-")
    with serving(tmp_path, "--workers", workers, "--letter-workers", "1") as srv:
        r = httpx.get(
            f"{srv.url}/v1/letters/{in_path}",
            params={"api_key": in_query},
            headers={
                "X-API-Key": in_header,
                "Authorization": f"Bearer {bearer}",
                "X-Forwarded-For": forwarded,
            },
        )
        assert_problem(r, 401, "unauthorized")
        assert_problem(httpx.get(f"{srv.url}/{in_path}?token={in_query}"), 404, "not-found")
        # from a proxy on this machine, the caller's address (X-Forwarded-For) is logged
        assert httpx.get(srv.url + "/healthz", headers={"X-Forwarded-For": "203.0.113.7"})
    log = srv.log.read_text(encoding="utf-8", errors="replace")
    for secret in (in_path, in_query, in_header, bearer, forwarded):
        assert secret not in log
        assert secret[-12:] not in log  # not a piece of one either
    lines = log.splitlines()
    assert any("GET /v1/letters/" in line and "api_key=[redacted]" in line for line in lines), log
    assert any('[redacted]:0 - "GET /v1/letters/[redacted]?' in line for line in lines), log
    assert any('GET /[redacted]?token=[redacted] HTTP/1.1" 404' in line for line in lines), log
    assert any("203.0.113.7" in line and "/healthz" in line for line in lines), log
    assert "Application startup complete" in log  # uvicorn's own lines are written too


def test_two_service_processes_answer_kept_alive_connections_without_nagles_delay(tmp_path: Path):
    """``--workers 2``: uvicorn binds the socket itself and asyncio then leaves Nagle's algorithm
    on, so every answer past the first on a kept-alive connection waited ~40 ms for the client's
    delayed ACK (uvicorn issue #3149). The service sets TCP_NODELAY on each connection: the
    median of sequential requests on one connection is a few milliseconds, not 40."""
    import statistics

    with serving(tmp_path, "--no-auth", "--workers", "2", "--letter-workers", "1") as srv:
        with httpx.Client(base_url=srv.url) as c:
            times = []
            for _ in range(25):
                started = time.perf_counter()
                assert c.get("/healthz").status_code == 200
                times.append(time.perf_counter() - started)
    assert statistics.median(times[1:]) < 0.025, times
