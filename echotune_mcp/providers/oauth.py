"""OAuth 2.1 for providers with authlib: authorization code + PKCE (S256 only), loopback redirect.

* ``start_authorization`` makes the URL a person opens; ``exchange_code`` checks ``state`` and
  trades the code (with the PKCE verifier) for tokens.
* ``CallbackListener`` is the loopback redirect target ``http://127.0.0.1:<port>/callback``
  (Spotify refuses ``localhost`` redirects since Nov 2025). One listener serves every pending
  authorization on its port; callbacks are routed by ``state``, so a forged or stale state reaches
  nobody.
* ``TokenKeeper`` hands out access tokens, refreshing shortly before expiry; authlib's
  ``update_token`` hook persists the rotated refresh token. A refresh the server refuses removes
  the stored grant and tells the agent to reconnect. ``revoke`` revokes on disconnect.
"""

from __future__ import annotations

import asyncio
import html
import logging
import secrets
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio
import anyio.from_thread
from authlib.common.security import generate_token
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from ..config import Settings
from .base import DISPLAY, NotConnected, ProviderError, ReconnectNeeded
from .token_store import TokenStore

log = logging.getLogger(__name__)

HTTP_TIMEOUT = (5, 20)
SPOTIFY_SCOPES = (
    "playlist-read-private", "playlist-read-collaborative", "playlist-modify-private", "playlist-modify-public",
    "user-library-read", "user-top-read", "user-read-recently-played",
)
# Errors from the token endpoint that mean the grant itself is gone (RFC 6749 5.2).
DEAD_GRANT = {"invalid_grant", "invalid_client", "unauthorized_client"}


class AuthorizationFailed(ProviderError):
    """The person declined, the callback was forged or stale, or the code could not be exchanged."""


@dataclass(frozen=True)
class OAuthClientConfig:
    provider: str
    client_id: str
    authorize_url: str
    token_url: str
    redirect_port: int
    scopes: tuple[str, ...] = ()
    client_secret: str | None = None
    revoke_url: str | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.redirect_port}/callback"


def spotify_client_config(settings: Settings, redirect_port: int | None = None) -> OAuthClientConfig | None:
    """Spotify's endpoints under the configured auth base; None until a client id is configured.

    Spotify documents no token-revocation endpoint, so disconnecting removes the grant here and
    points the person at their account page to revoke the app there too.
    """
    if not settings.spotify_client_id:
        return None
    base = settings.spotify_auth_base.rstrip("/")
    return OAuthClientConfig(
        provider="spotify", client_id=settings.spotify_client_id, client_secret=settings.spotify_client_secret,
        authorize_url=f"{base}/authorize", token_url=f"{base}/api/token", revoke_url=None,
        redirect_port=redirect_port or settings.oauth_redirect_port, scopes=SPOTIFY_SCOPES,
    )


def _session(cfg: OAuthClientConfig, *, token: dict[str, Any] | None = None,
             update_token: Callable[..., None] | None = None) -> OAuth2Session:
    return OAuth2Session(
        client_id=cfg.client_id, client_secret=cfg.client_secret,
        token_endpoint_auth_method="client_secret_basic" if cfg.client_secret else "none",
        revocation_endpoint_auth_method="client_secret_basic" if cfg.client_secret else "none",
        scope=" ".join(cfg.scopes) or None, redirect_uri=cfg.redirect_uri, token=token,
        update_token=update_token, code_challenge_method="S256", token_endpoint=cfg.token_url,
        default_timeout=HTTP_TIMEOUT,
    )


@dataclass
class AuthRequest:
    """One authorization in flight: the URL to open and the secrets that must come back with it."""

    cfg: OAuthClientConfig
    url: str
    state: str
    code_verifier: str = field(repr=False)


def start_authorization(cfg: OAuthClientConfig) -> AuthRequest:
    verifier = generate_token(64)  # RFC 7636: 43-128 characters from the unreserved set
    with _session(cfg) as sess:
        url, state = sess.create_authorization_url(cfg.authorize_url, code_verifier=verifier)
    return AuthRequest(cfg=cfg, url=url, state=state, code_verifier=verifier)


