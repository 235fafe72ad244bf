"""The bundled authorization server as a Starlette app, on authlib's framework-agnostic OAuth 2 server.

Authorization code + PKCE S256 only; clients by Client ID Metadata Document (or RFC 7591 when enabled);
RFC 8707 ``resource`` becomes the access token's ``aud``; RFC 9068 JWT access tokens signed by keys.py;
refresh tokens rotate on every use and a reused one revokes its family; RFC 8414 metadata; RFC 9207 ``iss``.
authlib and SQLite are synchronous, so each OAuth step runs in a worker thread, never on the event loop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from authlib.common.urls import add_params_to_uri
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidClientError, InvalidGrantError, InvalidRequestError, OAuth2Error
from authlib.oauth2.rfc7636 import CodeChallenge
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from . import keys, templates
from .clients import Client, ClientRefused, client_from_metadata, load_client
from .settings import SCOPES, AuthServerSettings, check_resource_uri
from .store import Store, digest
from .users import verify_password, verify_totp

log = logging.getLogger("echotune_mcp.auth.server")

MAX_FORM_FIELDS = 30
MAX_FORM_BYTES = 32 * 1024
AMR_PASSWORD = ("pwd",)
AMR_MFA = ("pwd", "otp", "mfa")
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"}


class InvalidTargetError(OAuth2Error):
    """RFC 8707: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


@dataclass(frozen=True)
class Authorization:
    """Who signed in, how (``amr``, RFC 8176) and for which resource: what a code or refresh token stands for."""

    subject: str
    username: str
    amr: tuple[str, ...]
    auth_time: int
    resource: str


# -- authlib request adapter -------------------------------------------------------------------------
class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]):
        self._data: dict[str, str] = {}
        self._datalist: defaultdict[str, list] = defaultdict(list)
        for key, value in pairs:
            self._data.setdefault(key, value)
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list]:
        return self._datalist


class _Request(OAuth2Request):
    def __init__(self, method: str, uri: str, headers: object, query: list[tuple[str, str]],
                 form: list[tuple[str, str]]):
        super().__init__(method, uri, headers=headers)
        self._args = dict(reversed(query))
        self._form = dict(reversed(form))
        self.payload = _Payload(query + form)

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


