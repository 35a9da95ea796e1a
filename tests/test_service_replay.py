"""Recorded model calls replayed through the real service (``imr-extract serve`` on uvicorn).

vcrpy cannot reach into the server's process, so the recordings are served over HTTP by
``replay_endpoint`` (an OpenAI-compatible endpoint on 127.0.0.1 answering a request only with the
recorded answer to the same method, path and JSON body, once). The service is pointed at it the
way an operator points it at a model (``IMR_LLM_MODEL``, ``OPENAI_BASE_URL``, ``OPENAI_API_KEY``),
and each letter's answer must be the record the in-process replay of the same cassette (vcrpy,
``llm_cassettes.recorded``) gives: same prompt sent, same answer read, same verification. A
request the recordings do not hold (another prompt, schema, model or option) is answered 400 and
kept by the endpoint, and the tests assert there was none and that every recording was played.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from conftest import letter_path, load_gold
from imr_extract.hybrid import HybridExtractor
from imr_extract.ingest import read_path
from imr_extract.llm import LLMExtractor
from imr_extract.schema import DATA_FIELDS, LetterRecord
from llm_cassettes import RECORD_MODEL, recorded
from replay_endpoint import ReplayEndpoint, replaying
from service_server import Server, serving
from test_gold import diff
from test_llm_novel import CASES, NO_REASK, OUTCOMES
from test_llm_replay import FAKE_KEY, FULL_LETTERS, cassette_name, meta_for, replay_config

GOLD = Path(__file__).parent / "data" / "gold"
#: (letter, cassette): every full extraction recorded with the service's default model options
#: (max_tokens 2048, one re-ask, the prompt-only mode a local endpoint gets).
LLM_CASES: list[tuple[Path, str]] = [(letter_path(n), cassette_name(n)) for n in FULL_LETTERS] + [
    (c.letter, c.name) for c in CASES if OUTCOMES[c.name] is LetterRecord and c.name not in NO_REASK
]
#: A re-laid letter the rules do not read whole (the hybrid sends it to the model); its recorded
#: answer was not valid JSON and was recorded without a re-ask.
HYBRID_CASE = next(c for c in CASES if c.name in NO_REASK)
#: A bundled letter the rules read whole: the hybrid asks the model nothing.
RULES_ROUTED = "CM16-0231706.pdf"


def _env(endpoint: ReplayEndpoint, tmp: Path, **more: str) -> dict[str, str]:
    return {
        "IMR_LLM_MODEL": RECORD_MODEL,
        "OPENAI_BASE_URL": endpoint.base_url,
        "OPENAI_API_KEY": FAKE_KEY,
        "IMR_CACHE_DIR": str(tmp / "llm-cache"),  # a fresh cache: every letter is asked
        **more,
    }


def _post(server: Server, path: Path, backend: str) -> httpx.Response:
    kind = "application/pdf" if path.suffix == ".pdf" else "text/plain"
    with server.client() as c:
        return c.post(
            "/v1/extract",
            content=path.read_bytes(),
            params={"backend": backend, "name": path.name},
            headers={"Content-Type": kind},
        )


def _as_served(record: LetterRecord) -> dict:
    """An in-process record as the service answers it (no path of the server)."""
    got = record.model_dump(mode="json")
    got["source"]["path"] = None
    return got


def _assert_all_played(endpoint: ReplayEndpoint) -> None:
    assert endpoint.problems() == [], "the service sent requests no recording holds"
    assert endpoint.unplayed() == [], "recorded calls the service did not make"
    assert set(endpoint.authorizations) == {f"Bearer {FAKE_KEY}"}


def test_backend_llm_through_the_service_is_the_in_process_replay(tmp_path: Path, request):
    names = [name for _, name in LLM_CASES]
    with (
        replaying(names) as endpoint,
        serving(
            tmp_path, "--no-auth", "--letter-workers", "2", env=_env(endpoint, tmp_path)
        ) as srv,
        ThreadPoolExecutor(4) as pool,
    ):
        answers = list(pool.map(lambda case: _post(srv, case[0], "llm"), LLM_CASES))
        with srv.client() as c:  # kept in the store under the model's key, answered from it
            stored = [
                c.get(
                    f"/v1/letters/{hashlib.sha256(path.read_bytes()).hexdigest()}",
                    params={"backend": "llm"},
                )
                for path, _ in LLM_CASES
            ]
            metrics = c.get("/metrics").text
    for (_, name), r in zip(LLM_CASES, answers, strict=True):
        assert r.status_code == 200, (name, r.text)
        assert endpoint.played(name) >= 1, name
    _assert_all_played(endpoint)

    for i, ((path, name), r) in enumerate(zip(LLM_CASES, answers, strict=True)):
        doc = read_path(path)
        llm = LLMExtractor(replay_config(tmp_path / "in-process"))
        with recorded(request, name, meta_for(llm, doc.sha256)):
            local = llm(doc)
        served = r.json()
        assert served["extractor"]["backend"] == "llm" and served["extractor"]["attempts"] >= 1
        assert served == _as_served(local), name
        assert stored[i].status_code == 200 and stored[i].json() == served, name
        assert served["source"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    # /metrics counts the tokens the records say were spent (each letter extracted once here).
    for kind in ("prompt", "completion"):
        spent = sum(r.json()["extractor"]["usage"][f"{kind}_tokens"] for r in answers)
        assert spent > 0
        assert f'imr_model_tokens_total{{kind="{kind}"}} {spent}' in metrics, metrics


def test_backend_hybrid_through_the_service_is_the_in_process_replay(tmp_path: Path, request):
    with replaying([HYBRID_CASE.name]) as endpoint:
        env = _env(endpoint, tmp_path, IMR_LLM_MAX_REASKS="0")  # as it was recorded
        with serving(tmp_path, "--no-auth", "--letter-workers", "1", env=env) as srv:
            routed = _post(srv, HYBRID_CASE.letter, "hybrid")
            whole = _post(srv, letter_path(RULES_ROUTED), "hybrid")
    assert routed.status_code == 200, routed.text
    assert whole.status_code == 200, whole.text
    _assert_all_played(endpoint)
    assert endpoint.played(HYBRID_CASE.name) == 1

    # The letter sent to the model: the model's invalid answer recorded, the rules' values stand.
    doc = read_path(HYBRID_CASE.letter)
    llm = LLMExtractor(replay_config(tmp_path / "in-process", max_reasks=0))
    with recorded(request, HYBRID_CASE.name, meta_for(llm, doc.sha256)):
        local = HybridExtractor(llm)(doc)
    served = routed.json()
    assert served == _as_served(local)
    assert served["extractor"]["routed"] == "letter"
    assert "llm-invalid" in served["extractor"]["model_error"]
    gold = load_gold(HYBRID_CASE.gold)
    assert diff(gold, {k: v for k, v in served.items() if k in DATA_FIELDS}) == []

    # The letter the rules read whole: no model call, the gold record.
    doc = read_path(letter_path(RULES_ROUTED))
    local = HybridExtractor(LLMExtractor(replay_config(tmp_path / "in-process")))(doc)
    served = whole.json()
    assert served == _as_served(local)
    assert served["extractor"]["routed"] == "none" and served["extractor"]["attempts"] == 0
    assert diff(load_gold(GOLD / f"{Path(RULES_ROUTED).stem}.json"), served) == []


def test_a_request_the_recordings_do_not_hold_fails_loudly(tmp_path: Path):
    """The service configured otherwise than the recordings (here another model name, so another
    request body) gets no recorded answer: the letter is a 502 problem and the endpoint keeps
    the request, saying where it differs."""
    path, name = LLM_CASES[0]
    with replaying([name]) as endpoint:
        env = _env(endpoint, tmp_path, IMR_LLM_MODEL="another-model")
        with serving(tmp_path, "--no-auth", "--letter-workers", "1", env=env) as srv:
            r = _post(srv, path, "llm")
    assert r.status_code == 502, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"].startswith("llm-")
    assert len(endpoint.unmatched) == 1
    assert endpoint.problems() == [f"POST /v1/chat/completions: differs from {name}#0 in ['model']"]
    assert endpoint.unplayed() == [f"{name}#0"]


def test_the_endpoint_answers_a_recorded_request_once_and_nothing_else():
    import yaml

    from llm_cassettes import cassette_path

    name = LLM_CASES[0][1]
    recorded_request = yaml.safe_load(cassette_path(name).read_text())["interactions"][0]["request"]
    body = recorded_request["body"]
    with replaying([name]) as endpoint, httpx.Client(base_url=endpoint.base_url) as c:
        other = body.replace("verbatim", "verbatim, please", 1)
        assert other != body
        refused = c.post("/chat/completions", content=other)
        assert refused.status_code == 400 and "REPLAY ENDPOINT" in refused.text
        assert "messages" in endpoint.problems()[0]
        ok = c.post("/chat/completions", content=body)
        assert ok.status_code == 200 and ok.json()["object"] == "chat.completion"
        assert endpoint.unplayed() == []
        again = c.post("/chat/completions", content=body)  # a recording plays once
        assert again.status_code == 400
        assert len(endpoint.unmatched) == 2
