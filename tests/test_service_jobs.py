"""Jobs against a real uvicorn process (``imr-extract serve``): many letters in (a multipart form,
a tar, a tar.gz, a zip), their gold records out as JSON Lines in the job's order; hostile
archives refused whole with a code naming the cause; a cancelled job extracts no letter it had
not started; a job is its key's alone; ``POST /v1/extract`` past its wait answers 202 and a job
that later holds the record."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import sqlite3
import tarfile
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

import fake_openai
import pg
from conftest import letter_path
from service_server import Server, cli, serving
from test_gold import diff
from test_service import _gold, assert_problem
from test_store_postgres import rows
from test_verify import GOLD, gold_answer

ROOT = Path(__file__).parents[1]
#: Letters with gold records, PDF and text.
LETTERS = [
    "CM16-0231706.pdf",
    "CM17-0014449.pdf",
    "CM16-0249724.pdf",
    "CM16-0224814.pdf",
    "CM16-0228949.pdf",
    "000_95767a46bf993051.txt",
]
MAX_BODY = 4 * 2**20
pg_server, pg_url = pg.pg_server, pg.pg_url  # the throwaway PostgreSQL server's fixtures


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("jobs")
    keys = []
    for name in ("jobs", "other"):
        made = cli("keys", "create", "--name", name, "--store", str(tmp / "service.sqlite"))
        assert made.returncode == 0, made.stderr
        keys.append(made.stdout.strip())
    with serving(tmp, "--letter-workers", "2", "--max-body", "4M") as srv:
        srv.key = keys[0]
        srv.other = keys[1]  # type: ignore[attr-defined]
        yield srv


@pytest.fixture(scope="module")
def client(server: Server):
    with server.client(server.key) as c:
        yield c


def wait_done(client: httpx.Client, location: str, timeout_s: float = 60) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        job = client.get(location).json()
        if job["status"] in ("finished", "cancelled") and not _running(job):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def _running(job: dict) -> int:
    c = job["counts"]
    return c["letters"] - c["done"] - c["cancelled"]


def lines(response: httpx.Response) -> list[dict]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    return [json.loads(line) for line in response.text.splitlines()]


def assert_gold_lines(found: list[dict], names: list[str]) -> None:
    assert [r.get("letter") for r in found] == [Path(n).name for n in names]
    for name, record in zip(names, found, strict=True):
        problems = diff(_gold(name), record)
        assert not problems, "\n".join(problems)
        assert record["source"]["path"] is None


def post_job(client: httpx.Client, **kw: object) -> tuple[dict, str]:
    r = client.post("/v1/jobs", **kw)  # type: ignore[arg-type]
    assert r.status_code == 202, r.text
    job = r.json()
    assert r.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] in ("queued", "running")
    return job, r.headers["location"]


# --------------------------------------------------------------------------- letters in, gold out


def test_a_multipart_job_gives_every_gold_record_in_order(client: httpx.Client):
    files = [("files", (n, letter_path(n).read_bytes())) for n in LETTERS]
    job, where = post_job(client, files=files)
    assert job["counts"]["letters"] == len(LETTERS) and job["backend"] == "rules"
    # follow: every letter's line, streamed as each is done, until the job ends
    with client.stream("GET", where + "/results", params={"follow": "true"}) as r:
        r.read()
    assert_gold_lines(lines(r), LETTERS)
    done = client.get(where).json()
    assert done["status"] == "finished" and done["progress"] == 1.0
    assert done["counts"]["done"] == done["counts"]["ok"] == len(LETTERS)
    assert done["finished_at"] and done["started_at"]
    # the same results again, in another view: what the CLI's --view writes
    from imr_extract.output import View, view_json

    full = client.get(where + "/results").text.splitlines()
    data = lines(client.get(where + "/results", params={"view": "data"}))
    assert data == [json.loads(view_json(line, View.DATA)) for line in full]
    assert all("provenance" not in d for d in data)


def _tar(members: list[tuple[bytes | str, bytes | None]], compress: bool) -> bytes:
    """A tar of (name, data) members; data None: a directory; bytes names as they are."""
    out = io.BytesIO()
    with tarfile.open(
        fileobj=out, mode="w:gz" if compress else "w", format=tarfile.GNU_FORMAT
    ) as t:
        for name, data in members:
            info = tarfile.TarInfo(
                name if isinstance(name, str) else name.decode("utf-8", "surrogateescape")
            )
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("batch/link.pdf")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        t.addfile(link)
    return out.getvalue()


def _zip(members: list[tuple[bytes | str, bytes | None]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            if isinstance(name, bytes):  # not UTF-8: its bytes put in below, no UTF-8 flag
                z.writestr(_placeholder(name), data or b"")
            elif data is None:
                z.writestr(name.rstrip("/") + "/", b"")
            else:
                z.writestr(name, data)
    body = out.getvalue()
    for name, _ in members:
        if isinstance(name, bytes):
            body = body.replace(_placeholder(name).encode(), name)
    return body


def _placeholder(name: bytes) -> str:
    """An ASCII name as long as ``name`` (zipfile writes any other name as UTF-8)."""
    return "".join(chr(b) if b < 128 else "Z" for b in name)


@pytest.mark.parametrize("kind", ["tar", "tar.gz", "zip"])
def test_an_archive_job_gives_gold_records_by_base_name_and_skips_the_rest(
    client: httpx.Client, kind: str
):
    text = letter_path(LETTERS[-1]).read_bytes()
    members: list[tuple[bytes | str, bytes | None]] = [("batch", None)]
    members += [(f"batch/{n}", letter_path(n).read_bytes()) for n in LETTERS[:4]]
    members += [
        ("batch/README.md", b"not a letter"),
        ("batch/.hidden.pdf", b"%PDF-1.4 hidden"),
        ("__MACOSX/batch/._CM16-0231706.pdf", b"\x00\x05\x16\x07"),
        (b"batch/caf\xe9.txt", text),  # a name that is not UTF-8
    ]
    if kind == "zip":
        body, media = _zip(members), "application/zip"
    else:
        body = _tar(members, compress=kind == "tar.gz")
        media = "application/gzip" if kind == "tar.gz" else "application/x-tar"
    job, where = post_job(client, content=body, headers={"Content-Type": media})
    skipped = 3 + (kind != "zip")  # README, the hidden file, the resource fork; a tar's link
    assert job["counts"]["letters"] == 5 and job["counts"]["skipped"] == skipped
    found = lines(client.get(where + "/results", params={"follow": "true"}))
    assert_gold_lines(found[:4], LETTERS[:4])
    assert found[4]["letter"] == "caf\\xe9.txt"  # its byte carried as the project does
    assert not diff({k: v for k, v in _gold(LETTERS[-1]).items() if k != "letter"}, found[4])
    assert wait_done(client, where)["counts"]["ok"] == 5


def test_octet_stream_is_sniffed(client: httpx.Client):
    body = _zip([(n, letter_path(n).read_bytes()) for n in LETTERS[:2]])
    _job, where = post_job(
        client, content=body, headers={"Content-Type": "application/octet-stream"}
    )
    assert_gold_lines(lines(client.get(where + "/results", params={"follow": "true"})), LETTERS[:2])


# --------------------------------------------------------------------------- hostile archives


def _zip_bomb() -> bytes:
    """One member of zeros that inflates past the body cap (it is a few KB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        with z.open("bomb.pdf", "w", force_zip64=True) as member:
            for _ in range(MAX_BODY // 2**20 + 2):
                member.write(b"\0" * 2**20)
    return out.getvalue()


def _tar_gz_bomb() -> bytes:
    return _tar([("bomb.txt", b"\0" * (MAX_BODY + 2**20))], compress=True)


HOSTILE = {
    "zip-bomb": (_zip_bomb, "application/zip", 413, "archive-too-large"),
    "tar-gz-bomb": (_tar_gz_bomb, "application/gzip", 413, "archive-too-large"),
    "many-small-ones": (
        lambda: _zip([(f"{i}.txt", b"x" * 2**20) for i in range(5)]),
        "application/zip",
        413,
        "archive-too-large",
    ),
    "too-many-members": (
        lambda: _zip([(f"{i}.txt", b"x") for i in range(1001)]),
        "application/zip",
        413,
        "archive-too-many-members",
    ),
    "too-many-tar-members": (
        lambda: _tar([(f"{i}", None) for i in range(1001)], compress=True),
        "application/gzip",
        413,
        "archive-too-many-members",
    ),
    "climbing-zip": (
        lambda: _zip([("a.pdf", b"%PDF-1.4"), ("../../etc/evil.pdf", b"%PDF-1.4")]),
        "application/zip",
        422,
        "archive-unsafe-name",
    ),
    "absolute-tar": (
        lambda: _tar([("/tmp/evil.txt", b"x")], compress=False),
        "application/x-tar",
        422,
        "archive-unsafe-name",
    ),
    "not-a-zip": (
        lambda: letter_path(LETTERS[0]).read_bytes(),
        "application/zip",
        400,
        "bad-archive",
    ),
    "not-a-tar": (lambda: b"plain words " * 100, "application/x-tar", 400, "bad-archive"),
    "truncated-zip": (
        lambda: _zip([(n, letter_path(n).read_bytes()) for n in LETTERS[:2]])[:-300],
        "application/zip",
        400,
        "bad-archive",
    ),
    "neither": (lambda: b"\x00" * 600, "application/octet-stream", 400, "bad-archive"),
    "no-letters": (
        lambda: _zip([("notes.md", b"x"), ("img.png", b"\x89PNG")]),
        "application/zip",
        422,
        "no-letters",
    ),
    "not-a-job": (lambda: b"a letter", "text/plain", 415, "unsupported-media-type"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_bad_archive_is_refused_whole_with_its_code(
    client: httpx.Client, server: Server, case: str
):
    make, media, status, code = HOSTILE[case]
    body = make()
    assert len(body) <= MAX_BODY  # refused for what it is, not for the body's own size
    before = _jobs(server)
    r = client.post("/v1/jobs", content=body, headers={"Content-Type": media})
    assert_problem(r, status, code)
    assert "/tmp" not in r.json()["detail"] or case == "absolute-tar"
    assert _jobs(server) == before  # no job made


def _jobs(server: Server) -> int:
    with sqlite3.connect(server.store) as db:
        return int(db.execute("SELECT count(*) FROM jobs").fetchone()[0])


# --------------------------------------------------------------------------- cancel, ownership


def _variants(n: int) -> list[tuple[str, bytes]]:
    """``n`` letters of distinct content (a real letter's text with a line added)."""
    text = letter_path(LETTERS[-1]).read_bytes()
    return [(f"v{i:03}.txt", text + f"\nvariant {i} {time.time_ns()}\n".encode()) for i in range(n)]


def test_a_cancelled_job_extracts_no_letter_it_had_not_started(
    client: httpx.Client, server: Server
):
    letters = _variants(150)
    job, where = post_job(client, files=[("files", v) for v in letters])
    cancelled = client.delete(where)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    job = wait_done(client, where)
    counts = job["counts"]
    assert job["status"] == "cancelled"
    assert counts["cancelled"] > 0
    assert counts["ok"] + counts["failed"] + counts["cancelled"] == len(letters)
    found = lines(client.get(where + "/results"))
    assert len(found) == len(letters)
    never = [line for line in found if line.get("error") == "cancelled"]
    assert len(never) == counts["cancelled"]
    # none of those was extracted: no result of its content in the store
    with sqlite3.connect(server.store) as db:
        stored = {s for (s,) in db.execute("SELECT sha256 FROM letters")}
    assert not {line["sha256"] for line in never} & stored
    extracted = [line for line in found if "error" not in line]
    assert {r["source"]["sha256"] for r in extracted} <= stored
    time.sleep(1)  # the worker leaves it alone
    assert client.get(where).json()["counts"] == counts
    assert client.delete(where).json()["status"] == "cancelled"  # again: the same job


def test_a_job_is_its_keys_alone(client: httpx.Client, server: Server):
    _job, where = post_job(
        client, files=[("files", (LETTERS[0], letter_path(LETTERS[0]).read_bytes()))]
    )
    with server.client(server.other) as other:  # type: ignore[attr-defined]
        for method, path in (("GET", where), ("GET", where + "/results"), ("DELETE", where)):
            assert_problem(other.request(method, path), 404, "not-found")
    with server.client() as nobody:
        assert_problem(nobody.get(where), 401, "unauthorized")
    assert wait_done(client, where)["status"] == "finished"  # not cancelled by the other key
    assert_problem(client.get("/v1/jobs/job-" + "0" * 24), 404, "not-found")


def test_the_job_worker_waits_for_room_instead_of_failing_letters_busy(tmp_path: Path):
    """No queue at all (--max-queue 0, one letter worker): a request past it is refused busy,
    but the job worker, holding two letters at once, waits for room: every letter is done."""
    letters = _variants(12)
    args = ("--no-auth", "--letter-workers", "1", "--max-queue", "0")
    with serving(tmp_path, *args) as srv, srv.client() as c:
        _, where = post_job(c, files=[("files", v) for v in letters])
        job = wait_done(c, where)
        assert job["counts"]["ok"] == len(letters), job
        assert all("error" not in line for line in lines(c.get(where + "/results")))


def test_two_processes_on_one_sqlite_store_share_a_job(tmp_path: Path):
    """serve --workers 2 on SQLite: both processes' job workers take the job's letters, each
    letter once (the conditional UPDATE in one write transaction)."""
    letters = _variants(80)
    args = ("--no-auth", "--workers", "2", "--letter-workers", "1")
    with serving(tmp_path, *args) as srv, srv.client() as c:
        _, where = post_job(c, files=[("files", v) for v in letters])
        assert wait_done(c, where)["counts"]["ok"] == len(letters)
    with sqlite3.connect(srv.store) as db:
        n, attempts, workers = db.execute(
            "SELECT count(*), sum(attempts), count(DISTINCT worker) FROM job_letters"
        ).fetchone()
        extracted = db.execute("SELECT count(*) FROM letters").fetchone()[0]
    assert (n, attempts, extracted) == (len(letters), len(letters), len(letters))
    assert workers == 2


# --------------------------------------------------------------------------- the wait cap


def test_past_its_wait_extract_answers_202_and_the_job_gets_the_record(tmp_path: Path):
    """A model that takes its time (backend=llm): POST /v1/extract answers 202 with Location
    after the server's --wait, even asked to wait longer; the job later holds the record,
    the one the store serves."""
    name = "000_95767a46bf993051.txt"
    right = gold_answer(GOLD[name]).model_dump(mode="json")
    slow = fake_openai.answer(right, delay_s=2.0)
    with fake_openai.serve([slow]) as model:
        env = {
            "IMR_LLM_MODEL": "test-model",
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "imr-test-placeholder-not-a-key",
        }
        data = letter_path(name).read_bytes()
        text = {"Content-Type": "text/plain"}
        args = ("--no-auth", "--letter-workers", "1", "--wait", "1")
        with serving(tmp_path, *args, env=env) as srv, srv.client() as c:
            started = time.monotonic()
            r = c.post(
                "/v1/extract",
                content=data,
                headers=text,
                params={"backend": "llm", "name": name, "wait": 30},
            )
            took = time.monotonic() - started
            assert r.status_code == 202, r.text
            assert 0.9 < took < 5  # the server's cap (1 s), not the 30 s asked for (nor 10)
            job = r.json()
            assert r.headers["location"] == f"/v1/jobs/{job['id']}"
            assert job["status"] == "running" and job["counts"]["letters"] == 1
            assert job["backend"] == "llm"
            (record,) = lines(c.get(r.headers["location"] + "/results", params={"follow": "true"}))
            assert record["letter"] == name and record["extractor"]["backend"] == "llm"
            assert record["extractor"]["usage"]["requests"] >= 1  # the model's answer
            assert not diff(_gold(name), record)
            assert c.get(r.headers["location"]).json()["counts"]["ok"] == 1
            stored = c.get(f"/v1/letters/{record['source']['sha256']}", params={"backend": "llm"})
            assert stored.json() == record
            # the rules within the wait: the record itself, 200
            fast = c.post("/v1/extract", content=data, headers=text, params={"name": name})
            assert fast.status_code == 200 and not diff(_gold(name), fast.json())
            # wait=0: a job at once, which reuses the stored record
            r = c.post("/v1/extract", content=data, headers=text, params={"wait": 0})
            assert r.status_code == 202
            assert wait_done(c, r.headers["location"])["counts"]["reused"] == 1


# --------------------------------------------------------------------------- retention, follow cap


def _job_rows(store: Path | str, job_id: str) -> tuple[int, int]:
    """Rows of ``job_id`` in ``jobs`` and in ``job_letters``."""
    query = "SELECT (SELECT count(*) FROM jobs WHERE id = ?), (SELECT count(*) FROM job_letters"
    query += " WHERE job_id = ?)"
    if isinstance(store, str):  # PostgreSQL
        ((jobs, letters),) = rows(store, query, job_id, job_id)
        return int(jobs), int(letters)
    with sqlite3.connect(store) as db:
        found = db.execute(query, (job_id, job_id)).fetchone()
    return int(found[0]), int(found[1])


def _age_a_job(store: Path | str, job_id: str, finished_at: str) -> None:
    """Backdate ``job_id`` (as if it had been made and ended long ago)."""
    query = "UPDATE jobs SET created_at = ?, finished_at = ? WHERE id = ?"
    if isinstance(store, str):
        import psycopg

        with psycopg.connect(store, autocommit=True) as con:
            con.execute(query.replace("?", "%s"), ("2000-01-01T00:00:00.000Z", finished_at, job_id))
        return
    with sqlite3.connect(store) as db:
        db.execute(query, ("2000-01-01T00:00:00.000Z", finished_at, job_id))


def _gone_after(client: httpx.Client, where: str, timeout_s: float = 20) -> float:
    """Seconds until ``where`` answers 404 (fails past ``timeout_s``)."""
    started = time.monotonic()
    while True:
        r = client.get(where)
        if r.status_code == 404:
            assert_problem(r, 404, "not-found")
            return time.monotonic() - started
        assert r.status_code == 200, r.text
        assert time.monotonic() - started < timeout_s, f"{where} still there: {r.text}"
        time.sleep(0.2)


def _retention(tmp_path: Path, store: str | None) -> None:
    """serve --keep-jobs 2s: an ended job is deleted with its job_letters rows (404 like an
    unknown job), its letter's record still served; an unfinished job, however old, is kept."""
    name = LETTERS[0]
    data = letter_path(name).read_bytes()
    args = ("--no-auth", "--letter-workers", "1", "--keep-jobs", "2s")
    with serving(tmp_path, *args, store=store) as srv, srv.client() as c:
        _, where = post_job(c, files=[("files", (name, data))])
        done = wait_done(c, where)
        assert done["status"] == "finished" and done["counts"]["ok"] == 1
        (record,) = lines(c.get(where + "/results"))
        job_id = where.rsplit("/", 1)[1]
        # unfinished jobs "ended" in 2000: one running with a letter pending, one cancelled
        # with a letter still in a worker's hand: never deleted
        stuck = {
            "job-" + "1" * 24: ("running", "pending"),
            "job-" + "2" * 24: ("cancelled", "running"),
        }
        for stuck_id, (status, state) in stuck.items():
            _insert_stuck(srv.store, stuck_id, status, state)
        assert _job_rows(srv.store, job_id) == (1, 1)
        took = _gone_after(c, where)
        assert took < 15
        for path in (where + "/results",):
            assert_problem(c.get(path), 404, "not-found")
        assert_problem(c.delete(where), 404, "not-found")
        assert _job_rows(srv.store, job_id) == (0, 0)  # its job_letters rows too
        # the letter's record is the store's, not the job's: still served
        stored = c.get(f"/v1/letters/{record['source']['sha256']}")
        assert stored.status_code == 200 and stored.json() == record
        assert c.get(f"/v1/letters/{record['source']['sha256']}/review").status_code == 200
        time.sleep(3)  # more rounds of deletion than the 2 s kept
        for stuck_id, (status, _) in stuck.items():
            assert _job_rows(srv.store, stuck_id) == (1, 1)
            assert c.get(f"/v1/jobs/{stuck_id}").json()["status"] == status


def _insert_stuck(store: Path | str, job_id: str, status: str, state: str) -> None:
    """A job of backend llm (the server offers no model, so no worker takes its letter) made and
    "ended" (finished_at) in 2000, in ``status``, its one letter in ``state`` (running: held by
    another worker under a lease an hour long)."""
    old = "2000-01-01T00:00:00.000Z"
    job = (
        "INSERT INTO jobs (id, owner, backend, status, letters, skipped, created_at, started_at,"
        " finished_at) VALUES (?, '', 'llm', ?, 1, 0, ?, ?, ?)"
    )
    letter = (
        "INSERT INTO job_letters (job_id, position, name, sha256, state, worker, lease_until,"
        " attempts) VALUES (?, 0, 'x.txt', ?, ?, 'elsewhere:1:0', ?, 1)"
    )
    values = ((job_id, status, old, old, old), (job_id, "0" * 64, state, time.time() + 3600))
    if isinstance(store, str):
        import psycopg

        with psycopg.connect(store, autocommit=True) as con:
            con.execute(job.replace("?", "%s"), values[0])
            con.execute(letter.replace("?", "%s"), values[1])
        return
    with sqlite3.connect(store) as db:
        db.execute(job, values[0])
        db.execute(letter, values[1])


def test_an_ended_job_is_deleted_after_keep_jobs_and_its_record_stays(tmp_path: Path):
    _retention(tmp_path, None)


def test_an_ended_job_is_deleted_after_keep_jobs_on_postgresql(tmp_path: Path, pg_url: str):
    _retention(tmp_path, pg_url)


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_replicas_deleting_old_jobs_at_once_delete_each_once(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
):
    """Four stores (as four replicas) delete old jobs at once: no error, each job deleted by
    one of them, with all its job_letters rows; a job ended since the cutoff stays."""
    from imr_extract.service import jobs
    from imr_extract.store import RunStore

    target = request.getfixturevalue("pg_url") if kind == "postgresql" else tmp_path / "s.sqlite"
    old = [f"job-{i:024x}" for i in range(1, jobs.PURGE_BATCH + 41)]
    with RunStore(target) as store:
        jobs.make_tables(store)
        with store.transaction() as db:
            for job_id in [*old, "job-" + "f" * 24]:
                ended = "2000-01-01T00:00:00.000Z" if job_id in old else "2999-01-01T00:00:00.000Z"
                db.execute(
                    "INSERT INTO jobs (id, owner, backend, status, letters, skipped, created_at,"
                    " finished_at) VALUES (?, '', 'rules', 'finished', 2, 0, ?, ?)",
                    (job_id, ended, ended),
                )
                db.executemany(
                    "INSERT INTO job_letters (job_id, position, name, sha256, state)"
                    " VALUES (?, ?, 'x.txt', ?, 'done')",
                    [(job_id, 0, "0" * 64), (job_id, 1, "1" * 64)],
                )

    def purge(_: int) -> int:
        deleted = 0
        with RunStore(target) as mine:
            while n := jobs._purge(mine, 3600):
                deleted += n
        return deleted

    with ThreadPoolExecutor(4) as pool:
        deleted = list(pool.map(purge, range(4)))
    assert sum(deleted) == len(old)  # each job deleted once, across the replicas
    with RunStore(target) as store:
        left = store.db.execute("SELECT id FROM jobs").fetchall()
        letters = store.db.execute("SELECT DISTINCT job_id FROM job_letters").fetchall()
    assert left == letters == [("job-" + "f" * 24,)]


def test_keep_jobs_0_keeps_jobs_and_a_bad_duration_is_refused(tmp_path: Path):
    args = ("--no-auth", "--letter-workers", "1", "--keep-jobs", "0")
    with serving(tmp_path, *args) as srv, srv.client() as c:
        _, where = post_job(
            c, files=[("files", (LETTERS[0], letter_path(LETTERS[0]).read_bytes()))]
        )
        wait_done(c, where)
        _age_a_job(srv.store, where.rsplit("/", 1)[1], "2000-01-01T00:00:00.000Z")
        time.sleep(2.5)
        assert c.get(where).status_code == 200
    refused = cli("serve", "--keep-jobs", "a week", "--store", str(tmp_path / "x.sqlite"))
    assert refused.returncode == 2 and "--keep-jobs" in refused.stderr


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("12h", 43200), ("7d", 604800), ("0", 0)]
)
def test_a_duration_is_parsed(text: str, seconds: float):
    from imr_extract.service.settings import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "-1h", "7w", "nan", "inf"])
