"""Issue #13 item 7, secrets and grants: refresh once per grant, never lose a good grant, private files,
a stretched passphrase with one clear error when it changes, and bounded waits on rate limits.

Everything runs against real loopback servers: the authlib authorization server in
tests/providers/authserver.py (rotating refresh tokens) and small scripted HTTP APIs.
"""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import threading
import time
from dataclasses import replace
from pathlib import Path

import anyio
import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from echotune_mcp.app import App
from echotune_mcp.config import Settings
from echotune_mcp.licensing.keys import salt_path, signing_key
from echotune_mcp.providers.cli import auth_main
from echotune_mcp.providers.hub import ProviderHub
from echotune_mcp.providers.token_store import (
    KEY_CHECK_ID,
    KEY_CHECK_OWNER,
    SecretKeyError,
    TokenStore,
    preflight_secrets,
    token_doc_id,
)
from tests.providers.authserver import CLIENT_ID
from tests.providers.oauth_fixtures import auth_server, cfg, port  # noqa: F401  (fixtures)
from tests.providers.test_oauth import _connect


def _expired(token: dict) -> dict:
    return {**token, "expires_at": int(time.time()) - 10}


# -- one refresh per grant ----------------------------------------------------------------------
async def test_parallel_calls_needing_a_refresh_refresh_once(settings, cfg, auth_server):
    """Eight tool calls at once with an expired token: one refresh request, every call gets the new token."""
    token = await _connect(cfg)
    async with App(settings) as app:
        hub = ProviderHub(app, configs={"spotify": cfg})
        other = ProviderHub(app, configs={"spotify": cfg})  # e.g. a second toolset build in the same process
        await hub.keeper.save("local", "spotify", _expired(token))
        calls = [h.provider("local", "spotify") for h in (hub, other) for _ in range(4)]
        results = await asyncio.gather(*calls, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert not errors, errors
        stored = await hub.keeper.store.load("local", "spotify")
    assert auth_server.refreshes == 1
    assert {r._sp._auth for r in results} == {stored["access_token"]} != {token["access_token"]}
    assert not auth_server.db.token_by("refresh_token", stored["refresh_token"]).revoked


async def test_rotation_by_another_process_never_deletes_the_good_grant(settings, cfg, auth_server):
    """Another process rotates the refresh token while ours is in flight with the old one.

    The server refuses ours (invalid_grant: the old token is spent), but the grant in the store is the
    other process's fresh one: it must be used, not deleted.
    """
    token = await _connect(cfg)
    rotated: dict = {}
    started = threading.Event()

    def other_process(refresh_token: str) -> None:
        if started.is_set():  # the other process's own refresh request comes through here too
            return
        started.set()
        # what a second echotune process does: refresh with the stored token, then save the new grant
        resp = requests.post(cfg.token_url, data={"grant_type": "refresh_token", "refresh_token": refresh_token,
                                                  "client_id": CLIENT_ID}, timeout=10)
        assert resp.status_code == 200, resp.text
        new = resp.json()
        new["expires_at"] = int(time.time()) + new["expires_in"]
        rotated.update(new)

        async def save() -> None:
            async with App(settings) as second:  # its own connection to the same data directory
                await ProviderHub(second, configs={"spotify": cfg}).keeper.save("local", "spotify", new)

        asyncio.run(save())

    async with App(settings) as app:
        hub = ProviderHub(app, configs={"spotify": cfg})
        await hub.keeper.save("local", "spotify", _expired(token))
        auth_server.before_refresh = other_process
        adapter = await hub.provider("local", "spotify")
        stored = await hub.keeper.store.load("local", "spotify")
    assert rotated, "the other process did not run"
    assert stored is not None and stored["refresh_token"] == rotated["refresh_token"]
    assert adapter._sp._auth == rotated["access_token"]
    assert not auth_server.db.token_by("refresh_token", rotated["refresh_token"]).revoked


async def test_a_really_dead_grant_is_still_removed(settings, cfg, auth_server):
    """The rotation guard must not keep a grant the provider revoked: that one is removed once."""
    async with App(settings) as app:
        hub = ProviderHub(app, configs={"spotify": cfg})
        await hub.keeper.save("local", "spotify", {"access_token": "old", "refresh_token": "rt_revoked",
                                                   "token_type": "Bearer", "expires_at": int(time.time()) - 1})
        from echotune_mcp.providers.base import ReconnectNeeded

        with pytest.raises(ReconnectNeeded, match="invalid_grant"):
            await hub.provider("local", "spotify")
        assert await hub.keeper.store.load("local", "spotify") is None



async def test_every_adapter_gets_the_configured_deadline(settings):
    async with App(replace(settings, provider_deadline_s=7.0)) as app:
        adapter = await ProviderHub(app).provider("local", "ytmusic")
    assert adapter.deadline_s == 7.0
    with pytest.raises(ValueError, match="ECHOTUNE_PROVIDER_DEADLINE_S"):
        replace(settings, provider_deadline_s=float("inf")).validate()


# -- private files ------------------------------------------------------------------------------
def _modes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}


