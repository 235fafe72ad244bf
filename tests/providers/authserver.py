"""A real OAuth 2.1 authorization server for tests, built from authlib's server components.

Authorization code with PKCE required (S256 only), refresh tokens that rotate (the old one dies
when used), RFC 7009 revocation; served over loopback HTTP by a small threaded WSGI app. The
"person" at /authorize is simulated: ``consent`` decides whether they approve.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from urllib.parse import parse_qsl, urlencode, urlsplit
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from authlib.oauth2.rfc6749 import AuthorizationServer, ClientMixin, grants
from authlib.oauth2.rfc6749.requests import (
    BasicOAuth2Payload,
    JsonRequest,
    OAuth2Request,
)
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge

CLIENT_ID = "echotune-test-client"


@dataclass
class Client(ClientMixin):
    client_id: str
    redirect_uris: list[str]

    def get_client_id(self): return self.client_id
    def get_default_redirect_uri(self): return self.redirect_uris[0]
    def get_allowed_scope(self, scope): return scope or ""
    def check_redirect_uri(self, redirect_uri): return redirect_uri in self.redirect_uris
    def check_client_secret(self, client_secret): return False
    def check_endpoint_auth_method(self, method, endpoint): return method == "none"
    def check_response_type(self, response_type): return response_type == "code"
    def check_grant_type(self, grant_type): return grant_type in ("authorization_code", "refresh_token")


@dataclass
class Code:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    user: str
    used: bool = False
    def get_redirect_uri(self): return self.redirect_uri
    def get_scope(self): return self.scope


@dataclass
class Token:
    client_id: str
    access_token: str
    refresh_token: str | None
    scope: str
    issued_at: float
    expires_in: int
    user: str
    revoked: bool = False
    def check_client(self, client): return client.get_client_id() == self.client_id
    def get_scope(self): return self.scope
    def get_expires_in(self): return self.expires_in
    def is_expired(self): return time.time() > self.issued_at + self.expires_in
    def is_revoked(self): return self.revoked
    def get_user(self): return self.user


@dataclass
class DB:
    clients: dict[str, Client] = field(default_factory=dict)
    codes: dict[str, Code] = field(default_factory=dict)
    tokens: list[Token] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def token_by(self, kind: str, value: str) -> Token | None:
        return next((t for t in self.tokens if getattr(t, kind) == value), None)


class WsgiOAuthRequest(OAuth2Request):
    def __init__(self, method: str, uri: str, form: dict[str, str], headers: dict[str, str]):
        super().__init__(method, uri, headers=headers)
        self._args = dict(parse_qsl(urlsplit(uri).query))
        self._form = form
        self.payload = BasicOAuth2Payload({**self._args, **self._form})

    @property
    def args(self): return self._args

    @property
    def form(self): return self._form


def build_server(db: DB, *, access_ttl: int) -> AuthorizationServer:
    class Server(AuthorizationServer):
        def query_client(self, client_id): return db.clients.get(client_id)

        def save_token(self, token, request):
            db.tokens.append(Token(client_id=request.client.get_client_id(), access_token=token["access_token"],
                                   refresh_token=token.get("refresh_token"), scope=token.get("scope", ""),
                                   issued_at=time.time(), expires_in=token["expires_in"], user="person"))

        def send_signal(self, name, *args, **kwargs): pass
        def create_oauth2_request(self, request): return request
        def create_json_request(self, request): return JsonRequest(request.method, request.uri, request.headers)
        def handle_response(self, status, body, headers): return status, body, headers

    class CodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ("none",)

        def save_authorization_code(self, code, request):
            db.codes[code] = Code(code=code, client_id=request.client.get_client_id(),
                                  redirect_uri=request.payload.redirect_uri, scope=request.payload.scope or "",
                                  code_challenge=request.payload.data.get("code_challenge"),
                                  code_challenge_method=request.payload.data.get("code_challenge_method"),
                                  user="person")

        def query_authorization_code(self, code, client):
            found = db.codes.get(code)
            if found and found.client_id == client.get_client_id() and not found.used:
                return found
            return None

        def delete_authorization_code(self, authorization_code): authorization_code.used = True
        def authenticate_user(self, authorization_code): return authorization_code.user

    class S256Only(CodeChallenge):
        SUPPORTED_CODE_CHALLENGE_METHOD = ("S256",)

    class RotatingRefresh(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS = ("none",)
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token):
            token = db.token_by("refresh_token", refresh_token)
            return token if token and not token.revoked else None

        def authenticate_user(self, refresh_token): return refresh_token.user
        def revoke_old_credential(self, refresh_token): refresh_token.revoked = True

    class Revocation(RevocationEndpoint):
        CLIENT_AUTH_METHODS = ("none",)

        def query_token(self, token_string, token_type_hint):
            return db.token_by("refresh_token", token_string) or db.token_by("access_token", token_string)

        def revoke_token(self, token, request): token.revoked = True

    server = Server()
    server.register_token_generator("default", BearerTokenGenerator(
        access_token_generator=lambda **kw: "at_" + secrets.token_urlsafe(16),
        refresh_token_generator=lambda **kw: "rt_" + secrets.token_urlsafe(16),
        expires_generator=lambda client, grant_type: access_ttl))
    server.register_grant(CodeGrant, [S256Only(required=True)])
    server.register_grant(RotatingRefresh)
    server.register_endpoint(Revocation)
    return server


class _Threaded(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args): pass


class TestAuthServer:
    """Serves /authorize, /api/token and /revoke; ``consent`` is what the simulated person answers."""

    __test__ = False

    def __init__(self, redirect_uris: list[str], *, access_ttl: int = 3600):
        self.db = DB()
        self.db.clients[CLIENT_ID] = Client(CLIENT_ID, redirect_uris)
        self.consent = True
        self.access_ttl = access_ttl
        self.refreshes = 0  # refresh-token grants received (counted before they are checked)
        # called with the refresh token of each refresh request before it is handled (outside the db lock)
        self.before_refresh: Callable[[str], None] | None = None
        self.oauth = build_server(self.db, access_ttl=access_ttl)
        self.httpd = make_server("127.0.0.1", 0, self.app, server_class=_Threaded, handler_class=_Quiet)
        self.port = self.httpd.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def app(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        uri = f"{self.base}{environ.get('PATH_INFO', '')}"
        if environ.get("QUERY_STRING"):
            uri += "?" + environ["QUERY_STRING"]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        form = dict(parse_qsl(environ["wsgi.input"].read(length).decode())) if length else {}
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["Content-Type"] = environ["CONTENT_TYPE"]
        req = WsgiOAuthRequest(method, uri, form, headers)
        path = environ.get("PATH_INFO", "")
        if path == "/api/token" and form.get("grant_type") == "refresh_token":
            with self.db.lock:
                self.refreshes += 1
            if self.before_refresh is not None:
                self.before_refresh(form.get("refresh_token", ""))
        with self.db.lock:
            if path == "/authorize":
                status, body, hdrs = self.oauth.create_authorization_response(
                    req, grant_user="person" if self.consent else None)
            elif path == "/api/token":
                status, body, hdrs = self.oauth.create_token_response(req)
            elif path == "/revoke":
                status, body, hdrs = self.oauth.create_endpoint_response("revocation", req)
            else:
                status, body, hdrs = 404, {"error": "not_found"}, []
        data = (json.dumps(body) if isinstance(body, dict) else (body or "")).encode()
        start_response(f"{status} X", [*hdrs, ("Content-Length", str(len(data)))]
                      if any(h[0].lower() == "content-type" for h in hdrs)
                      else [*hdrs, ("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]

    def authorize_url_query(self, **params: str) -> str:
        return f"{self.base}/authorize?{urlencode(params)}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