def test_a_bad_duration_is_refused(text: str):
    from imr_extract.service.settings import parse_duration

    with pytest.raises(ValueError):
        parse_duration(text)


def test_follow_ends_by_its_cap_on_a_job_that_has_not_ended(tmp_path: Path):
    """serve --follow-timeout 2: following a job whose letter takes the model 6 s ends after
    about 2 s with no line (counts.done 0 then); following again gets the record when done."""
    name = "000_95767a46bf993051.txt"
    right = gold_answer(GOLD[name]).model_dump(mode="json")
    slow = fake_openai.answer(right, delay_s=6.0)
    with fake_openai.serve([slow]) as model:
        env = {
            "IMR_LLM_MODEL": "test-model",
            "OPENAI_BASE_URL": model.base_url,
            "OPENAI_API_KEY": "imr-test-placeholder-not-a-key",
        }
        args = ("--no-auth", "--letter-workers", "1", "--follow-timeout", "2")
        with serving(tmp_path, *args, env=env) as srv, srv.client() as c:
            files = [("files", (name, letter_path(name).read_bytes()))]
            _, where = post_job(c, files=files, params={"backend": "llm"})
            started = time.monotonic()
            r = c.get(where + "/results", params={"follow": "true"})
            took = time.monotonic() - started
            assert r.status_code == 200 and r.text == ""
            assert 1.8 < took < 5, took  # the cap, not the model's 6 s
            job = c.get(where).json()
            assert job["status"] in ("queued", "running") and job["counts"]["done"] == 0
            # the client follows again (each stream capped) until its line comes
            follows = 1
            while not (found := lines(c.get(where + "/results", params={"follow": "true"}))):
                follows += 1
                assert follows < 10
            (record,) = found
            assert follows >= 2 and not diff(_gold(name), record)
            assert c.get(where).json()["counts"]["done"] == 1


