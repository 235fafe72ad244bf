"""The Spotify adapter against Prism serving Spotify's own OpenAPI spec: a request that breaks the
spec gets 422 (and would fail the test); paths the Feb-2026 API deprecated must never be called."""

from __future__ import annotations

import re

import pytest
import requests
import yaml

from echotune_mcp.providers.base import Playlist, ProviderError, Track
from echotune_mcp.providers.ordering import apply_moves, plan_moves
from echotune_mcp.providers.spotify import SpotifyProvider


@pytest.fixture(scope="module")
def deprecated_ops(spotify_spec) -> list[tuple[str, re.Pattern[str]]]:
    spec = yaml.safe_load(spotify_spec.read_text())
    out = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if isinstance(op, dict) and op.get("deprecated"):
                out.append((method.upper(), re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$")))
    return out


@pytest.fixture
def recorded():
    """A plain session (as the adapter uses) that records each request's method and path."""
    session = requests.Session()
    calls: list[tuple[str, str, int]] = []
    session.hooks["response"].append(
        lambda r, *a, **k: calls.append((r.request.method, requests.utils.urlparse(r.request.url).path, r.status_code)))
    return session, calls


@pytest.fixture
def spotify(prism, recorded):
    session, _ = recorded
    return SpotifyProvider("test-token", api_base=prism, session=session)


def _check(calls, deprecated_ops):
    assert calls, "no request reached Prism"
    for method, path, status in calls:
        assert status < 400, f"{method} {path} answered {status}"
        assert not any(m == method and rx.match(path) for m, rx in deprecated_ops), f"deprecated: {method} {path}"


async def test_search_pages_with_limit_at_most_10(spotify, recorded, deprecated_ops):
    tracks = await spotify.search_tracks("miles davis", 25)
    _, calls = recorded
    _check(calls, deprecated_ops)
    assert tracks and all(t.provider == "spotify" and t.title for t in tracks)
    assert all(c[1] == "/search" for c in calls)


async def test_reads(spotify, recorded, deprecated_ops):
    track = await spotify.get_track("11dFghVXANMlKmJXsNCbNl")
    assert track.isrc and track.duration_ms is not None and track.artists
    assert await spotify.top_tracks(60) is not None
    assert await spotify.saved_tracks(10) is not None
    assert await spotify.recent_tracks(10) is not None
    playlists = await spotify.list_playlists(20)
    assert playlists and playlists[0].id
    pl = await spotify.get_playlist("3cEYpjA9oz9GiPac4AsH4n", max_tracks=120)
    assert pl.id and pl.tracks
    full = await spotify.get_playlist("3cEYpjA9oz9GiPac4AsH4n")  # pages to the end: Prism's total is 4, 1 a page
    assert full.track_count == len(full.tracks) == 4 and full.snapshot_id
    assert all(t.kind == "local" for t in full.tracks)  # Prism's example item is a local file: kept, marked
    _, calls = recorded
    _check(calls, deprecated_ops)
    paths = {p for _, p, _ in calls}
    assert "/playlists/3cEYpjA9oz9GiPac4AsH4n/items" in paths and "/me/playlists" in paths


async def test_writes_use_items_endpoints_and_batch_by_100(spotify, recorded, deprecated_ops):
    created = await spotify.create_playlist("Night drive", "for the road", public=False, collaborative=True)
    assert created.id
    ids = [f"{i:022d}" for i in range(250)]
    assert await spotify.add_tracks("3cEYpjA9oz9GiPac4AsH4n", ids) == 250
    listing = Playlist(provider="spotify", id="3cEYpjA9oz9GiPac4AsH4n", name="x", snapshot_id="string",
                       tracks=[Track(provider="spotify", id=i, uri=f"spotify:track:{i}", title=i) for i in ids])
    assert await spotify.remove_entries(listing, list(range(0, 240, 2))) == 120  # by URI + position, 100 a request
    moves = plan_moves(listing.tracks[:6], [5, 0, 1, 2, 4, 3])
    assert apply_moves(list(range(6)), moves) == [5, 0, 1, 2, 4, 3]
    assert await spotify.move(listing.model_copy(update={"tracks": listing.tracks[:6]}), moves) == len(moves) == 2
    _, calls = recorded
    _check(calls, deprecated_ops)
    methods = [(m, p) for m, p, _ in calls]
    assert methods.count(("POST", "/playlists/3cEYpjA9oz9GiPac4AsH4n/items")) == 3  # 250 -> 3 batches
    assert methods.count(("DELETE", "/playlists/3cEYpjA9oz9GiPac4AsH4n/items")) == 2
    assert methods.count(("PUT", "/playlists/3cEYpjA9oz9GiPac4AsH4n/items")) == 2  # one reorder per move
    assert ("POST", "/me/playlists") in methods


async def test_bad_ids_are_refused_before_any_request(spotify, recorded):
    with pytest.raises(ProviderError, match="not a Spotify track id"):
        await spotify.add_tracks("3cEYpjA9oz9GiPac4AsH4n", ["not an id!"])
    for bad in ["../me", "3cEYpjA9oz9GiPac4AsH4n/../../me", "3cEYpjA9oz9GiPac4AsH4n?x=1", "p", "spotify:track:" + "a" * 22]:
        with pytest.raises(ProviderError, match="not a Spotify playlist id"):
            await spotify.get_playlist(bad)
    assert recorded[1] == []
