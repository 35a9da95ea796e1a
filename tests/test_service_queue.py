"""The service's bounded model queue, against a real uvicorn and a slow fake model endpoint: a
letter past a full queue is refused at once (503 ``busy`` with ``Retry-After``), while the
letter in it goes on; the same queue class makes a batch wait instead (``test_runs``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from conftest import document
from fake_openai import serve
from service_server import serving
from test_runs import Gauge
from test_service import assert_problem


def test_a_letter_past_a_full_model_queue_is_503_busy_and_the_one_in_it_is_answered(
    tmp_path: Path,
):
    text = document("CM16-0231706.pdf").text.replace("Date of Injury:", "Injury Dt:", 1)
    gauge = Gauge(2.0)
    with serve([], respond=gauge) as fake:
        env = {
            "IMR_LLM_MODEL": "fake-model",
            "OPENAI_BASE_URL": fake.base_url,
            "OPENAI_API_KEY": "imr-test-placeholder-not-a-key",
        }
        args = ("--no-auth", "--letter-workers", "2", "--max-queue", "0")
        with serving(tmp_path, *args, "--model-concurrency", "1", env=env) as srv:
            first: list[httpx.Response] = []

            def post(body: str, into: list[httpx.Response]) -> None:
                with srv.client() as c:
                    into.append(
                        c.post(
                            "/v1/extract",
                            content=body.encode(),
                            params={"backend": "hybrid"},
                            headers={"Content-Type": "text/plain"},
                        )
                    )

            busy = threading.Thread(target=post, args=(text, first))
            busy.start()
            deadline = time.monotonic() + 30
            while not fake.requests and time.monotonic() < deadline:
                time.sleep(0.01)
            assert fake.requests, "the first letter reached the model"
            second: list[httpx.Response] = []
            started = time.monotonic()
            post(text + "\nanother letter\n", second)
            refused = second[0]
            assert time.monotonic() - started < 1.5  # at once, not after the first
            problem = assert_problem(refused, 503, "busy")
            assert int(refused.headers["Retry-After"]) > 0
            assert "in hand" in problem["detail"]
            busy.join(60)
            assert first[0].status_code == 200, first[0].text
            assert first[0].json()["extractor"]["routed"] == "sections"
            # the queue is free again: the refused letter is answered now
            again: list[httpx.Response] = []
            post(text + "\nanother letter\n", again)
            assert again[0].status_code == 200, again[0].text
    assert len(fake.requests) == 2 and gauge.most == 1