# -- grants ------------------------------------------------------------------------------------------
class S256Only(CodeChallenge):
    """PKCE is required on every authorization request, with S256; ``plain`` (or no method) is refused."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256 ('plain' is not accepted)")
        super().validate_code_challenge(grant, redirect_uri)


@dataclass
class _CodeRecord:
    row: dict

    def get_redirect_uri(self) -> str | None:
        return self.row["redirect_uri"]

    def get_scope(self) -> str:
        return self.row["scope"]

    @property
    def code_challenge(self) -> str:
        return self.row["code_challenge"]

    @property
    def code_challenge_method(self) -> str:
        return self.row["code_challenge_method"]


@dataclass
class _RefreshRecord:
    row: dict

    def get_scope(self) -> str:
        return self.row["scope"]

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.row["client_id"]


def _authorization(row: dict) -> Authorization:
    return Authorization(subject=row["subject"], username=row["username"], amr=tuple(row["amr"].split()),
                         auth_time=int(row["auth_time"]), resource=row["resource"])


def _check_token_resource(request: OAuth2Request, granted: str) -> None:
    asked = request.payload.datalist.get("resource", [])
    if asked and asked != [granted]:
        raise InvalidTargetError(description="resource must be the one the grant was issued for")


class CodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def validate_authorization_request(self):
        redirect_uri = super().validate_authorization_request()
        try:
            self.server.requested_resource(self.request)
        except OAuth2Error as error:
            error.redirect_uri = redirect_uri
            raise
        return redirect_uri

    def create_authorization_response(self, redirect_uri: str, grant_user):
        status, body, headers = super().create_authorization_response(redirect_uri, grant_user)
        # RFC 9207: name the issuer in the response so a client talking to several servers cannot be mixed up.
        return status, body, [(k, add_params_to_uri(v, [("iss", self.server.settings.issuer)]) if k == "Location"
                               else v) for k, v in headers]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        authz: Authorization = request.user
        data = request.payload.data
        self.server.store.put_code(
            code, client_id=request.client.client_id, redirect_uri=request.payload.redirect_uri,
            scope=request.scope, resource=authz.resource, subject=authz.subject, username=authz.username,
            amr=" ".join(authz.amr), auth_time=authz.auth_time, code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            expires_at=time.time() + self.server.settings.code_ttl_s)

    def query_authorization_code(self, code: str, client: Client):
        row, fresh = self.server.store.consume_code(code)  # single use: the first query spends it
        if row is None or not fresh or row["client_id"] != client.client_id or row["expires_at"] < time.time():
            return None
        return _CodeRecord(dict(row))

    def validate_token_request(self):
        super().validate_token_request()
        _check_token_resource(self.request, self.request.authorization_code.row["resource"])

    def delete_authorization_code(self, authorization_code) -> None:
        pass  # already spent by query_authorization_code

    def authenticate_user(self, authorization_code: _CodeRecord) -> Authorization:
        return _authorization(authorization_code.row)


class RefreshGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every use returns a new refresh token and spends the old one

    def authenticate_refresh_token(self, refresh_token: str):
        row = self.server.store.get_refresh_token(refresh_token)
        if row is None:
            return None
        if row["used_at"] is not None or row["revoked_at"] is not None:
            self.server.store.use_refresh_token(row["token_hash"])  # spent or revoked: revoke the whole family
            if row["used_at"] is not None:
                log.warning("refresh token reuse for client %s: its token family is revoked", row["client_id"])
            return None
        if row["expires_at"] < time.time():
            return None
        return _RefreshRecord(dict(row))

    def validate_token_request(self):
        super().validate_token_request()
        _check_token_resource(self.request, self.request.refresh_token.row["resource"])

    def authenticate_user(self, refresh_token: _RefreshRecord) -> Authorization:
        return _authorization(refresh_token.row)

    def issue_token(self, user, refresh_token: _RefreshRecord):
        if not self.server.store.use_refresh_token(refresh_token.row["token_hash"]):
            log.warning("refresh token reuse for client %s: its token family is revoked", refresh_token.row["client_id"])
            raise InvalidGrantError("this refresh token was used already; its whole family is now revoked")
        return super().issue_token(user, refresh_token)

    def revoke_old_credential(self, refresh_token) -> None:
        pass  # spent atomically in issue_token


# -- the server ----------------------------------------------------------------------------------------
class EchoAuthorizationServer(AuthorizationServer):
    def __init__(self, settings: AuthServerSettings, store: Store):
        super().__init__(scopes_supported=list(SCOPES))
        self.settings = settings
        self.store = store
        self.register_token_generator("default", self._generate_token)
        self.register_grant(CodeGrant, [S256Only(required=True)])
        self.register_grant(RefreshGrant)

    def query_client(self, client_id: str) -> Client:
        try:
            return load_client(self.store, self.settings, client_id)
        except ClientRefused as exc:
            raise InvalidClientError(description=str(exc)) from exc

    def requested_resource(self, request: OAuth2Request) -> str:
        """The one RFC 8707 resource of an authorization request (or the configured default)."""
        asked = request.payload.datalist.get("resource", [])
        if len(asked) > 1:
            raise InvalidTargetError(description="ask for one resource per authorization")
        if not asked:
            if self.settings.resources:
                return self.settings.resources[0]
            raise InvalidTargetError(description="resource is required (RFC 8707): the URL of the MCP server")
        resource = asked[0]
        if (why := check_resource_uri(resource)) is not None:
            raise InvalidTargetError(description=f"resource cannot be used: {why}")
        if self.settings.resources and resource not in self.settings.resources:
            raise InvalidTargetError(description="this server does not issue tokens for that resource")
        return resource

    def save_token(self, token: dict, request: OAuth2Request) -> None:
        refresh = token.get("refresh_token")
        if not refresh:
            return
        authz: Authorization = request.user
        if isinstance(request.refresh_token, _RefreshRecord):
            family = request.refresh_token.row["family_id"]
        else:
            family = secrets.token_hex(16)
            if request.authorization_code is not None:
                self.store.bind_code_family(request.authorization_code.row["code_hash"], family)
        now = time.time()
        self.store.put_refresh_token(
            refresh, family_id=family, client_id=request.client.client_id, subject=authz.subject,
            username=authz.username, scope=token.get("scope", ""), resource=authz.resource,
            amr=" ".join(authz.amr), auth_time=authz.auth_time, issued_at=now,
            expires_at=now + self.settings.refresh_token_ttl_s)

    def _generate_token(self, grant_type, client, user=None, scope=None, expires_in=None,
                        include_refresh_token=True) -> dict:
        authz: Authorization = user
        now = int(time.time())
        ttl = self.settings.access_token_ttl_s
        claims = {"iss": self.settings.issuer, "sub": authz.subject, "aud": authz.resource, "iat": now,
                  "exp": now + ttl, "jti": secrets.token_urlsafe(16), "client_id": client.client_id,
                  "scope": scope or "", "amr": list(authz.amr), "auth_time": authz.auth_time}
        token = {"token_type": "Bearer", "access_token": keys.sign(self.store, ttl, claims), "expires_in": ttl,
                 "scope": scope or ""}
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(32)
        return token

    def create_oauth2_request(self, request) -> OAuth2Request:
        return request  # always built by the route (an _Request) before authlib sees it

    def create_json_request(self, request):
        raise NotImplementedError("no JSON endpoints are registered with authlib")

    def send_signal(self, name, *args, **kwargs) -> None:
        return None

    def handle_response(self, status, body, headers) -> Response:
        headers = {k: v for k, v in dict(headers).items() if k.lower() != "content-type"}
        if isinstance(body, dict):
            return JSONResponse(body, status_code=status, headers=headers)
        return Response(body or "", status_code=status, headers=headers)


# -- routes ----------------------------------------------------------------------------------------------
def _html(body: str, status: int = 200, headers: dict | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**PAGE_HEADERS, **(headers or {})})


def create_app(settings: AuthServerSettings, store: Store | None = None) -> Starlette:
    store = store or Store(settings.state_dir)
    keys.ensure_key(store, settings.access_token_ttl_s)
    server = EchoAuthorizationServer(settings, store)
    issuer = settings.issuer
    csrf_cookie = "__Host-echotune_csrf" if settings.secure_cookies else "echotune_csrf"

    async def _pairs(request: Request) -> list[tuple[str, str]] | None:
        """A url-encoded form of at most MAX_FORM_BYTES and MAX_FORM_FIELDS fields; None for anything else."""
        if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return None
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_FORM_BYTES:
                return None
        try:
            return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:  # bad UTF-8 or too many fields
            return None

    def _bad_form_page() -> HTMLResponse:
        return _html(templates.error_page(f"The form could not be read (url-encoded, at most {MAX_FORM_BYTES} "
                                          "bytes)."), 400)

    def _oauth_request(method: str, path: str, headers: object, query: list[tuple[str, str]],
                       form: list[tuple[str, str]]) -> _Request:
        uri = f"{issuer}{path}" + (f"?{urlencode(query)}" if query else "")
        return _Request(method, uri, headers, query, form)

    async def metadata(_request: Request) -> JSONResponse:
        doc = {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/authorize",
            "token_endpoint": f"{issuer}/token",
            "jwks_uri": f"{issuer}/jwks.json",
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none"],
            "code_challenge_methods_supported": ["S256"],
            "client_id_metadata_document_supported": True,
            "authorization_response_iss_parameter_supported": True,
        }
        if settings.dynamic_registration:
            doc["registration_endpoint"] = f"{issuer}/register"
        return JSONResponse(doc, headers={"Cache-Control": "max-age=300"})

    async def jwks(_request: Request) -> JSONResponse:
        doc = await run_in_threadpool(keys.public_jwks, store)
        return JSONResponse(doc, headers={"Cache-Control": "max-age=60"})

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    def _consent_context(req: _Request, grant) -> dict:
        client: Client = grant.client
        return {"client_name": client.client_name, "client_id": client.client_id,
                "resource": server.requested_resource(req), "scope": req.scope or ""}

    async def authorize(request: Request) -> Response:
        query = list(request.query_params.multi_items())
        req = _oauth_request("GET", "/authorize", {}, query, [])

        def validate():
            try:
                grant = server.get_consent_grant(req)  # validates client, redirect, scope, PKCE, resource
                return grant, _consent_context(req, grant)
            except OAuth2Error as error:
                return None, error

        grant, ctx = await run_in_threadpool(validate)
        if grant is None:
            return _error_response(req, ctx)
        txn, csrf = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        await run_in_threadpool(store.put_transaction, txn, query, digest(csrf), settings.login_ttl_s)
        response = _html(templates.login_page(txn=txn, csrf=csrf, **ctx))
        _set_csrf(response, csrf)
        return response

    def _error_response(req: _Request, error: OAuth2Error) -> Response:
        if error.redirect_uri:  # validated against the client: tell the client through its redirect
            error.state = req.payload.state
            response = server.handle_error_response(req, error)
            response.status_code = 303 if response.status_code == 302 else response.status_code
            return response
        return _html(templates.error_page(f"{error.error}: {error.description or ''}".strip(": ")), 400)

    def _set_csrf(response: Response, csrf: str) -> None:
        response.set_cookie(csrf_cookie, csrf, max_age=settings.login_ttl_s, path="/", httponly=True,
                            samesite="strict", secure=settings.secure_cookies)

    async def _transaction(request: Request, form: dict) -> tuple[dict | None, Response | None]:
        txn_id, csrf = form.get("txn", ""), form.get("csrf", "")
        cookie = request.cookies.get(csrf_cookie, "")
        row = await run_in_threadpool(store.get_transaction, txn_id) if txn_id else None
        if row is None:
            return None, _html(templates.error_page("This sign-in expired or was already used."), 400)
        if not (csrf and cookie and secrets.compare_digest(csrf, cookie)
                and secrets.compare_digest(digest(csrf), row["csrf_hash"])):
            return None, _html(templates.error_page("The form's security token did not match; reload the sign-in "
                                                    "page from the application."), 403)
        return dict(row), None

    def _address(request: Request) -> str:
        return request.client.host if request.client else "-"

    def _limit_key(username: str, request: Request) -> str:
        return hashlib.sha256(f"{username.strip().lower()}\x1f{_address(request)}".encode()).hexdigest()

    async def _limited(key: str) -> int:
        """Seconds until another attempt is allowed for this user + address (0: allowed now)."""
        since = time.time() - settings.login_window_s
        failures = await run_in_threadpool(store.failures_since, key, since)
        if len(failures) < settings.login_max_failures:
            return 0
        return max(1, int(failures[-settings.login_max_failures] + settings.login_window_s - time.time()) + 1)

    async def _finish(txn: dict, authz: Authorization | None) -> Response:
        if not await run_in_threadpool(store.take_transaction, txn["txn_id"]):
            return _html(templates.error_page("This sign-in expired or was already used."), 400)
        query = [tuple(p) for p in json.loads(txn["params"])]
        req = _oauth_request("GET", "/authorize", {}, query, [])

        def respond():
            try:
                grant = server.get_consent_grant(req)
            except OAuth2Error as error:
                return _error_response(req, error)
            return server.create_authorization_response(req, grant_user=authz, grant=grant)

        response = await run_in_threadpool(respond)
        if response.status_code == 302:
            response.status_code = 303  # after a POST, the browser GETs the client's redirect
        response.headers.update({"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})
        response.delete_cookie(csrf_cookie, path="/", secure=settings.secure_cookies, httponly=True,
                               samesite="strict")
        return response

    async def _context_for(txn: dict) -> dict:
        query = [tuple(p) for p in json.loads(txn["params"])]
        req = _oauth_request("GET", "/authorize", {}, query, [])

        def ctx():
            grant = server.get_consent_grant(req)
            return _consent_context(req, grant)

        return await run_in_threadpool(ctx)

    def _acr_values(txn: dict) -> set[str]:
        return {word for name, value in json.loads(txn["params"]) if name == "acr_values" for word in value.split()}

    async def login(request: Request) -> Response:
        pairs = await _pairs(request)
        if pairs is None:
            return _bad_form_page()
        form = dict(pairs)
        txn, problem = await _transaction(request, form)
        if problem is not None:
            return problem
        if txn["stage"] != "password":
            return _html(templates.error_page("This sign-in is waiting for its one-time code."), 400)
        if form.get("action") == "deny":
            return await _finish(txn, None)
        username, password = form.get("username", "").strip(), form.get("password", "")
        key = _limit_key(username, request)
        ctx = await _context_for(txn)
        csrf = form["csrf"]
        if (wait := await _limited(key)):
            log.warning("sign-in attempts for username %r from %s are limited for %d s", username[:64],
                        _address(request), wait)
            return _html(templates.login_page(txn=txn["txn_id"], csrf=csrf, username=username,
                                              error=f"Too many failed attempts. Try again in {wait} seconds.", **ctx),
                         429, {"Retry-After": str(wait)})
        result = await run_in_threadpool(verify_password, store, username, password)
        if result is None:
            await run_in_threadpool(store.add_failure, key)
            log.info("failed password sign-in for username %r from %s", username[:64], _address(request))
            return _html(templates.login_page(txn=txn["txn_id"], csrf=csrf, username=username,
                                              error="Wrong username or password.", **ctx), 401)
        await run_in_threadpool(store.clear_failures, key)
        if "mfa" in _acr_values(txn) and not result.needs_otp:
            # RFC 9470 step-up asked for a second factor this account does not have: say so, issue nothing.
            await run_in_threadpool(store.take_transaction, txn["txn_id"])
            return _html(templates.error_page("The application needs a second factor, and this account has none "
                                              "yet. Ask the operator to enrol one (`echotune-mcp auth-server user "
                                              "reset-mfa USER --totp`), then sign in again."), 403)
        if result.needs_otp:
            await run_in_threadpool(store.advance_transaction, txn["txn_id"], result.username)
            return _html(templates.otp_page(txn=txn["txn_id"], csrf=csrf, **ctx))
        return await _finish(txn, Authorization(subject=result.subject, username=result.username, amr=AMR_PASSWORD,
                                                auth_time=int(time.time()), resource=ctx["resource"]))

    async def login_otp(request: Request) -> Response:
        pairs = await _pairs(request)
        if pairs is None:
            return _bad_form_page()
        form = dict(pairs)
        txn, problem = await _transaction(request, form)
        if problem is not None:
            return problem
        if txn["stage"] != "otp" or not txn["username"]:
            return _html(templates.error_page("Sign in with your password first."), 400)
        username = txn["username"]
        key = _limit_key(username, request)
        ctx = await _context_for(txn)
        csrf = form["csrf"]
        if (wait := await _limited(key)):
            return _html(templates.otp_page(txn=txn["txn_id"], csrf=csrf,
                                            error=f"Too many failed attempts. Try again in {wait} seconds.", **ctx),
                         429, {"Retry-After": str(wait)})
        if not await run_in_threadpool(verify_totp, store, username, form.get("code", "")):
            await run_in_threadpool(store.add_failure, key)
            log.info("failed one-time code for username %r from %s", username, _address(request))
            return _html(templates.otp_page(txn=txn["txn_id"], csrf=csrf, error="That code is not valid.", **ctx),
                         401)
        await run_in_threadpool(store.clear_failures, key)
        user = await run_in_threadpool(store.get_user, username)
        if user is None:
            return _html(templates.error_page("This account no longer exists."), 400)
        return await _finish(txn, Authorization(subject=user["subject"], username=username, amr=AMR_MFA,
                                                auth_time=int(time.time()), resource=ctx["resource"]))

    async def token(request: Request) -> Response:
        form = await _pairs(request)
        if form is None:
            return JSONResponse({"error": "invalid_request", "error_description": "send an application/x-www-form-"
                                 f"urlencoded body of at most {MAX_FORM_BYTES} bytes"}, 400,
                                headers={"Cache-Control": "no-store"})
        req = _oauth_request("POST", "/token", request.headers, [], form)
        return await run_in_threadpool(server.create_token_response, req)

    async def register(request: Request) -> Response:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "invalid_client_metadata", "error_description": "send JSON"}, 400)
        body = await request.body()
        if len(body) > 16 * 1024:
            return JSONResponse({"error": "invalid_client_metadata", "error_description": "metadata too large"}, 400)
        try:
            doc = json.loads(body)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            client_id = "dyn-" + secrets.token_urlsafe(18)
            client_from_metadata(client_id, {**doc, "client_id": client_id})
        except ClientRefused as exc:
            return JSONResponse({"error": "invalid_redirect_uri" if "redirect" in str(exc) else
                                 "invalid_client_metadata", "error_description": str(exc)}, 400)
        except ValueError:
            return JSONResponse({"error": "invalid_client_metadata", "error_description": "not a JSON object"}, 400)
        keep = {k: doc[k] for k in ("redirect_uris", "client_name", "grant_types", "response_types", "scope",
                                    "token_endpoint_auth_method") if k in doc}
        await run_in_threadpool(store.put_client, client_id, "dynamic", keep)
        return JSONResponse({"client_id": client_id, "client_id_issued_at": int(time.time()),
                             "token_endpoint_auth_method": "none", **keep}, 201, headers={"Cache-Control": "no-store"})

    routes = [
        Route("/.well-known/oauth-authorization-server", metadata, methods=["GET"]),
        Route("/jwks.json", jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/authorize", authorize, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/login/otp", login_otp, methods=["POST"]),
        Route("/token", token, methods=["POST"]),
    ]
    if settings.dynamic_registration:
        routes.append(Route("/register", register, methods=["POST"]))
    app = Starlette(routes=routes)
    app.state.store = store
    app.state.settings = settings
    return app
