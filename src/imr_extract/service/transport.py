"""uvicorn's HTTP/1.1 protocol (h11) with Nagle's algorithm off on every connection.

Invariant: every TCP connection the service accepts has ``TCP_NODELAY`` set, whatever the number
of service processes. uvicorn's ``--workers N`` path binds the listening socket itself with
``proto`` 0, the accepted sockets inherit it, and asyncio sets ``TCP_NODELAY`` only on sockets
that report ``IPPROTO_TCP``: with Nagle on, each answer on a kept-alive connection past the first
waited for the client's delayed ACK, about 40 ms on Linux (uvicorn issue #3149;
``bench/bench_service.py`` showed every request of ``--workers 2`` at 45 ms or more).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.h11_impl import H11Protocol


class NoDelayH11Protocol(H11Protocol):
    """``H11Protocol`` that turns Nagle's algorithm off before the first byte is answered."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)
