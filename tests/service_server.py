"""A real ``imr-extract serve`` (uvicorn) on 127.0.0.1 for the service tests: started as a
subprocess on a free port, waited for on ``/healthz``, stopped (SIGTERM, then SIGKILL) after."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

CLI = str(Path(sys.executable).parent / "imr-extract")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], capture_output=True, text=True, timeout=60, env=env or clean_env()
    )


def clean_env() -> dict[str, str]:
    """This environment without a model or a store of the caller's."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("IMR_", "OPENAI_"))}


@dataclass
class Server:
    url: str
    store: Path | str
    log: Path
    process: subprocess.Popen[bytes]
    key: str = ""

    def client(self, key: str | None = None, **kw: object) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def serving(
    tmp: Path,
    *args: str,
    wait_s: float = 30.0,
    env: dict[str, str] | None = None,
    store: str | None = None,
) -> Iterator[Server]:
    """``imr-extract serve --store tmp/service.sqlite ARGS`` on a free port, until the block ends
    (``env``: added to an environment without a model or store of the caller's; ``store``: a
    store of the caller's, e.g. a PostgreSQL URL)."""
    port = free_port()
    where: Path | str = store or tmp / "service.sqlite"
    log = tmp / "server.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [CLI, "serve", "--port", str(port), "--store", str(where), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=clean_env() | (env or {}),
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited ({process.returncode}):\n{log.read_text()}")
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield Server(url, where, log, process)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(5)