# --------------------------------------------------------------------------- replicas on PostgreSQL

PDFS = sorted(p.name for p in (ROOT / "tests/data/letters/pdf").glob("*.pdf"))


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path):
    """Two replicas on one throwaway PostgreSQL store, one letter worker each, a short lease."""
    made = cli("keys", "create", "--name", "fleet", "--store", pg_url)
    assert made.returncode == 0, made.stderr
    with contextlib.ExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            srv = stack.enter_context(
                serving(
                    tmp_path / name,
                    "--letter-workers",
                    "1",
                    store=pg_url,
                    env={"IMR_JOB_LEASE_S": "2"},
                )
            )
            srv.key = made.stdout.strip()
            servers.append(srv)
        yield pg_url, servers


def _metric(server: Server, outcome: str) -> int:
    with server.client(server.key) as client:
        text = client.get("/metrics").text
    found = re.search(rf'^imr_letters_total\{{outcome="{outcome}"\}} (\d+)', text, re.M)
    return int(found.group(1)) if found else 0


def test_two_replicas_share_a_job_and_extract_each_letter_once(replicas: tuple):
    url, (a, b) = replicas
    files = [("files", (n, letter_path(n).read_bytes())) for n in PDFS]
    # the same letters as two jobs, one sent to each replica at once
    with ThreadPoolExecutor(2) as pool:
        sent = list(pool.map(lambda s: s.client(s.key).post("/v1/jobs", files=files), (a, b)))
    assert [r.status_code for r in sent] == [202, 202], [r.text for r in sent]
    where = [r.headers["location"] for r in sent]
    with b.client(b.key) as cb, a.client(a.key) as ca:
        jobs = [wait_done(cb, where[0]), wait_done(ca, where[1])]  # each asked of the other
        assert [j["status"] for j in jobs] == ["finished", "finished"]
        assert [j["counts"]["ok"] for j in jobs] == [len(PDFS), len(PDFS)]
        assert_gold_lines(lines(cb.get(where[0] + "/results")), PDFS)
    # each job's letters taken once each (no letter of a job taken by both replicas) ...
    taken = rows(
        url,
        "SELECT job_id, count(*), sum(attempts), count(DISTINCT worker) FROM job_letters"
        " GROUP BY job_id",
    )
    by_job = {job: (n, attempts, workers) for job, n, attempts, workers in taken}
    first = by_job[jobs[0]["id"]]
    assert first[:2] == (len(PDFS), len(PDFS))
    assert first[2] == 2  # both replicas worked on the job sent to one
    assert by_job[jobs[1]["id"]][:2] == (len(PDFS), len(PDFS))
    # ... and every letter extracted once across both jobs and both replicas (the other time
    # it was served from the store, perhaps after waiting on the other replica's claim)
    extracted = rows(url, "SELECT sha256 FROM job_letters WHERE reused = 0")
    assert len(extracted) == len(PDFS) == len(set(extracted))
    assert _metric(a, "ok") + _metric(b, "ok") == len(PDFS)
    assert _metric(a, "reused") + _metric(b, "reused") == len(PDFS)
    assert rows(url, "SELECT count(*), count(DISTINCT sha256) FROM letters") == [
        (len(PDFS), len(PDFS))
    ]


