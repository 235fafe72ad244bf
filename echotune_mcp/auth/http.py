"""The HTTP app of ``echotune-mcp serve --transport http``, with OAuth authorization when an issuer is configured.

Layers, outermost first: (the caller may wrap the result, e.g. to slow down repeated auth failures) -> bearer
authentication and the per-request scope and step-up checks here -> ``extra_middleware`` (they see
``current_caller()``: rate limits and the like) -> the SDK's streamable HTTP app.

What a client is told, in the HTTP answer's ``WWW-Authenticate`` header (not only in a JSON-RPC body, so any
OAuth client library can act on it):
- no token: 401, ``Bearer resource_metadata="..."`` (RFC 9728: where to find the authorization server);
- a token we refuse, for whatever reason: 401, ``error="invalid_token"`` and nothing more (the reason is in the
  server log only: no detail that helps an attacker);
- a scope missing for a method or tool: 403, ``error="insufficient_scope"``, ``scope="..."`` (what is needed);
- a destructive tool or a provider mutation without a second factor in the token (``amr`` mfa/otp): 401,
  ``error="insufficient_user_authentication"``, ``acr_values="mfa"`` (RFC 9470 step-up).

The layer leaves what it decided in the ASGI scope for outer layers (audit, slow-down): ``echotune.caller`` (the
``Caller``) and ``echotune.denied`` (``{"event": "auth_failure" | "scope_denied" | "step_up_denied", ...}``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.routes import cors_middleware
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import DEFAULT_MAX_REQUEST_BODY_SIZE
from mcp_types import ToolAnnotations
from starlette.applications import Starlette
from starlette.authentication import AuthCredentials
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from .context import caller_from_token
from .policy import ALL_SCOPES, STEP_UP_ACR, method_scope, tool_calls_in, tool_policy
from .verifier import JWTVerifier

UNAUTHENTICATED_PATHS = ("/healthz",)
WELL_KNOWN_RESOURCE = "/.well-known/oauth-protected-resource"


def make_verifier(settings: Settings) -> JWTVerifier:
    assert settings.auth_issuer
    return JWTVerifier(settings.auth_issuer, settings.resource_url,
                       introspection_url=settings.auth_introspection_url, client_id=settings.auth_client_id,
                       client_secret=settings.auth_client_secret, jwks_cache_s=settings.auth_jwks_cache_s,
                       refetch_interval_s=settings.auth_refetch_interval_s)


def resource_metadata_url(resource: str) -> str:
    """RFC 9728 §3.1: the well-known path inserted between the resource URL's origin and its path."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    return f"{parts.scheme}://{parts.netloc}{WELL_KNOWN_RESOURCE}{path}"


def _challenge(*params: tuple[str, str]) -> str:
    return "Bearer " + ", ".join(f'{k}="{v}"' for k, v in params)


