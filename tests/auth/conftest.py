"""Fixtures for the authorization tests: a small JWKS-serving issuer of the tests' own, the real HTTP server in a
subprocess with authorization configured against it, and an MCP client that sends a bearer token.

The issuer is a thread on 127.0.0.1 serving RFC 8414 metadata, a JWKS (one RSA and one EC P-256 key) and an
RFC 7662 introspection endpoint; ``issuer.down = True`` makes it answer 503 everywhere (an outage), and
``issuer.rotate()`` replaces the RSA signing key with a new one under a new ``kid``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

from tests.conftest import free_port, stop_process

INTROSPECTION_CLIENT = ("echotune-rs", "rs-secret")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A JWKS-serving OAuth issuer for tests: mints tokens, serves its keys, can go down and rotate keys."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.audience: str | None = None  # set by http_server to the served resource URL
        self.down = False
        self.fetches: list[str] = []  # paths fetched, in order
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"})
        self.retired: list[RSAKey] = []
        self.opaque: dict[str, dict[str, Any]] = {}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> Issuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # -- keys and tokens ----------------------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.rsa.as_dict(private=False), self.ec.as_dict(private=False)]}

    def rotate(self) -> str:
        """A new RSA signing key under a new kid; the old one leaves the JWKS. Returns the new kid."""
        self.retired.append(self.rsa)
        kid = f"rsa-{len(self.retired) + 1}"
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": kid, "use": "sig", "alg": "RS256"})
        return kid

    def claims(self, sub: str, scopes: Any, amr: Any = (), aud: Any = None, **claims: Any) -> dict[str, Any]:
        now = int(time.time())
        base = {"iss": self.url, "sub": sub, "aud": aud if aud is not None else self.audience,
                "scope": " ".join(scopes), "amr": list(amr), "client_id": "test-client", "iat": now,
                "exp": now + 600, "jti": secrets.token_hex(8)}
        base.update(claims)
        return {k: v for k, v in base.items() if v is not None}

    def token(self, sub: str, scopes: Any = ("echotune:read",), amr: Any = (), aud: Any = None, alg: str = "RS256",
              *, typ: str | None = "at+jwt", key: Any = None, kid: str | None = None, **claims: Any) -> str:
        """A signed access token; ``key``/``kid`` override the issuer's own key (an unknown signer)."""
        signer = key or (self.rsa if alg == "RS256" else self.ec)
        header = {"alg": alg, "kid": kid or signer.kid}
        payload = self.claims(sub, scopes, amr, aud, **claims)
        if typ is None:  # jwt.encode would add typ JWT; sign the bare JWS instead
            return jws.serialize_compact(header, json.dumps(payload).encode(), signer, algorithms=[alg])
        header["typ"] = typ
        return jwt.encode(header, payload, signer, algorithms=[alg])

    def unsigned(self, sub: str, scopes: Any = ("echotune:read",)) -> str:
        """``alg: none``: no signature at all."""
        header = b64url(json.dumps({"alg": "none", "typ": "at+jwt"}).encode())
        return f"{header}.{b64url(json.dumps(self.claims(sub, scopes)).encode())}."

    def hs256_with_public_key(self, sub: str, scopes: Any = ("echotune:read",)) -> str:
        """The classic confusion attack: HMAC-SHA256 keyed with the issuer's public RSA key (PEM and JWK forms
        tried by verifiers alike; the PEM one here)."""
        header = b64url(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": self.rsa.kid}).encode())
        payload = b64url(json.dumps(self.claims(sub, scopes)).encode())
        secret = self.rsa.as_pem(private=False)
        sig = hmac.new(secret, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(sig)}"

    def opaque_token(self, sub: str, scopes: Any = ("echotune:read",), active: bool = True, **claims: Any) -> str:
        token = secrets.token_urlsafe(24)
        self.opaque[token] = {"active": active, **self.claims(sub, scopes, **claims)}
        return token

    # -- HTTP -----------------------------------------------------------------------------------------------
    def _handler(self) -> type[BaseHTTPRequestHandler]:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def _json(self, status: int, body: Any) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_GET(self) -> None:
                issuer.fetches.append(self.path)
                if issuer.down:
                    return self._json(503, {"error": "down"})
                if self.path == "/.well-known/oauth-authorization-server":
                    return self._json(200, {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks",
                                            "introspection_endpoint": f"{issuer.url}/introspect",
                                            "authorization_endpoint": f"{issuer.url}/authorize",
                                            "token_endpoint": f"{issuer.url}/token"})
                if self.path == "/jwks":
                    return self._json(200, issuer.jwks())
                return self._json(404, {"error": "not found"})

            def do_POST(self) -> None:
                issuer.fetches.append(self.path)
                if issuer.down:
                    return self._json(503, {"error": "down"})
                length = int(self.headers.get("content-length") or 0)
                form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                expected = "Basic " + base64.b64encode(":".join(INTROSPECTION_CLIENT).encode()).decode()
                if self.path != "/introspect" or self.headers.get("authorization") != expected:
                    return self._json(401, {"error": "invalid_client"})
                return self._json(200, issuer.opaque.get(form.get("token", ""), {"active": False}))

        return Handler


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
