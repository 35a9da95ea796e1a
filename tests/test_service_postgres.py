"""Two replicas of the service on one PostgreSQL store: two real ``imr-extract serve`` processes
(uvicorn on 127.0.0.1) share the run store. The same letters sent to both at once are answered
with their gold records by both and stored once; a key made with ``keys create --store URL``
opens both; what one replica extracted, the other serves (its record and its review page)."""

from __future__ import annotations

import contextlib
import hashlib
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import pg
from conftest import letter_path
from service_server import Server, cli, serving
from test_gold import diff
from test_service import LETTERS, _gold
from test_store_postgres import rows

pg_server, pg_url = pg.pg_server, pg.pg_url  # the throwaway server's fixtures


def _letters(server: Server, key: str) -> dict[str, int]:
    """The replica's ``imr_letters_total`` by outcome (ok: extracted here; reused: from the store)."""
    with server.client(key) as client:
        text = client.get("/metrics").text
    found = re.findall(r'^imr_letters_total\{outcome="(\w+)"\} (\d+)', text, re.M)
    return {outcome: int(n) for outcome, n in found}


def _post(server: Server, key: str, name: str) -> httpx.Response:
    data = letter_path(name).read_bytes()
    kind = "application/pdf" if name.endswith(".pdf") else "text/plain"
    with server.client(key) as client:
        return client.post(
            "/v1/extract", content=data, params={"name": name}, headers={"Content-Type": kind}
        )


@pytest.fixture
def replicas(pg_url: str, tmp_path: Path) -> Any:
    made = cli("keys", "create", "--name", "fleet", "--store", pg_url)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    with contextlib.ExitStack() as stack:
        servers = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            servers.append(
                stack.enter_context(serving(tmp_path / name, "--letter-workers", "1", store=pg_url))
            )
        yield pg_url, key, servers


def test_two_replicas_share_one_postgres_store(replicas: Any):
    url, key, (a, b) = replicas
    for server in (a, b):  # the key made on the command line opens both; none opens neither
        assert httpx.get(server.url + "/readyz").json() == {"status": "ready"}
        with server.client() as client:
            assert client.get(f"/v1/letters/{'0' * 64}").status_code == 401
        with server.client(key) as client:
            assert client.get(f"/v1/letters/{'0' * 64}").status_code == 404

    # every letter to both replicas at once
    jobs = [(server, name) for name in LETTERS for server in (a, b)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        answers = list(pool.map(lambda job: _post(job[0], key, job[1]), jobs))
    for (_, name), r in zip(jobs, answers, strict=True):
        assert r.status_code == 200, r.text
        problems = diff(_gold(name), r.json())
        assert not problems, "\n".join(problems)

    # extracted once each (the other replica waited on its claim, then served it from the
    # store) and stored once each, whichever replica extracted it
    counts = [_letters(server, key) for server in (a, b)]
    assert sum(c.get("ok", 0) for c in counts) == len(LETTERS), counts
    assert sum(c.get("reused", 0) for c in counts) == len(LETTERS), counts
    shas = [hashlib.sha256(letter_path(n).read_bytes()).hexdigest() for n in LETTERS]
    stored = rows(url, "SELECT sha256, status FROM letters")
    assert sorted(stored) == sorted((sha, "ok") for sha in shas)
    items = rows(url, "SELECT count(*), count(DISTINCT letter_key) FROM items")[0]
    expected = sum(len(_gold(n)["items"]) for n in LETTERS)
    assert items == (expected, len(LETTERS))
    assert len(rows(url, "SELECT id FROM runs")) == 2  # one run per replica
    kept = rows(url, "SELECT sha256 FROM letter_files")
    assert sorted(s for (s,) in kept) == sorted(shas)

    # what A extracted, B serves: the record and the review page
    name = LETTERS[0]
    sha = shas[0]
    with a.client(key) as client:
        from_a = client.get(f"/v1/letters/{sha}")
    with b.client(key) as client:
        from_b = client.get(f"/v1/letters/{sha}")
        review = client.get(f"/v1/letters/{sha}/review")
    assert from_a.status_code == from_b.status_code == 200, from_b.text
    assert from_b.json() == from_a.json()
    assert not diff(_gold(name), from_b.json())
    assert review.status_code == 200 and "<html" in review.text.lower()

    # a revoked key is refused by both at once (one table, no cache)
    key_id = rows(url, "SELECT id FROM api_keys")[0][0]
    revoked = cli("keys", "revoke", key_id, "--store", url)
    assert revoked.returncode == 0, revoked.stderr
    for server in (a, b):
        with server.client(key) as client:
            assert client.get(f"/v1/letters/{sha}").status_code == 401