def exchange_code(req: AuthRequest, params: dict[str, str]) -> dict[str, Any]:
    """Blocking: validate the callback parameters and trade the code for a token."""
    if not secrets.compare_digest(params.get("state", ""), req.state):
        raise AuthorizationFailed("the authorization callback carried the wrong state (stale or forged); "
                                  "start again with connect_provider")
    if params.get("error"):
        detail = params.get("error_description") or params["error"]
        raise AuthorizationFailed(f"{DISPLAY.get(req.cfg.provider, req.cfg.provider)} authorization was not granted "
                                  f"({detail}); call connect_provider again if that was a mistake")
    code = params.get("code")
    if not code:
        raise AuthorizationFailed("the authorization callback had no code; start again with connect_provider")
    with _session(req.cfg) as sess:
        try:
            token = sess.fetch_token(req.cfg.token_url, grant_type="authorization_code", code=code,
                                     code_verifier=req.code_verifier)
        except OAuthError as exc:
            raise AuthorizationFailed(f"the code could not be exchanged for a token ({exc.error}: "
                                      f"{exc.description or ''}); start again with connect_provider") from None
    return dict(token)


# -- the loopback redirect target ---------------------------------------------------------------
_PAGE = ("<!doctype html><meta charset=utf-8><title>EchoTune</title>"
         "<body style='font-family:sans-serif'><h2>{title}</h2><p>{body}</p></body>")


class CallbackListener:
    """``GET /callback`` on 127.0.0.1:port, routing each callback to the waiter registered for its state."""

    def __init__(self, port: int):
        self.port = port
        self._waiters: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Future[dict[str, str]]]] = {}
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/callback":
                    self._reply(404, "Not found", "This address only receives authorization callbacks.")
                    return
                params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if listener.deliver(params):
                    self._reply(200, "Done", "You can close this tab and return to your assistant.")
                else:
                    self._reply(400, "Unknown or expired request",
                                "This authorization is not the one EchoTune is waiting for. Start again.")

            def _reply(self, status: int, title: str, body: str) -> None:
                data = _PAGE.format(title=html.escape(title), body=html.escape(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # keep codes out of logs
                pass

        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError as exc:
            raise ProviderError(f"cannot listen for the authorization callback on 127.0.0.1:{port} ({exc}); "
                                "free the port or set ECHOTUNE_OAUTH_REDIRECT_PORT (it must match the "
                                "redirect URI registered with the provider)") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name=f"oauth-callback-{port}", daemon=True)
        self._thread.start()

    def expect(self, state: str) -> asyncio.Future[dict[str, str]]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[dict[str, str]] = loop.create_future()
        with self._lock:
            self._waiters[state] = (loop, fut)
        return fut

    def forget(self, state: str) -> None:
        with self._lock:
            self._waiters.pop(state, None)

    @property
    def idle(self) -> bool:
        with self._lock:
            return not self._waiters

    def deliver(self, params: dict[str, str]) -> bool:
        """Called on the server thread: hand the parameters to the waiter for their state, if any."""
        state = params.get("state", "")
        with self._lock:
            match = next((s for s in self._waiters if secrets.compare_digest(s, state)), None)
            entry = self._waiters.pop(match) if match is not None else None
        if entry is None:
            return False
        loop, fut = entry
        loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(params))
        return True

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def authorize(req: AuthRequest, listener: CallbackListener, timeout_s: float) -> dict[str, Any]:
    """Wait (bounded) for the browser to come back to the listener, then exchange the code."""
    fut = listener.expect(req.state)
    try:
        params = await asyncio.wait_for(fut, timeout_s)
    except TimeoutError:
        raise AuthorizationFailed(f"no authorization arrived within {timeout_s:.0f} s; call connect_provider "
                                  "again and open the URL it returns") from None
    finally:
        listener.forget(req.state)
    return await anyio.to_thread.run_sync(exchange_code, req, params)


# -- tokens in use ------------------------------------------------------------------------------
# One refresh lock per grant for the whole process, whichever TokenKeeper (hub, CLI, toolset) asks:
# with rotating refresh tokens a second concurrent refresh would spend a token the first one already
# rotated away. Keyed by event loop too (an asyncio lock belongs to one loop); held weakly, so a lock
# lives exactly as long as some call is using it.
_grant_locks: weakref.WeakValueDictionary[tuple[int, str, str], asyncio.Lock] = weakref.WeakValueDictionary()
_grant_locks_guard = threading.Lock()


