"""Curation tools through an in-memory MCP client: connection states, errors an agent can act on,
idempotency, batching, transfer matching, dedupe and reorder."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager
from dataclasses import replace

import anyio
import pytest
import requests
from mcp import Client

from echotune_mcp.app import App
from echotune_mcp.providers.curate import match_all
from echotune_mcp.providers.spotify import SpotifyProvider, to_track
from echotune_mcp.providers.token_store import TokenStore, load_key
from echotune_mcp.server import build_server
from echotune_mcp.toolsets import curation
from echotune_mcp.toolsets.base import using_app
from tests.conftest import free_port

from .authserver import CLIENT_ID, TestAuthServer
from .fake_spotify import FakeSpotify, sid, track


def text_of(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


@asynccontextmanager
async def curation_client(settings, **overrides):
    """A server (with every toolset, curation included) on ``settings`` with ``overrides``, and its App."""
    app = App(replace(settings, **overrides))
    async with app, Client(build_server(app), raise_exceptions=True) as client:
        yield client, app


async def call(client, tool, **args):
    r = await client.call_tool(tool, args)
    return r, (r.structured_content if not r.is_error else None)


CATALOGUE = [
    track("a1", "So What", "Miles Davis", "USSM15900113"),
    track("a2", "Blue in Green", "Miles Davis", "USSM15900114"),
    track("b1", "Take Five", "Dave Brubeck", "USSM15900200"),
    track("c1", "Naima", "John Coltrane", None, 262_000),
    track("d1", "Unfindable Song", "Nobody", "XX0000000001"),
]


@pytest.fixture
def fake(loopback_api):
    fs = FakeSpotify(CATALOGUE + [track(f"t{i:03d}", f"Filler {i}", f"Artist {i % 7}") for i in range(260)])
    api = loopback_api(fs)
    fs.base = api.base
    return fs


async def test_unconnected_provider_tells_agent_to_connect(settings):
    async with curation_client(settings) as (client, _):
        r, _ = await call(client, "search_tracks", provider="spotify", query="jazz")
        assert r.is_error and "connect_provider(provider='spotify')" in text_of(r)
        r, data = await call(client, "connect_provider", provider="spotify", wait_seconds=0)
        assert data["status"] == "not_configured" and "ECHOTUNE_SPOTIFY_CLIENT_ID" in data["message"]
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["remove_tracks"].annotations.destructive_hint is True
        assert tools["search_tracks"].annotations.read_only_hint is True
        assert tools["add_tracks"].annotations.open_world_hint is True


async def test_a_tool_called_directly_uses_the_apps_hub_and_storage(settings, fake):
    """Curation tools are plain functions: called inside using_app they use that App's one provider hub and
    storage, so a keyed retry through the server replays the direct call instead of adding twice."""
    pl1 = fake.make("pl1", [])
    ids = [sid("a1"), sid("b1")]
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, app):
        with using_app(app):
            before = await curation.get_playlist("spotify", pl1)
            first = await curation.add_tracks("spotify", pl1, ids, idempotency_key="direct-add-1")
        assert not before.tracks and first.changed == 2 and first.replayed is False
        r, again = await call(client, "add_tracks", provider="spotify", playlist_id=pl1, track_ids=ids,
                              idempotency_key="direct-add-1")
        assert not r.is_error, text_of(r)
        assert again["replayed"] is True and len(fake.playlists[pl1]) == 2


async def test_env_token_against_prism(settings, prism):
    async with curation_client(settings, spotify_token="ci-token", spotify_api_base=prism) as (client, _):
        r, data = await call(client, "search_tracks", provider="spotify", query="miles davis", limit=15)
        assert not r.is_error, text_of(r)
        assert data["tracks"] and data["tracks"][0]["provider"] == "spotify"
        r, data = await call(client, "providers_status")
        spotify = next(p for p in data["providers"] if p["provider"] == "spotify")
        assert spotify["source"] == "env_token" and spotify["refreshable"] is False
        assert "not refreshed" in spotify["message"]
        r, data = await call(client, "list_playlists", provider="spotify", limit=5)
        assert not r.is_error, text_of(r)


async def test_add_is_batched_and_idempotent(settings, fake):
    pl1 = fake.make("pl1", [])
    ids = [sid(f"t{i:03d}") for i in range(150)]
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, first = await call(client, "add_tracks", provider="spotify", playlist_id=pl1, track_ids=ids,
                              idempotency_key="add-150-tracks-1")
        assert not r.is_error, text_of(r)
        assert first["changed"] == 150 and first["replayed"] is False
        assert [w for w in fake.writes if w[0] == "POST"] == [("POST", pl1, 100), ("POST", pl1, 50)]
        r, again = await call(client, "add_tracks", provider="spotify", playlist_id=pl1, track_ids=ids,
                              idempotency_key="add-150-tracks-1")
        assert again["replayed"] is True and len(fake.playlists[pl1]) == 150
        r, _ = await call(client, "add_tracks", provider="spotify", playlist_id=pl1, track_ids=ids[:1],
                          idempotency_key="add-150-tracks-1")
        assert r.is_error and "idempotency_key" in text_of(r)


async def test_missing_playlist_is_a_clear_404(settings, fake):
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, _ = await call(client, "get_playlist", provider="spotify", playlist_id=sid("doesnotexist"))
        assert r.is_error and "404" in text_of(r) and "does not exist" in text_of(r)


async def test_expired_env_token_says_what_to_do(settings, fake):
    async with curation_client(settings, spotify_token="expired", spotify_api_base=fake.base) as (client, _):
        r, _ = await call(client, "search_tracks", provider="spotify", query="x")
        assert r.is_error and "ECHOTUNE_SPOTIFY_TOKEN" in text_of(r)


async def test_transfer_matching_isrc_then_fuzzy_and_misses(loopback_api):
    # the target catalogue: same recordings under other ids, Naima without ISRC, nothing for d1
    target = FakeSpotify([track("x1", "So What - Remastered", "Miles Davis", "USSM15900113"),
                          track("x2", "Take Five", "The Dave Brubeck Quartet", "USSM15900200"),
                          track("x3", "Naima (Live)", "John Coltrane", None, 263_000)])
    tapi = loopback_api(target)
    dst = SpotifyProvider("tok", api_base=tapi.base)
    outcomes = await match_all(dst, [to_track(t) for t in CATALOGUE[:1] + CATALOGUE[2:]], 0.75)
    by_src = {o.source.id: o for o in outcomes}
    a1, b1, c1 = by_src[sid("a1")], by_src[sid("b1")], by_src[sid("c1")]
    assert a1.matched and a1.match.method == "isrc" and a1.match.track.id == sid("x1")
    assert b1.match.method == "isrc" and b1.match.track.id == sid("x2")
    assert c1.matched and c1.match.method == "fuzzy" and c1.match.track.id == sid("x3")
    assert 0.75 <= c1.match.confidence < 1
    assert not by_src[sid("d1")].matched


async def test_transfer_tool_end_to_end(settings, fake):
    src = fake.make("src", ["a1", "b1", "d1"])
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, data = await call(client, "transfer_playlist", from_provider="spotify", playlist_id=src,
                              to_provider="spotify", name="Copy", idempotency_key="transfer-src-copy")
        assert not r.is_error, text_of(r)
        assert [m["match"]["id"] for m in data["matched"]] == [sid("a1"), sid("b1"), sid("d1")]
        assert all(m["method"] == "isrc" and m["confidence"] == 1.0 for m in data["matched"])
        assert data["unmatched"] == []
        assert fake.names(data["playlist"]["id"]) == ["a1", "b1", "d1"]
        r, again = await call(client, "transfer_playlist", from_provider="spotify", playlist_id=src,
                              to_provider="spotify", name="Copy", idempotency_key="transfer-src-copy")
        assert again["replayed"] is True and fake.created == 1


async def test_dedupe_and_reorder(settings, fake):
    pl = fake.make("pl", ["a1", "a2", "a1", "b1", "a2", "c1"])
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, data = await call(client, "dedupe_playlist", confirm=True, provider="spotify", playlist_id=pl)
        assert not r.is_error, text_of(r)
        assert data["changed"] == 2 and fake.names(pl) == ["a1", "a2", "b1", "c1"]
        r, data = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=pl, by="artist_spread")
        assert not r.is_error, text_of(r)
        order = fake.names(pl)
        assert sorted(order) == ["a1", "a2", "b1", "c1"]
        assert not any(order[i][0] == "a" and order[i + 1][0] == "a" for i in range(3))
        r, _ = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=pl, by="tempo")
        assert r.is_error and "features" in text_of(r)
        feats = {sid("a1"): {"tempo_bpm": 136}, sid("a2"): {"tempo_bpm": 60}, sid("b1"): {"tempo_bpm": 172},
                 sid("c1"): {"tempo_bpm": 90}}
        r, data = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=pl, by="tempo",
                             features=feats)
        assert fake.names(pl) == ["a2", "c1", "a1", "b1"]
        assert not [w for w in fake.writes if w[0] == "PUT"]  # moves only, never a rewrite
        r, _ = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=pl, order=[sid("a1")])
        assert r.is_error and "exactly" in text_of(r)


async def test_curate_proposes_then_creates(settings, fake):
    async with curation_client(settings, spotify_token="tok", spotify_api_base=fake.base) as (client, _):
        r, data = await call(client, "curate_playlist", provider="spotify", prompt="miles coltrane", length=3,
                             create=False)
        assert not r.is_error, text_of(r)
        assert data["playlist"] is None and 1 <= len(data["tracks"]) <= 3 and fake.created == 0
        r, data = await call(client, "curate_playlist", provider="spotify", prompt="miles coltrane", length=3,
                             idempotency_key="curate-miles-1")
        assert data["playlist"]["id"] == sid("new1")
        assert fake.playlists[sid("new1")] == [t["track"]["id"] for t in data["tracks"]]
        assert [t["position"] for t in data["tracks"]] == list(range(1, len(data["tracks"]) + 1))
        assert all(t["why"] and t["source"].startswith("provider:") for t in data["tracks"])
        assert data["model"] is None and any("recommender" in x for x in data["ignored"])


@pytest.fixture
def oauth_env(settings):
    port = free_port()
    srv = TestAuthServer([f"http://127.0.0.1:{port}/callback"])
    yield srv, {"spotify_client_id": CLIENT_ID, "spotify_auth_base": srv.base, "oauth_redirect_port": port,
                    "oauth_wait_seconds": 20}
    srv.close()


async def test_connect_flow_through_tools(settings, oauth_env, fake):
    srv, env = oauth_env
    async with curation_client(settings, spotify_api_base=fake.base, **env) as (client, app):
        r, data = await call(client, "connect_provider", provider="spotify", wait_seconds=0)
        assert data["status"] == "pending" and data["authorization_url"].startswith(srv.base + "/authorize?")
        page = await anyio.to_thread.run_sync(lambda: requests.get(data["authorization_url"], timeout=10))
        assert page.status_code == 200
        r, data = await call(client, "connect_provider", provider="spotify", wait_seconds=5)
        assert data["status"] == "connected", data
        r, data = await call(client, "providers_status")
        spotify = next(p for p in data["providers"] if p["provider"] == "spotify")
        assert spotify["connected"] and spotify["source"] == "oauth" and spotify["refreshable"]
        pl = fake.make("pl", ["a1"])
        r, data = await call(client, "get_playlist", provider="spotify", playlist_id=pl)
        assert not r.is_error, text_of(r)
        r, data = await call(client, "disconnect_provider", provider="spotify")
        assert data["removed_stored_token"] is True
        r, _ = await call(client, "get_playlist", provider="spotify", playlist_id=pl)
        assert r.is_error and "connect_provider" in text_of(r)
        from echotune_mcp.auth.audit import entries

        log = [(e.event, e.fields.get("provider")) for e in (await entries(app, "local"))[0]]
        grants = [x for x in log if x[0].startswith("grant_")]
        assert grants == [("grant_removed", "spotify"), ("grant_added", "spotify")]  # audited, newest first


async def test_expired_refresh_token_means_reconnect_and_removal(settings, oauth_env, fake):
    _, env = oauth_env
    async with curation_client(settings, spotify_api_base=fake.base, **env) as (client, app):
        store = TokenStore(app.storage.collection("tokens"), load_key(None, app.settings.data_dir))
        await store.save("local", "spotify", {"access_token": "stale", "refresh_token": "rt_long_gone",
                                              "token_type": "Bearer", "expires_at": int(time.time()) - 5})
        r, _ = await call(client, "search_tracks", provider="spotify", query="x")
        assert r.is_error and "reconnect" in text_of(r) and "connect_provider" in text_of(r)
        assert await store.load("local", "spotify") is None
