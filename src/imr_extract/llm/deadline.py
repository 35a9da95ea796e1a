"""Deadlines for model calls: every socket operation of an attempt waits at most what is left.

httpx's timeouts are per operation: a read timeout of 5 s lets a server that sends a byte every
second hold a request for as long as its body lasts. Here an attempt runs under a deadline (a
``time.monotonic()`` instant, held in a context variable for the thread making the call), and
the network backend under the HTTP client clamps the timeout of every connect, TLS handshake,
write and read to the time left; once none is left the operation fails at once with httpcore's
own timeout error, which the SDK reports as ``APITimeoutError`` like any other timeout.

Invariant: with ``DeadlineHttpClient`` (what ``make_openai_client`` builds), no attempt made
inside ``attempt_deadline(at)`` holds the thread past ``at`` by more than one scheduling slice
(name resolution aside: ``getaddrinfo`` takes no timeout). Outside such a block the client
behaves exactly like the SDK's default one (the Batch API's uploads, for instance).
"""

from __future__ import annotations

import math
import ssl
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import httpcore2
import httpx2
import openai
from httpcore2 import ConnectTimeout, ReadTimeout, WriteTimeout

#: The instant (``time.monotonic()``) the current attempt must be over by; None: no deadline.
_ATTEMPT_ENDS: ContextVar[float | None] = ContextVar("imr_attempt_ends", default=None)

#: Bytes written per socket call, so a server that drains slowly meets the deadline too.
WRITE_CHUNK = 16 * 1024


@dataclass(frozen=True)
class Deadline:
    """An instant on the monotonic clock, and the allowance it was made from (for messages)."""

    at: float
    seconds: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """``seconds`` from now; ``0`` (or less) is no deadline, as for every limit."""
        if seconds <= 0:
            return cls(math.inf, 0.0)
        return cls(time.monotonic() + seconds, seconds)

    def left(self) -> float:
        return self.at - time.monotonic()


@contextmanager
def attempt_deadline(at: float) -> Iterator[None]:
    """Run the block's HTTP attempt under the deadline ``at`` (``math.inf``: none)."""
    token = _ATTEMPT_ENDS.set(None if math.isinf(at) else at)
    try:
        yield
    finally:
        _ATTEMPT_ENDS.reset(token)


def _clamp(timeout: float | None, timed_out: type[Exception]) -> float | None:
    """``timeout`` shortened to the time the attempt has left; raises once none is left."""
    at = _ATTEMPT_ENDS.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise timed_out("the attempt's deadline (--timeout) passed")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore2.NetworkStream):
    """A network stream whose every operation ends by the attempt's deadline."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout, ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        view = memoryview(buffer)
        for start in range(0, len(view), WRITE_CHUNK):
            chunk = bytes(view[start : start + WRITE_CHUNK])
            self._inner.write(chunk, _clamp(timeout, WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore2.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout, ConnectTimeout))
        return DeadlineStream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class DeadlineBackend(httpcore2.NetworkBackend):
    """httpcore's network backend, its connections made and used under the attempt's deadline."""

    def __init__(self, inner: httpcore2.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._inner.connect_tcp(
            host, port, _clamp(timeout, ConnectTimeout), local_address, socket_options
        )
        return DeadlineStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        stream = self._inner.connect_unix_socket(
            path, _clamp(timeout, ConnectTimeout), socket_options
        )
        return DeadlineStream(stream)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx2.HTTPTransport):
    """httpx's own transport (proxies, TLS, pooling as usual) on a ``DeadlineBackend``.

    ``handle_request`` is httpx's, untouched (recorders that patch it keep working); only the
    connection pool's network backend is wrapped. httpx offers no public hook for it, so the
    pool's attribute is replaced, and a test fails if a new httpx moves it.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        pool: Any = self._pool
        if not isinstance(getattr(pool, "_network_backend", None), httpcore2.NetworkBackend):
            raise RuntimeError("this httpx has no pool network backend to bound requests with")
        pool._network_backend = DeadlineBackend(pool._network_backend)


class DeadlineHttpClient(openai.DefaultHttpxClient):
    """The SDK's default HTTP client (its timeouts, limits, redirects, proxies from the
    environment) with a ``DeadlineTransport`` for direct and proxied connections alike."""

    def _init_transport(  # type: ignore[override]
        self, transport: httpx2.BaseTransport | None = None, **kwargs: Any
    ) -> httpx2.BaseTransport:
        return transport if transport is not None else DeadlineTransport(**kwargs)

    def _init_proxy_transport(  # type: ignore[override]
        self, proxy: httpx2.Proxy, **kwargs: Any
    ) -> httpx2.BaseTransport:
        return DeadlineTransport(proxy=proxy, **kwargs)

    def __del__(self) -> None:
        # Like the SDK's own client: a client made for one call closes its pool when dropped.
        try:
            if not self.is_closed:
                self.close()
        except Exception:  # interpreter shutdown: nothing to report to
            pass
