"""A small JWKS-serving OAuth issuer on 127.0.0.1, for the tests and tools/bench_http.py.

A thread serving RFC 8414 metadata, a JWKS (one RSA and one EC P-256 key, generated at start) and an RFC 7662
introspection endpoint; it mints access tokens for any subject with its own keys. ``issuer.down = True`` makes it
answer 503 everywhere (an outage), and ``issuer.rotate()`` replaces the RSA signing key with a new one under a new
``kid``. It trusts nobody and is trusted only by a server configured with its URL: a test and benchmark device,
never a deployment's issuer (that is ``echotune-mcp auth-server``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from joserfc import jws, jwt
from joserfc.jwk import ECKey, RSAKey

INTROSPECTION_CLIENT = ("echotune-rs", "rs-secret")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Issuer:
    """A JWKS-serving OAuth issuer for tests and benchmarks: mints tokens, serves its keys, can go down and rotate
    keys."""

    def __init__(self) -> None:
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "use": "sig", "alg": "RS256"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "use": "sig", "alg": "ES256"})
        self.retired: list[RSAKey] = []
        self.opaque: dict[str, dict[str, Any]] = {}
        self.audience: str | None = None  # the resource URL tokens name by default (set by whoever starts the server)
        self.down = False
        self.fetches: list[str] = []  # paths fetched, in order
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())  # the OS picks a free port
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def start(self) -> Issuer:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # shutdown() waits for serve_forever, which only a started issuer runs
            self._httpd.shutdown()
            self._thread.join(timeout=5)
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
