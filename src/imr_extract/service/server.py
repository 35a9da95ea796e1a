"""``imr-extract serve``: the app on uvicorn, refusing an open door.

Invariant: the service never listens without API keys on an address other machines can reach:
``auth=False`` is refused unless the host is a loopback address (``settings.is_loopback``); and
every log line it writes (uvicorn's access and error lines included) passes ``redact``
(``logs.log_config``).
"""

from __future__ import annotations

import os

from .settings import SETTINGS_ENV, Settings, is_loopback


class ServeError(Exception):
    """The service cannot start with these settings (a usage error)."""


def check(settings: Settings) -> None:
    """Raise ``ServeError`` for settings the service refuses."""
    if not settings.auth and not is_loopback(settings.host):
        raise ServeError(
            f"--no-auth is allowed only on a loopback host (127.0.0.1, ::1, localhost), not "
            f"{settings.host!r}: anyone who can reach it could use it. Create a key with "
            "`imr-extract keys create` instead"
        )
    if settings.workers < 1 or settings.letter_workers < 1:
        raise ServeError("--workers and --letter-workers must be at least 1")


def serve(settings: Settings) -> None:
    """Run the service until it is stopped (SIGINT/SIGTERM)."""
    import uvicorn

    from .logs import log_config
    from .transport import NoDelayH11Protocol

    check(settings)
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run(
        "imr_extract.service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_config=log_config(),
        http=NoDelayH11Protocol,  # TCP_NODELAY with --workers N too (uvicorn issue #3149)
        log_level="info",
        access_log=True,  # one line per request, redacted (logs.RedactingAccessFormatter)
        server_header=False,
        # X-Forwarded-For / -Proto are believed from the addresses in FORWARDED_ALLOW_IPS only
        # (uvicorn's default: 127.0.0.1,::1, a proxy on this machine): the access line then names
        # the proxy's client. Keys and rate limits never depend on the client's address.
        proxy_headers=True,
    )
