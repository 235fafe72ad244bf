"""Fixtures for the authorization tests: a small JWKS-serving issuer of the tests' own, the real HTTP server in a
subprocess with authorization configured against it, and an MCP client that sends a bearer token.

The issuer (tools/jwks_issuer.py, shared with tools/bench_http.py) is a thread on 127.0.0.1 serving RFC 8414
metadata, a JWKS (one RSA and one EC P-256 key) and an RFC 7662 introspection endpoint; ``issuer.down = True``
makes it answer 503 everywhere (an outage), and ``issuer.rotate()`` replaces the RSA signing key with a new one
under a new ``kid``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, stop_process
from tools.jwks_issuer import INTROSPECTION_CLIENT, Issuer


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    iss = Issuer().start()
    try:
        yield iss
    finally:
        iss.stop()


@dataclass
class RunningServer:
    url: str  # base URL, http://127.0.0.1:PORT
    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def mcp(self) -> str:
        return f"{self.url}/mcp"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def _wait_healthy(server: RunningServer, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited with {server.proc.returncode}:\n{server.log_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"the server did not answer /healthz in {timeout} s:\n{server.log_text()[-3000:]}")


def start_server(tmp: Path, issuer: Issuer | None, env: dict[str, str] | None = None) -> RunningServer:
    """``echotune-mcp serve --transport http`` in a subprocess on a free port, its own data dir, and (with an
    issuer) authorization configured against it; no ECHOTUNE_* setting of the developer leaks in."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    full = {k: v for k, v in os.environ.items() if not k.startswith("ECHOTUNE_") and k != "OTEL_EXPORTER_OTLP_ENDPOINT"}
    full.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "400", "ECHOTUNE_DATA_DIR": str(tmp / "data"),
                 "ECHOTUNE_CONFIG": str(tmp / "absent.toml"), "ECHOTUNE_TOOLSETS": "jobs,artifacts,compose"})
    if issuer is not None:
        full.update({"ECHOTUNE_AUTH_ISSUER": issuer.url, "ECHOTUNE_AUTH_REFETCH_INTERVAL_S": "0.5",
                     "ECHOTUNE_AUTH_INTROSPECTION_URL": f"{issuer.url}/introspect",
                     "ECHOTUNE_AUTH_CLIENT_ID": INTROSPECTION_CLIENT[0],
                     "ECHOTUNE_AUTH_CLIENT_SECRET": INTROSPECTION_CLIENT[1]})
        issuer.audience = f"http://127.0.0.1:{port}/mcp"
    full.update(env or {})
    log = tmp / f"server-{port}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "echotune_mcp", "serve", "--transport", "http", "--port",
                                 str(port)], env=full, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT)
    server = RunningServer(url=f"http://127.0.0.1:{port}", proc=proc, log=log)
    try:
        _wait_healthy(server)
    except BaseException:
        stop_process(proc)
        raise
    return server


@pytest.fixture
def http_server(tmp_path: Path, issuer: Issuer) -> Iterator[Any]:
    """Factory: ``http_server(env)`` starts a server with auth against ``issuer``; stopped after the test."""
    started: list[RunningServer] = []
    audience = issuer.audience  # tokens default to the newest server's URL; the module's own comes back after

    def factory(env: dict[str, str] | None = None, *, auth: bool = True) -> RunningServer:
        server = start_server(tmp_path / f"srv{len(started)}", issuer if auth else None, env)
        started.append(server)
        return server

    try:
        yield factory
    finally:
        for server in started:
            stop_process(server.proc)
        issuer.audience = audience


@asynccontextmanager
async def mcp_http_client(url: str, token: str | None) -> AsyncIterator[Any]:
    """The SDK's MCP client over streamable HTTP, sending ``Authorization: Bearer <token>`` on every request."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(30.0)) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client
