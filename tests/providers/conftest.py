"""Provider test fixtures: a Prism mock of Spotify's own OpenAPI spec, and small loopback HTTP servers."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, free_port, missing, shared_path, stop_process

PRISM_VERSION = "5.14.2"


def _prism_exe() -> str | None:
    local = REPO / ".node" / "node_modules" / ".bin" / "prism"
    return str(local) if local.exists() else shutil.which("prism")


@pytest.fixture(scope="session")
def spotify_spec() -> Path:
    return shared_path("specs", "spotify", "fixed-spotify-open-api.yml")


@pytest.fixture(scope="session")
def prism(spotify_spec: Path):
    """``prism mock`` serving Spotify's spec on a free loopback port; every request is validated (422 if not)."""
    exe = _prism_exe()
    if exe is None:
        missing(f"@stoplight/prism-cli@{PRISM_VERSION} is not installed in .node/", "make node")
    port = free_port()
    proc = subprocess.Popen([exe, "mock", "-h", "127.0.0.1", "-p", str(port), str(spotify_spec)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/me", headers={"Authorization": "Bearer t"}, timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("prism did not start within 60 s")
            time.sleep(0.25)
        yield base
    finally:
        stop_process(proc)


Handler = Callable[[str, str, dict, bytes], tuple[int, dict, object]]


class LoopbackAPI:
    """A tiny scripted HTTP API: ``route(method, path) -> (status, headers, json body)``; records requests."""

    def __init__(self, handler: Handler):
        self.requests: list[tuple[str, str, object]] = []
        api = self

        class H(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw
                api.requests.append((self.command, self.path, body))
                status, headers, payload = handler(self.command, self.path, dict(self.headers), raw)
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _any

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def loopback_api():
    servers: list[LoopbackAPI] = []

    def start(handler: Handler) -> LoopbackAPI:
        servers.append(LoopbackAPI(handler))
        return servers[-1]

    yield start
    for s in servers:
        s.close()