def test_a_job_whose_replica_dies_is_finished_by_another(replicas: tuple):
    url, (a, b) = replicas
    files = [("files", (n, letter_path(n).read_bytes())) for n in PDFS]
    with a.client(a.key) as ca:
        r = ca.post("/v1/jobs", files=files)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    mine = f"%:{a.process.pid}:%"
    held: list[tuple] = []
    for _ in range(200):  # freeze A while it holds letters, then kill it
        os.killpg(a.process.pid, signal.SIGSTOP)
        held = rows(
            url,
            "SELECT position FROM job_letters WHERE job_id = ? AND state = 'running'"
            " AND worker LIKE ?",
            job_id,
            mine,
        )
        if held:
            break
        os.killpg(a.process.pid, signal.SIGCONT)
        time.sleep(0.02)
    assert held, "replica A never held a letter"
    os.killpg(a.process.pid, signal.SIGKILL)
    a.process.wait(10)
    with b.client(b.key) as cb:
        job = wait_done(cb, f"/v1/jobs/{job_id}")
        assert job["status"] == "finished" and job["counts"]["ok"] == len(PDFS)
        assert_gold_lines(lines(cb.get(f"/v1/jobs/{job_id}/results")), PDFS)
    again = rows(
        url,
        "SELECT position, attempts, worker FROM job_letters WHERE job_id = ? AND position IN"
        f" ({', '.join('?' for _ in held)})",
        job_id,
        *[p for (p,) in held],
    )
    assert all(attempts == 2 and f":{b.process.pid}:" in worker for _, attempts, worker in again)