def grant_lock(owner: str, provider: str) -> asyncio.Lock:
    key = (id(asyncio.get_running_loop()), owner, provider)
    with _grant_locks_guard:
        lock = _grant_locks.get(key)
        if lock is None:
            lock = _grant_locks[key] = asyncio.Lock()
        return lock


def _same_grant(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.get("refresh_token") == b.get("refresh_token") and a.get("access_token") == b.get("access_token")


class TokenKeeper:
    """Access tokens for (owner, provider): loaded from the encrypted store, refreshed before expiry."""

    def __init__(self, store: TokenStore, configs: Callable[[str], OAuthClientConfig | None]):
        self.store = store
        self.configs = configs

    async def save(self, owner: str, provider: str, token: dict[str, Any]) -> None:
        await self.store.save(owner, provider, token)

    async def access_token(self, owner: str, provider: str) -> str:
        async with grant_lock(owner, provider):
            token = await self.store.load(owner, provider)
            if token is None:
                raise NotConnected(provider)
            cfg = self.configs(provider)
            if cfg is None or not token.get("refresh_token"):
                return str(token["access_token"])
            # Two rounds at most: the second uses a grant another process rotated while ours was in flight.
            for _ in range(2):
                try:
                    fresh = await self._ensure_active(cfg, owner, provider, token)
                except OAuthError as exc:
                    if exc.error not in DEAD_GRANT:
                        raise ProviderError(f"refreshing the {DISPLAY.get(provider, provider)} token failed "
                                            f"({exc.error}); try again shortly") from None
                    # The provider refused our refresh token. If the store now holds a different grant, another
                    # process rotated it meanwhile (its refresh spent the token we sent): that grant is good.
                    current = await self.store.load(owner, provider)
                    if current is not None and not _same_grant(current, token):
                        token = current
                        continue
                    if current is not None:
                        await self.store.delete(owner, provider)
                    raise ReconnectNeeded(provider, f"{exc.error}: {exc.description or 'refresh refused'}") from None
                except OSError as exc:  # requests' connection errors are OSErrors
                    raise ProviderError(f"could not reach {DISPLAY.get(provider, provider)} to refresh the token "
                                        f"({exc.__class__.__name__}); try again shortly") from None
                return str(fresh["access_token"])
            raise ProviderError(f"the {DISPLAY.get(provider, provider)} grant was rotated twice while refreshing; "
                                "try again shortly")

    async def _ensure_active(self, cfg: OAuthClientConfig, owner: str, provider: str,
                             token: dict[str, Any]) -> dict[str, Any]:
        """Refresh ``token`` if it is (nearly) expired, saving the rotated grant through authlib's hook."""

        def persist(new_token: dict[str, Any], **_: Any) -> None:  # authlib's update hook, on the worker thread
            anyio.from_thread.run(self.store.save, owner, provider, dict(new_token))

        def ensure() -> dict[str, Any]:
            with _session(cfg, token=token, update_token=persist) as sess:
                sess.ensure_active_token(sess.token)
                return dict(sess.token)

        return await anyio.to_thread.run_sync(ensure)

    async def revoke(self, owner: str, provider: str) -> bool:
        """Revoke the grant at the provider where it has an endpoint; True when the provider confirmed."""
        cfg = self.configs(provider)
        token = await self.store.load(owner, provider)
        if cfg is None or cfg.revoke_url is None or token is None:
            return False
        revoke_url = cfg.revoke_url

        def revoke() -> bool:
            with _session(cfg, token=token) as sess:
                ok = True
                for kind in ("refresh_token", "access_token"):
                    if token.get(kind):
                        resp = sess.revoke_token(revoke_url, token=token[kind], token_type_hint=kind)
                        ok = ok and resp.status_code == 200
                return ok

        try:
            return await anyio.to_thread.run_sync(revoke)
        except (OAuthError, OSError) as exc:
            log.warning("revoking the %s token failed: %s", provider, exc)
            return False
