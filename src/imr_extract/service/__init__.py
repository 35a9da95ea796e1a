"""The extraction service: the library over HTTP (``imr-extract serve``).

One code path with the CLI: the service builds its extractors and result keys with
``backends.build_backend``, reads every letter in the runner's isolated workers and keeps every
result in the same run store. ``app`` holds the routes, ``engine`` the workers and the store,
``body`` the capped reading of a request, ``problems`` the error bodies (RFC 9457), ``keys`` the
callers' API keys, ``settings`` what ``serve`` was given, ``server`` the uvicorn start, ``jobs``
the jobs (many letters, in the run store, extracted by each process's job worker) and
``archive`` a job's body read as letters (hostile archives refused).
Importing this package needs the ``service`` extra (FastAPI, uvicorn).
"""

from __future__ import annotations

from .settings import Settings

__all__ = ["Settings"]
