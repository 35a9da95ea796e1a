"""Prometheus metrics of one service process, in the text exposition format, kept by hand.

Invariant: labels come from fixed sets only (a route's template, never its path; a method; a
status; an error code from the error classes or ``problems.SERVICE_PROBLEMS``), so the number
of series is bounded whatever callers send; nothing here holds a letter's name or a key.
"""

from __future__ import annotations

import threading
from collections import Counter

#: Upper bounds (seconds) of the request-latency histogram's buckets.
BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


class Metrics:
    """Counters and a histogram, shared by the threads of one process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[tuple[str, str, str]] = Counter()  # route, method, status
        self.buckets: dict[str, list[int]] = {}  # route -> count per bucket (+Inf last)
        self.seconds: dict[str, float] = {}
        self.letters: Counter[str] = Counter()  # ok | error | reused
        self.errors: Counter[str] = Counter()  # by code, every problem answered
        self.tokens: Counter[str] = Counter()  # prompt | completion

    def request(self, route: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(route, method, str(status))] += 1
            counts = self.buckets.setdefault(route, [0] * (len(BUCKETS) + 1))
            for i, bound in enumerate(BUCKETS):
                if seconds <= bound:
                    counts[i] += 1
            counts[-1] += 1
            self.seconds[route] = self.seconds.get(route, 0.0) + seconds

    def letter(self, outcome: str, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self.letters[outcome] += 1
            self.tokens["prompt"] += prompt_tokens
            self.tokens["completion"] += completion_tokens

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def render(self, waiting: int = 0) -> str:
        out: list[str] = []

        def family(name: str, kind: str, text: str) -> None:
            out.append(f"# HELP {name} {text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("imr_requests_total", "counter", "HTTP requests answered.")
            for (route, method, status), n in sorted(self.requests.items()):
                out.append(
                    f"imr_requests_total{_labels(route=route, method=method, status=status)} {n}"
                )
            family("imr_request_duration_seconds", "histogram", "Time to answer a request.")
            for route, counts in sorted(self.buckets.items()):
                for bound, n in zip((*BUCKETS, None), counts, strict=True):
                    le = "+Inf" if bound is None else f"{bound:g}"
                    out.append(
                        f"imr_request_duration_seconds_bucket{_labels(route=route, le=le)} {n}"
                    )
                out.append(
                    f"imr_request_duration_seconds_sum{_labels(route=route)} "
                    f"{self.seconds[route]:.6f}"
                )
                out.append(f"imr_request_duration_seconds_count{_labels(route=route)} {counts[-1]}")
            family("imr_letters_total", "counter", "Letters answered, by outcome.")
            for outcome in ("ok", "error", "reused"):
                out.append(f"imr_letters_total{_labels(outcome=outcome)} {self.letters[outcome]}")
            family("imr_errors_total", "counter", "Problems answered, by error code.")
            for code, n in sorted(self.errors.items()):
                out.append(f"imr_errors_total{_labels(code=code)} {n}")
            family("imr_model_tokens_total", "counter", "Model tokens spent, by kind.")
            for kind in ("prompt", "completion"):
                out.append(f"imr_model_tokens_total{_labels(kind=kind)} {self.tokens[kind]}")
            family("imr_letters_in_hand", "gauge", "Letters being read or waiting for a worker.")
            out.append(f"imr_letters_in_hand {waiting}")
        return "\n".join(out) + "\n"
