"""The YouTube Music adapter against a loopback server replaying recorded youtubei responses.

ytmusicapi runs unmodified; only its requests session is ours, sending music.youtube.com traffic
to the loopback host (ECHOTUNE_YTMUSIC_API_BASE in production for proxies).
"""

from __future__ import annotations

import json

import pytest

from echotune_mcp.providers.base import NotConnected
from echotune_mcp.providers.ytmusic import YTMusicProvider
from tests.conftest import shared_path

HOME = b'<html><script>ytcfg.set({"VISITOR_DATA": "CgtWaXNpdG9yMTIz"});</script></html>'


@pytest.fixture
def replay(loopback_api):
    def start(fixture: str):
        data = shared_path("fixtures", "ytmusic", fixture).read_bytes()

        def handler(method, path, headers, raw):
            if method == "GET" and path.split("?")[0] == "/":
                return 200, {"Content-Type": "text/html"}, HOME
            body = json.loads(raw or b"{}")
            if path.startswith("/youtubei/v1/browse") and body.get("browseId", "").startswith("VL"):
                return 200, {}, data
            return 404, {}, {"error": {"code": 404, "message": "Requested entity was not found."}}

        return loopback_api(handler)

    return start


async def test_get_playlist_matches_ytmusicapi_expected_output(replay):
    api = replay("2024_03_get_playlist.json")
    expected = json.loads(shared_path("fixtures", "ytmusic", "expected_2024_03_get_playlist.json").read_text())
    yt = YTMusicProvider(api_base=api.base)
    pl = await yt.get_playlist(expected["id"], max_tracks=100)
    assert pl.id == expected["id"] and pl.name == expected["title"]
    assert pl.track_count == expected["trackCount"] and pl.description == expected["description"]
    assert pl.tracks and len(pl.tracks) <= 100
    for t in pl.tracks:
        assert t.provider == "ytmusic" and t.id and t.title and t.artists
        assert t.entry_id  # setVideoId: what removing one entry needs
        assert t.url == f"https://music.youtube.com/watch?v={t.id}"
    assert any(t.duration_ms for t in pl.tracks) and any(t.album for t in pl.tracks)
    browse = [r for r in api.requests if r[1].startswith("/youtubei/v1/browse")]
    assert browse and browse[0][2]["browseId"] == "VL" + expected["id"]
    await yt.aclose()


async def test_collaborative_playlist_parses(replay):
    api = replay("2025_10_get_playlist_collaborative.json")
    yt = YTMusicProvider(api_base=api.base)
    pl = await yt.get_playlist("PLEUijtLfpCOgI8LNOwiwvq0EJ8HAGj7dT", max_tracks=100)
    assert pl.name and pl.tracks and all(t.title for t in pl.tracks)
    await yt.aclose()


async def test_library_calls_need_the_auth_file(replay):
    api = replay("2024_03_get_playlist.json")
    yt = YTMusicProvider(api_base=api.base)
    with pytest.raises(NotConnected, match="connect_provider"):
        await yt.list_playlists(10)
    with pytest.raises(NotConnected):
        await yt.add_tracks("PL1", ["abcdefghijk"])
    assert not [r for r in api.requests if r[0] == "POST"]
