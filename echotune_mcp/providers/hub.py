"""Per-App provider wiring: which credentials an owner has, connecting, disconnecting, and adapters.

The hub owns the pieces that outlive one tool call: the loopback callback listener and the
authorizations waiting on it. A connect starts a background wait (bounded by
``oauth_wait_seconds``) so the tool can return the URL at once and later calls can pick up the
result; the CLI waits on the same flow for a person at a terminal.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from ..app import App
from ..auth.audit import audit
from ..principal import LOCAL
from .base import DISPLAY, PROVIDERS, MusicProvider, ProviderError
from .oauth import (
    AuthorizationFailed,
    AuthRequest,
    CallbackListener,
    OAuthClientConfig,
    TokenKeeper,
    authorize,
    spotify_client_config,
    start_authorization,
)
from .token_store import TokenKeyring, TokenStore


class ConnectResult(BaseModel):
    provider: str
    status: Literal["connected", "pending", "not_configured", "failed"]
    authorization_url: str | None = Field(None, description="open this in a browser to grant access (status pending)")
    message: str
    waits_until: float | None = Field(None, description="epoch seconds after which the pending authorization lapses")


class ProviderStatus(BaseModel):
    provider: str
    connected: bool
    source: Literal["oauth", "env_token", "auth_file", "none"]
    refreshable: bool = Field(description="whether the server renews the access token itself")
    expires_at: float | None = None
    scope: str | None = None
    pending_authorization_url: str | None = None
    message: str


@dataclass
class _Pending:
    req: AuthRequest
    task: asyncio.Task[None]
    deadline: float
    error: str | None = None


class ProviderHub:
    def __init__(self, app: App, *, configs: dict[str, OAuthClientConfig] | None = None):
        self.app = app
        self.settings = app.settings
        self._configs_override = configs or {}
        self._keyring = TokenKeyring(self.settings.secret_key, self.settings.data_dir)  # opened on first use
        self._listeners: dict[int, CallbackListener] = {}
        self._pending: dict[tuple[str, str], _Pending] = {}

    # -- credentials ----------------------------------------------------------------------------
    def oauth_config(self, provider: str) -> OAuthClientConfig | None:
        if provider in self._configs_override:
            return self._configs_override[provider]
        return spotify_client_config(self.settings) if provider == "spotify" else None

    @property
    def keeper(self) -> TokenKeeper:
        return TokenKeeper(TokenStore(self.app.storage.collection("tokens"), self._keyring,
                                      self.app.storage.principal_keys), self.oauth_config)

    async def provider(self, owner: str, name: str) -> MusicProvider:
        """A ready adapter for ``owner``; raises NotConnected / ReconnectNeeded with what to do."""
        adapter = await self._adapter(owner, name)
        adapter.deadline_s = self.settings.provider_deadline_s  # every call ends within it, waits included
        return adapter

    async def _adapter(self, owner: str, name: str) -> MusicProvider:
        cap = self.settings.rate_limit_cap_s
        if name == "spotify":
            from .spotify import SpotifyProvider

            if self.settings.spotify_token and owner == LOCAL:
                return SpotifyProvider(self.settings.spotify_token, api_base=self.settings.spotify_api_base, cap_s=cap,
                                       on_unauthorized="ECHOTUNE_SPOTIFY_TOKEN is expired or invalid; set a fresh "
                                                       "token, or unset it and use connect_provider")
            token = await self.keeper.access_token(owner, "spotify")
            return SpotifyProvider(token, api_base=self.settings.spotify_api_base, cap_s=cap)
        if name == "ytmusic":
            from .ytmusic import YTMusicProvider

            return YTMusicProvider(auth_file=self._ytmusic_file(owner), client_id=self.settings.ytmusic_client_id,
                                   client_secret=self.settings.ytmusic_client_secret,
                                   api_base=self.settings.ytmusic_api_base, cap_s=cap)
        raise ProviderError(f"unknown provider {name!r}; valid providers are {', '.join(PROVIDERS)}")

    # -- connect --------------------------------------------------------------------------------
    async def connect(self, owner: str, provider: str, wait_s: float = 0.0) -> ConnectResult:
        if provider == "ytmusic":
            return self._ytmusic_connect(owner)
        if provider == "spotify" and self.settings.spotify_token and owner == LOCAL:
            return ConnectResult(provider=provider, status="connected",
                                 message="using the access token in ECHOTUNE_SPOTIFY_TOKEN (it is not refreshed)")
        cfg = self.oauth_config(provider)
        if cfg is None:
            return ConnectResult(provider=provider, status="not_configured",
                                 message="no Spotify client id is configured: the server's operator must set "
                                         "ECHOTUNE_SPOTIFY_CLIENT_ID (env or config file) with redirect URI "
                                         f"http://127.0.0.1:{self.settings.oauth_redirect_port}/callback registered")
        key = (owner, provider)
        pending = self._pending.get(key)
        if pending is None or pending.task.done():
            pending = await self._begin(owner, provider, cfg)
        try:
            await asyncio.wait_for(asyncio.shield(pending.task), max(0.0, wait_s))
        except TimeoutError:
            return ConnectResult(provider=provider, status="pending", authorization_url=pending.req.url,
                                 waits_until=pending.deadline,
                                 message=f"open authorization_url in a browser and approve; then call "
                                         f"connect_provider or providers_status again (waiting until "
                                         f"{time.strftime('%H:%M:%S', time.localtime(pending.deadline))})")
        except AuthorizationFailed as exc:
            self._pending.pop(key, None)
            return ConnectResult(provider=provider, status="failed", message=str(exc))
        self._pending.pop(key, None)
        return ConnectResult(provider=provider, status="connected", message=f"{DISPLAY[provider]} is connected")

    def has_pending(self, owner: str, provider: str) -> bool:
        pending = self._pending.get((owner, provider))
        return pending is not None and not pending.task.done()

    async def _begin(self, owner: str, provider: str, cfg: OAuthClientConfig) -> _Pending:
        listener = self._listeners.get(cfg.redirect_port)
        if listener is None:
            listener = self._listeners[cfg.redirect_port] = CallbackListener(cfg.redirect_port)
        req = await anyio.to_thread.run_sync(start_authorization, cfg)
        timeout = self.settings.oauth_wait_seconds

        async def complete() -> None:
            try:
                token = await authorize(req, listener, timeout)
                await self.keeper.save(owner, provider, token)
                await audit(self.app, "grant_added", principal=owner, provider=provider,
                            scope=token.get("scope"))
            finally:
                if listener.idle and self._listeners.get(cfg.redirect_port) is listener:
                    del self._listeners[cfg.redirect_port]
                    await anyio.to_thread.run_sync(listener.close)

        task = asyncio.create_task(complete(), name=f"oauth-{provider}")
        pending = _Pending(req=req, task=task, deadline=time.time() + timeout)

        def remember(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:  # retrieved here, shown by status
                pending.error = str(t.exception())

        task.add_done_callback(remember)
        self._pending[(owner, provider)] = pending
        return pending

    async def wait(self, owner: str, provider: str) -> ConnectResult:
        """Wait for a pending authorization to finish (the CLI, a person at a terminal)."""
        return await self.connect(owner, provider, wait_s=self.settings.oauth_wait_seconds + 5)

    def _ytmusic_file(self, owner: str) -> Path | None:
        """The operator's YouTube Music auth file is the operator's account: it serves the local user only."""
        return self.settings.ytmusic_auth_file if owner == LOCAL else None

    def _ytmusic_connect(self, owner: str) -> ConnectResult:
        path = self._ytmusic_file(owner)
        if owner != LOCAL:
            return ConnectResult(provider="ytmusic", status="not_configured",
                                 message="YouTube Music library access is not available to accounts on this server "
                                         "(the server's auth file is its operator's own account); search and "
                                         "radio work without it")
        if path and path.is_file():
            return ConnectResult(provider="ytmusic", status="connected",
                                 message=f"using the YouTube Music auth file {path}")
        return ConnectResult(provider="ytmusic", status="not_configured",
                             message="YouTube Music library access needs an auth file: a person runs "
                                     "`ytmusicapi browser` (or `ytmusicapi oauth`) and sets ECHOTUNE_YTMUSIC_AUTH_FILE"
                                     " to it. Search and radio work without it.")

    # -- status / disconnect --------------------------------------------------------------------
    async def status(self, owner: str) -> list[ProviderStatus]:
        out = []
        for provider in PROVIDERS:
            pending = self._pending.get((owner, provider))
            if provider == "ytmusic":
                res = self._ytmusic_connect(owner)
                out.append(ProviderStatus(provider=provider, connected=res.status == "connected",
                                          source="auth_file" if res.status == "connected" else "none",
                                          refreshable=res.status == "connected", message=res.message))
                continue
            if self.settings.spotify_token and owner == LOCAL:
                out.append(ProviderStatus(provider=provider, connected=True, source="env_token", refreshable=False,
                                          message="using ECHOTUNE_SPOTIFY_TOKEN as given: it is not refreshed; "
                                                  "when it expires calls fail until a new one is set"))
                continue
            meta = await self.keeper.store.metadata(owner, provider)
            waiting = pending.req.url if pending and not pending.task.done() else None
            if meta is None:
                msg = (pending.error if pending and pending.error else
                       "authorization pending: open pending_authorization_url" if waiting else
                       "not connected: call connect_provider")
                out.append(ProviderStatus(provider=provider, connected=False, source="none", refreshable=False,
                                          pending_authorization_url=waiting, message=msg))
                continue
            out.append(ProviderStatus(provider=provider, connected=True, source="oauth",
                                      refreshable=bool(meta.get("has_refresh_token")), expires_at=meta.get("expires_at"),
                                      scope=meta.get("scope"), pending_authorization_url=waiting,
                                      message="connected; the access token is renewed automatically"
                                      if meta.get("has_refresh_token") else "connected (no refresh token)"))
        return out

    async def disconnect(self, owner: str, provider: str) -> tuple[bool, bool]:
        """Revoke where possible and delete the stored grant; returns (revoked_at_provider, deleted_here)."""
        pending = self._pending.pop((owner, provider), None)
        if pending and not pending.task.done():
            pending.task.cancel()
        keeper = self.keeper
        revoked = await keeper.revoke(owner, provider)
        deleted = await keeper.store.delete(owner, provider)
        if deleted or revoked:
            await audit(self.app, "grant_removed", principal=owner, provider=provider, revoked_at_provider=revoked)
        return revoked, deleted

    async def aclose(self) -> None:
        for pending in self._pending.values():
            pending.task.cancel()
        for listener in self._listeners.values():
            listener.close()
        self._pending.clear()
        self._listeners.clear()