async def _send_json(send: Send, status: int, body: dict[str, str], www_authenticate: str) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                            (b"www-authenticate", www_authenticate.encode()), (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": raw})


class BearerAuthLayer:
    """Authenticates every request but the unauthenticated paths, then checks each JSON-RPC call in the body."""

    def __init__(self, app: ASGIApp, *, verifier: Any, server: MCPServer, metadata_url: str,
                 max_body: int = DEFAULT_MAX_REQUEST_BODY_SIZE) -> None:
        self.app = app
        self.verifier = verifier
        self.server = server
        self.metadata_url = metadata_url
        self.max_body = max_body
        self._annotations: dict[str, ToolAnnotations | None] | None = None

    async def _tool_annotations(self) -> dict[str, ToolAnnotations | None]:
        if self._annotations is None:  # the tools are fixed once the server is built
            self._annotations = {t.name: t.annotations for t in await self.server.list_tools()}
        return self._annotations

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in UNAUTHENTICATED_PATHS or path.startswith(WELL_KNOWN_RESOURCE):
            await self.app(scope, receive, send)
            return
        header = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"authorization"), None)
        if header is None or not header[:7].lower() == "bearer " or not header[7:].strip():
            scope["echotune.denied"] = {"event": "auth_failure", "reason": "no token"}
            await _send_json(send, 401, {"error": "unauthorized", "error_description": "an access token is needed"},
                             _challenge(("resource_metadata", self.metadata_url)))
            return
        token = await self.verifier.verify_token(header[7:].strip())
        if token is None:
            scope["echotune.denied"] = {"event": "auth_failure", "reason": "invalid token"}
            await _send_json(send, 401, {"error": "invalid_token"},
                             _challenge(("error", "invalid_token"), ("resource_metadata", self.metadata_url)))
            return
        caller = caller_from_token(token)
        scope["user"] = AuthenticatedUser(token)
        scope["auth"] = AuthCredentials(token.scopes)
        scope["echotune.caller"] = caller

        body_receive = receive
        if scope.get("method") == "POST":
            body, more = await self._read_body(receive)
            if more:
                await _send_json(send, 413, {"error": "request_too_large"}, _challenge(("resource_metadata",
                                                                                           self.metadata_url)))
                return
            if await self._refused(scope, send, caller, body):
                return
            body_receive = _replay(body, receive)
        reset = auth_context_var.set(scope["user"])
        try:
            await self.app(scope, body_receive, send)
        finally:
            auth_context_var.reset(reset)

    async def _read_body(self, receive: Receive) -> tuple[bytes, bool]:
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return bytes(body), False
            body += message.get("body", b"")
            if len(body) > self.max_body:
                return b"", True
            if not message.get("more_body", False):
                return bytes(body), False

    async def _refused(self, scope: Scope, send: Send, caller: Any, body: bytes) -> bool:
        """Answer 403 (a scope is missing) or 401 (step-up needed) for the calls in ``body``; False: let it run."""
        calls = tool_calls_in(body)
        if not calls:
            return False
        annotations = await self._tool_annotations()
        needed: list[str] = []
        step_up_tools: list[str] = []
        tools: list[str] = []
        for method, tool in calls:
            if method == "tools/call":
                if tool not in annotations:
                    continue  # no such tool: the SDK answers that, and nothing runs
                policy = tool_policy(tool, annotations[tool])
                tools.append(tool)
                scope_needed: str | None = policy.scope
                if policy.step_up:
                    step_up_tools.append(tool)
            else:
                scope_needed = method_scope(method)
            if scope_needed and scope_needed not in needed:
                needed.append(scope_needed)
        missing = [s for s in needed if s not in caller.scopes]
        if missing:
            scope["echotune.denied"] = {"event": "scope_denied", "principal": caller.principal, "needed": missing,
                                        "tools": tools}
            wanted = " ".join(s for s in ALL_SCOPES if s in needed)
            await _send_json(send, 403, {"error": "insufficient_scope", "scope": wanted},
                             _challenge(("error", "insufficient_scope"), ("scope", wanted),
                                        ("resource_metadata", self.metadata_url)))
            return True
        if step_up_tools and not caller.stepped_up:
            scope["echotune.denied"] = {"event": "step_up_denied", "principal": caller.principal,
                                        "tools": step_up_tools}
            description = f"{', '.join(step_up_tools)} needs a multi-factor login"
            await _send_json(send, 401, {"error": "insufficient_user_authentication", "error_description": description},
                             _challenge(("error", "insufficient_user_authentication"),
                                        ("error_description", description), ("acr_values", STEP_UP_ACR),
                                        ("resource_metadata", self.metadata_url)))
            return True
        return False


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the already-read body once, then waits on the real one (for the disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class _Hook:
    """Adapts a ``Callable[[ASGIApp], ASGIApp]`` to Starlette's ``Middleware(cls, ...)``."""

    def __init__(self, app: ASGIApp, *, wrap: Callable[[ASGIApp], ASGIApp]) -> None:
        self.inner = wrap(app)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.inner(scope, receive, send)


def build_http_app(app: Any, server: MCPServer, settings: Settings, *,
                   extra_middleware: Iterable[Callable[[ASGIApp], ASGIApp]] = (), verifier: Any = None) -> Starlette:
    """The Starlette app to serve: ``/mcp`` (the SDK's streamable HTTP), ``/healthz`` and, with authorization,
    the RFC 9728 metadata and the bearer layer. ``app`` is the EchoTune App (kept for layers that need it)."""

    async def healthz(_request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    server.custom_route("/healthz", methods=["GET"])(healthz)
    starlette_app = server.streamable_http_app(host=settings.host)
    hooks = [Middleware(_Hook, wrap=wrap) for wrap in extra_middleware]
    if not settings.auth_enabled:
        starlette_app.user_middleware[:0] = hooks
        return starlette_app
    resource = settings.resource_url
    metadata_url = resource_metadata_url(resource)
    metadata = {"resource": resource, "authorization_servers": [settings.auth_issuer],
                "scopes_supported": list(ALL_SCOPES), "bearer_methods_supported": ["header"],
                "resource_name": "EchoTune MCP"}

    async def protected_resource(_request: Request) -> JSONResponse:
        # The issuer exactly as configured (clients compare it with the issuer's own metadata, RFC 8414 §3.3).
        return JSONResponse(metadata, headers={"cache-control": "public, max-age=3600"})

    endpoint = cors_middleware(protected_resource, ["GET", "OPTIONS"])
    paths = dict.fromkeys([urlsplit(metadata_url).path, WELL_KNOWN_RESOURCE])  # RFC 9728 §3.1, and the bare one
    starlette_app.router.routes[:0] = [Route(path, endpoint=endpoint, methods=["GET", "OPTIONS"]) for path in paths]
    layer = Middleware(BearerAuthLayer, verifier=verifier or make_verifier(settings), server=server,
                       metadata_url=metadata_url)
    starlette_app.user_middleware[:0] = [layer, *hooks]
    return starlette_app
