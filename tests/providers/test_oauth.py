"""OAuth 2.1 against a real authlib authorization server on loopback: PKCE, state, rotation, revocation."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest
import requests

from echotune_mcp.app import App
from echotune_mcp.providers.base import NotConnected, ReconnectNeeded
from echotune_mcp.providers.oauth import (
    AuthorizationFailed,
    CallbackListener,
    OAuthClientConfig,
    TokenKeeper,
    authorize,
    exchange_code,
    start_authorization,
)
from echotune_mcp.providers.token_store import TokenStore, load_key

from .oauth_fixtures import auth_server, cfg, port  # noqa: F401  (fixtures)


@pytest.fixture
async def keeper(settings, cfg):
    async with App(settings) as app:
        store = TokenStore(app.storage.collection("tokens"), load_key(None, settings.data_dir))
        yield TokenKeeper(store, lambda p: cfg if p == "spotify" else None)


def _browser(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def _callback_params(url: str) -> dict[str, str]:
    """Follow /authorize without following the redirect: the query the callback would get."""
    resp = requests.get(url, timeout=10, allow_redirects=False)
    assert resp.status_code == 302
    return {k: v[0] for k, v in parse_qs(urlsplit(resp.headers["Location"]).query).items()}


async def _connect(cfg: OAuthClientConfig) -> dict:
    listener = CallbackListener(cfg.redirect_port)
    try:
        req = start_authorization(cfg)
        task = asyncio.create_task(authorize(req, listener, 10))
        page = await anyio.to_thread.run_sync(_browser, req.url)
        assert page.status_code == 200 and "close this tab" in page.text
        return await task
    finally:
        listener.close()


async def test_happy_path_pkce_s256_and_loopback_redirect(cfg, auth_server):
    req = start_authorization(cfg)
    q = parse_qs(urlsplit(req.url).query)
    assert q["code_challenge_method"] == ["S256"] and len(q["code_challenge"][0]) == 43
    assert q["redirect_uri"] == [f"http://127.0.0.1:{cfg.redirect_port}/callback"]
    assert q["state"] == [req.state]
    token = await _connect(cfg)
    assert token["access_token"].startswith("at_") and token["refresh_token"].startswith("rt_")
    assert token["expires_at"] > time.time()


async def test_denied_consent(cfg, auth_server):
    auth_server.consent = False
    with pytest.raises(AuthorizationFailed, match="not granted"):
        await _connect(cfg)


async def test_wrong_state_is_rejected_by_listener_and_exchange(cfg, auth_server):
    req = start_authorization(cfg)
    params = _callback_params(req.url)
    with pytest.raises(AuthorizationFailed, match="wrong state"):
        exchange_code(req, {**params, "state": "forged"})
    listener = CallbackListener(cfg.redirect_port)
    try:
        waiting = asyncio.create_task(authorize(req, listener, 5))
        await asyncio.sleep(0.05)
        forged = await anyio.to_thread.run_sync(
            _browser, f"http://127.0.0.1:{cfg.redirect_port}/callback?code={params['code']}&state=forged")
        assert forged.status_code == 400
        assert not waiting.done()  # the real authorization is still waiting
        waiting.cancel()
    finally:
        listener.close()


async def test_reused_code_and_wrong_verifier_fail(cfg, auth_server):
    req = start_authorization(cfg)
    params = _callback_params(req.url)
    bad = type(req)(cfg=req.cfg, url=req.url, state=req.state, code_verifier=req.code_verifier[:-1] + "x")
    with pytest.raises(AuthorizationFailed, match="invalid_grant"):
        exchange_code(bad, params)
    req2 = start_authorization(cfg)
    params2 = _callback_params(req2.url)
    assert exchange_code(req2, params2)["access_token"]
    with pytest.raises(AuthorizationFailed, match="invalid_grant"):
        exchange_code(req2, params2)


async def test_expired_access_token_is_refreshed_and_rotation_persisted(cfg, auth_server, keeper):
    token = await _connect(cfg)
    await keeper.save("local", "spotify", {**token, "expires_at": int(time.time()) - 10})
    fresh = await keeper.access_token("local", "spotify")
    assert fresh != token["access_token"]
    stored = await keeper.store.load("local", "spotify")
    assert stored["access_token"] == fresh
    assert stored["refresh_token"] != token["refresh_token"]  # rotated, and saved through authlib's hook
    assert auth_server.db.token_by("refresh_token", token["refresh_token"]).revoked
    # a valid token is handed out as is, without a refresh
    assert await keeper.access_token("local", "spotify") == fresh


async def test_revoked_grant_means_reconnect_and_token_removed(cfg, auth_server, keeper):
    token = await _connect(cfg)
    await keeper.save("local", "spotify", token)
    assert await keeper.revoke("local", "spotify") is True
    assert auth_server.db.token_by("refresh_token", token["refresh_token"]).revoked
    await keeper.save("local", "spotify", {**token, "expires_at": int(time.time()) - 10})
    with pytest.raises(ReconnectNeeded, match="connect_provider"):
        await keeper.access_token("local", "spotify")
    assert await keeper.store.load("local", "spotify") is None
    with pytest.raises(NotConnected):
        await keeper.access_token("local", "spotify")


async def test_unknown_refresh_token_means_reconnect(cfg, auth_server, keeper):
    await keeper.save("local", "spotify", {"access_token": "old", "refresh_token": "rt_expired",
                                           "token_type": "Bearer", "expires_at": int(time.time()) - 1})
    with pytest.raises(ReconnectNeeded, match="invalid_grant"):
        await keeper.access_token("local", "spotify")
    assert await keeper.store.load("local", "spotify") is None