async def _touch_everything(settings: Settings) -> None:
    """Make every kind of file the server keeps: database (+ WAL), blob, token key, token, signing key."""
    async with App(settings) as app:
        await app.storage.blobs.put(b"some audio")
        await ProviderHub(app).keeper.save("local", "spotify", {"access_token": "a"})
        signing_key(settings.data_dir, settings.secret_key)
        modes = _modes(settings.data_dir)
        assert any(name.endswith("-wal") for name in modes), modes  # checked while SQLite has them open
        _assert_private(modes)
    _assert_private(_modes(settings.data_dir))


def _assert_private(modes: dict[str, int]) -> None:
    loose = {name: oct(mode) for name, mode in modes.items()
             if mode & 0o077 or (name == "." and mode != 0o700)}
    assert not loose, f"group/other can reach: {loose}"


async def test_new_data_directory_is_0700_and_its_files_0600(tmp_path, settings):
    old = os.umask(0o022)  # the common default: without care, files come out 0644 and folders 0755
    try:
        data = tmp_path / "fresh" / "data"
        await _touch_everything(replace(settings, data_dir=data))
        assert stat.S_IMODE((tmp_path / "fresh").stat().st_mode) == 0o700  # a parent we created, too
    finally:
        os.umask(old)


async def test_an_existing_loose_data_directory_is_tightened(tmp_path, settings):
    old = os.umask(0o022)
    try:
        data = tmp_path / "data"
        data.mkdir(mode=0o755)
        (data / "echotune.sqlite3").touch(mode=0o644)  # as an older version left it
        (data / "blobs").mkdir(mode=0o755)
        data.chmod(0o755)
        await _touch_everything(replace(settings, data_dir=data))
    finally:
        os.umask(old)


async def test_a_folder_that_is_not_ours_is_not_chmodded(tmp_path, settings, caplog):
    """Pointing ECHOTUNE_DATA_DIR at a folder holding other things: we warn instead of changing its mode."""
    data = tmp_path / "shared-folder"
    data.mkdir()
    (data / "someone-elses-file.txt").write_text("hello")
    data.chmod(0o755)
    async with App(replace(settings, data_dir=data)):
        pass
    assert stat.S_IMODE(data.stat().st_mode) == 0o755
    assert "readable by other users" in caplog.text
    assert stat.S_IMODE((data / "echotune.sqlite3").stat().st_mode) == 0o600


# -- the passphrase: stretched, checked once at startup ------------------------------------------
TOKEN = {"access_token": "at_keep_me", "refresh_token": "rt_keep_me", "token_type": "Bearer",
         "expires_at": 4_000_000_000}


async def _save_token(settings: Settings) -> None:
    async with App(settings) as app:
        await ProviderHub(app).keeper.save("local", "spotify", TOKEN)


async def _load_token(settings: Settings) -> dict | None:
    async with App(settings) as app:
        return await ProviderHub(app).keeper.store.load("local", "spotify")


async def test_passphrase_is_stretched_with_scrypt_and_a_stored_salt(settings):
    s = replace(settings, secret_key="correct horse battery staple")
    await _save_token(s)
    async with App(s) as app:
        coll = app.storage.collection("tokens")
        check = await coll.get(KEY_CHECK_OWNER, KEY_CHECK_ID)
        doc = await coll.get("local", token_doc_id("local", "spotify"))
        data_key = await app.storage.principal_keys.get("local", create=False)  # the owner's layer inside it
    assert check["kdf"] == "scrypt" and check["n"] >= 2**15 and check["r"] >= 8
    salt = base64.b64decode(check["salt"])
    assert len(salt) == 16
    # the key really is scrypt(passphrase, stored salt): derived here independently of our code
    key = Scrypt(salt=salt, length=32, n=check["n"], r=check["r"], p=check["p"]).derive(b"correct horse battery staple")
    aad = b"echotune-token/v1|local|spotify"
    plain = AESGCM(key).decrypt(base64.b64decode(doc["nonce"]), base64.b64decode(doc["ciphertext"]), aad)
    assert b"rt_keep_me" not in plain and data_key.open(doc["id"], plain.decode())["token"]["refresh_token"] == \
        "rt_keep_me"
    assert (await _load_token(s))["access_token"] == "at_keep_me"


async def test_changed_secret_key_is_one_clear_startup_error(settings, capsys):
    await _save_token(replace(settings, secret_key="the original"))
    changed = replace(settings, secret_key="a typo")
    with pytest.raises(SecretKeyError, match="different ECHOTUNE_SECRET_KEY.*echotune-mcp auth reset --yes"):
        await preflight_secrets(changed)
    # the server refuses to start, with that one line
    code = await anyio.to_thread.run_sync(_serve_with, changed)
    assert code == 2
    err = capsys.readouterr().err
    assert "different ECHOTUNE_SECRET_KEY" in err and "Traceback" not in err
    # a tool call in a process that skipped the check gets the same message, not "not connected"
    with pytest.raises(SecretKeyError, match="different ECHOTUNE_SECRET_KEY"):
        await _load_token(changed)
    # nothing was touched: the original key still opens the token
    assert (await _load_token(replace(settings, secret_key="the original")))["refresh_token"] == "rt_keep_me"


