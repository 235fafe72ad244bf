"""Tokens are encrypted at rest: the SQLite files never contain them; the key file is private."""

from __future__ import annotations

import stat

from echotune_mcp.app import App
from echotune_mcp.providers.token_store import KEY_FILE_NAME, TokenStore, load_key

SECRET_ACCESS = "AQDsecretaccess_9f8e7d6c5b4a"
SECRET_REFRESH = "AQCrefreshsecret_1a2b3c4d5e6f"


async def test_no_plaintext_token_in_database_files(settings):
    async with App(settings) as app:
        store = TokenStore(app.storage.collection("tokens"), load_key(None, settings.data_dir))
        await store.save("local", "spotify", {"access_token": SECRET_ACCESS, "refresh_token": SECRET_REFRESH,
                                              "expires_at": 2_000_000_000, "scope": "playlist-read-private"})
        await store.save("user:bob", "spotify", {"access_token": "bobtoken", "refresh_token": "bobrefresh"})
        assert (await store.load("local", "spotify"))["refresh_token"] == SECRET_REFRESH
        meta = await store.metadata("local", "spotify")
        assert meta["has_refresh_token"] and meta["scope"] == "playlist-read-private"
    dump = b"".join(p.read_bytes() for p in settings.data_dir.rglob("*") if p.is_file())
    assert dump, "nothing was written"
    for secret in (SECRET_ACCESS, SECRET_REFRESH, "bobtoken"):
        assert secret.encode() not in dump
    key = settings.data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


async def test_ciphertext_is_bound_to_owner_and_key(settings):
    async with App(settings) as app:
        coll = app.storage.collection("tokens")
        store = TokenStore(coll, load_key(None, settings.data_dir))
        await store.save("local", "spotify", {"access_token": "a"})
        assert await store.load("user:eve", "spotify") is None
        # a changed secret makes old tokens unreadable rather than wrong
        other = TokenStore(coll, load_key("another secret", settings.data_dir))
        assert await other.load("local", "spotify") is None
        assert await store.delete("local", "spotify") and await store.load("local", "spotify") is None


def test_secret_key_derivation_is_stable(tmp_path):
    assert load_key("s3cret", tmp_path) == load_key("s3cret", tmp_path) != load_key("other", tmp_path)
    assert not (tmp_path / KEY_FILE_NAME).exists()


def test_provider_settings_from_env(monkeypatch):
    from echotune_mcp.config import Settings

    monkeypatch.setenv("ECHOTUNE_SPOTIFY_API_BASE", "http://127.0.0.1:9/v1/")
    monkeypatch.setenv("ECHOTUNE_SPOTIFY_AUTH_BASE", "http://127.0.0.1:9")
    monkeypatch.setenv("ECHOTUNE_SPOTIFY_TOKEN", "tok")
    monkeypatch.setenv("ECHOTUNE_YTMUSIC_API_BASE", "http://127.0.0.1:8")
    monkeypatch.setenv("ECHOTUNE_RATE_LIMIT_CAP_S", "5")
    monkeypatch.setenv("ECHOTUNE_PROVIDER_DEADLINE_S", "12.5")
    s = Settings.from_env()
    assert s.provider_deadline_s == 12.5
    assert s.spotify_api_base == "http://127.0.0.1:9/v1" and s.spotify_auth_base == "http://127.0.0.1:9"
    assert s.spotify_token == "tok" and s.ytmusic_api_base == "http://127.0.0.1:8" and s.rate_limit_cap_s == 5
