"""``imr-extract serve``: the app on uvicorn, refusing an open door.

Invariant: the service never listens without API keys on an address other machines can reach:
``auth=False`` is refused unless the host is a loopback address (``settings.is_loopback``).
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

    check(settings)
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run(
        "imr_extract.service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=False,
    )