async def test_missing_secret_key_is_one_clear_startup_error(settings):
    await _save_token(replace(settings, secret_key="the original"))
    with pytest.raises(SecretKeyError, match="ECHOTUNE_SECRET_KEY, which is not set"):
        await preflight_secrets(settings)


async def test_reset_lets_a_new_key_start_clean(settings, monkeypatch, capsys):
    await _save_token(replace(settings, secret_key="lost"))
    monkeypatch.setenv("ECHOTUNE_SECRET_KEY", "new one")
    assert await anyio.to_thread.run_sync(auth_main, ["reset", "--data-dir", str(settings.data_dir)]) == 2  # --yes
    assert await _load_token(replace(settings, secret_key="lost")) is not None  # unconfirmed: nothing deleted
    assert await anyio.to_thread.run_sync(auth_main, ["reset", "--yes", "--data-dir", str(settings.data_dir)]) == 0
    assert "deleted 1 stored provider token" in capsys.readouterr().out
    fresh = replace(settings, secret_key="new one")
    await preflight_secrets(fresh)
    assert await _load_token(fresh) is None


async def test_tokens_sealed_by_the_old_hkdf_key_are_migrated(settings):
    """Before this change a passphrase went through HKDF only; those tokens stay readable and are re-sealed."""
    old_key = HKDF(algorithm=hashes.SHA256(), length=32, salt=b"echotune-token-key/v1", info=b"tokens").derive(
        b"kept passphrase")
    async with App(settings) as app:
        await TokenStore(app.storage.collection("tokens"), old_key).save("local", "spotify", TOKEN)
    s = replace(settings, secret_key="kept passphrase")
    await preflight_secrets(s)
    assert (await _load_token(s))["refresh_token"] == "rt_keep_me"
    async with App(settings) as app:  # re-sealed: the old key no longer opens it
        assert await TokenStore(app.storage.collection("tokens"), old_key).load("local", "spotify") is None


async def test_key_file_tokens_move_under_a_newly_set_passphrase(settings):
    await _save_token(settings)  # no passphrase: the 0600 key file
    assert (await _load_token(settings))["access_token"] == "at_keep_me"
    s = replace(settings, secret_key="now with a passphrase")
    await preflight_secrets(s)
    assert (await _load_token(s))["access_token"] == "at_keep_me"
    with pytest.raises(SecretKeyError, match="not set"):  # and from now on the passphrase is required
        await preflight_secrets(settings)


def _serve_with(settings: Settings) -> int:
    from echotune_mcp.cli import main

    old = {k: os.environ.get(k) for k in ("ECHOTUNE_SECRET_KEY", "ECHOTUNE_DATA_DIR")}
    os.environ["ECHOTUNE_SECRET_KEY"] = settings.secret_key or ""
    os.environ["ECHOTUNE_DATA_DIR"] = str(settings.data_dir)
    try:
        return main(["serve"])
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# -- the content-credentials signing key -------------------------------------------------------
def _pem_opens(path: Path, password: bytes | None) -> bool:
    try:
        serialization.load_pem_private_key(path.read_bytes(), password=password)
        return True
    except (ValueError, TypeError):
        return False


def test_signing_key_pem_is_encrypted_under_the_stretched_passphrase(tmp_path):
    key = signing_key(tmp_path / "data", "pass phrase")
    salt = salt_path(key.path)
    assert stat.S_IMODE(salt.stat().st_mode) == 0o600 and len(salt.read_bytes()) == 16
    stretched = Scrypt(salt=salt.read_bytes(), length=32, n=2**15, r=8, p=1).derive(b"pass phrase").hex().encode()
    assert _pem_opens(key.path, stretched) and not _pem_opens(key.path, b"pass phrase")


async def test_an_older_signing_key_pem_is_reencrypted_and_a_changed_key_stops_startup(settings):
    from echotune_mcp.licensing import keys

    path = keys.key_path(settings.data_dir)
    path.parent.mkdir(parents=True)
    old = Ed25519PrivateKey.generate()  # as versions before the change wrote it: PBKDF2 at 2,048 rounds
    path.write_bytes(old.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"pass phrase")))
    keys._cache.clear()
    loaded = signing_key(settings.data_dir, "pass phrase")
    assert loaded.public_raw == old.public_key().public_bytes(serialization.Encoding.Raw,
                                                              serialization.PublicFormat.Raw)
    assert not _pem_opens(path, b"pass phrase") and salt_path(path).exists()
    keys._cache.clear()
    with pytest.raises(SecretKeyError, match="content-credentials key"):
        await preflight_secrets(replace(settings, secret_key="another phrase"))