def test_the_jobs_bench_prints_a_row_per_run(tmp_path: Path):
    """bench/bench_jobs.py still runs and prints its table (its figures are measured, not
    tested)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_jobs.py"), "--letter-workers", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split() for line in done.stdout.splitlines()[1:]]
    assert [tuple(r[:6]) for r in rows] == [
        ("sqlite", "1", body, mode, "64", "64")
        for body in ("form", "tar.gz")
        for mode in ("extract", "reused")
    ]
    assert all(float(r[7]) > 0 for r in rows)


# --------------------------------------------------------------------------- archives, in process


def _read(body: bytes, media: str, cap: int = MAX_BODY):
    from imr_extract.service.archive import job_letters

    return job_letters(media, body, max_members=1000, member_cap=cap, total_cap=cap)


def _code(body: bytes, media: str, cap: int = MAX_BODY) -> str:
    from imr_extract.service.problems import ProblemError

    with pytest.raises(ProblemError) as refused:
        _read(body, media, cap)
    return refused.value.problem.code


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("a/b/CM1.pdf", "CM1.pdf"),
        ("a\\b\\CM1.pdf", "CM1.pdf"),
        ("dir/", None),
        ("tab\there.txt", "tab_here.txt"),
        ("caf\udce9.txt", "caf\\xe9.txt"),
    ],
)
def test_a_members_name_is_its_base_name(raw: str, name: str | None):
    from imr_extract.service.archive import member_name

    assert member_name(raw) == name


@pytest.mark.parametrize("raw", ["/etc/x.pdf", "\\x.pdf", "C:\\x.pdf", "a/../../x.pdf", "..\\x"])
def test_a_member_path_that_is_absolute_or_climbs_is_refused(raw: str):
    from imr_extract.service.archive import member_name
    from imr_extract.service.problems import ProblemError

    with pytest.raises(ProblemError) as refused:
        member_name(raw)
    assert refused.value.problem.code == "archive-unsafe-name"


def test_a_tar_member_of_any_type_is_charged_its_declared_size():
    """A FIFO declaring gigabytes (the reader would seek past them, inflating a tar.gz all the
    way) is refused as it is declared."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as t:
        info = tarfile.TarInfo("letter.txt")
        info.size = 1
        t.addfile(info, io.BytesIO(b"x"))
        fifo = tarfile.TarInfo("pipe")
        fifo.type = tarfile.FIFOTYPE
        t.addfile(fifo)
    body = bytearray(out.getvalue())
    # rewrite the FIFO's header with a huge size (a tar header is plain bytes in the gzip)
    import gzip

    raw = bytearray(gzip.decompress(bytes(body)))
    at = raw.index(b"pipe")
    raw[at + 124 : at + 136] = b"77777777777\0"  # size field, octal
    checksum = sum(raw[at : at + 148]) + 8 * 32 + sum(raw[at + 156 : at + 512])
    raw[at + 148 : at + 156] = f"{checksum:06o}\0 ".encode()
    assert _code(gzip.compress(bytes(raw)), "application/gzip") == "archive-too-large"


def test_bz2_tars_are_read_and_zip_links_skipped():
    text = letter_path(LETTERS[-1]).read_bytes()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:bz2") as t:
        info = tarfile.TarInfo("x/" + LETTERS[-1])
        info.size = len(text)
        t.addfile(info, io.BytesIO(text))
    found = _read(out.getvalue(), "application/octet-stream")
    assert [(x.name, x.data) for x in found.letters] == [(LETTERS[-1], text)]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        link = zipfile.ZipInfo("link.pdf")
        link.external_attr = (0o120777) << 16  # a symbolic link
        z.writestr(link, "/etc/passwd")
        z.writestr("a.txt", text)
    found = _read(out.getvalue(), "application/zip")
    assert [x.name for x in found.letters] == ["a.txt"] and found.skipped == 1


def test_an_encrypted_zip_member_is_refused():
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("a.txt", b"not really encrypted")
    body = bytearray(out.getvalue())
    body[6] |= 0x1  # the local header's flags: encrypted
    central = body.index(b"PK\x01\x02")
    body[central + 8] |= 0x1  # and the central directory's
    assert _code(bytes(body), "application/zip") == "bad-archive"


def test_a_forms_file_names_are_labels():
    """A form's file name with a path is cut to its base name (a form is no archive)."""
    boundary = "b0undary"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name=files; filename="../../x.txt"'
        f"\r\n\r\nsome text\r\n--{boundary}--\r\n"
    ).encode()
    found = _read(body, f"multipart/form-data; boundary={boundary}")
    assert [x.name for x in found.letters] == ["x.txt"]
