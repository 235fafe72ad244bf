"""taste_profile (issue #14, item 4): exact tops, listening times in a non-UTC timezone, skip and discovery rates
on plays imported from realistic export files; owner scoping; no-history and bad-input messages; the PNG chart."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from echotune_mcp.errors import BadInput
from echotune_mcp.recommend.importer import import_history, path_source
from echotune_mcp.recommend.profile import NoHistory, build_profile, window
from echotune_mcp.storage import open_storage

TZ = "America/New_York"  # EST (UTC-5) in January: a play at 01:00 UTC on Sunday was Saturday evening there
WINDOW = {"since": "2024-01-01", "until": "2024-01-31", "timezone": TZ}
PNG = b"\x89PNG\r\n\x1a\n"


def extended_rows() -> list[dict]:
    """Spotify's extended streaming history, with every field Spotify writes (ts = when the play ended, UTC)."""
    def row(ts, track, artist, album, n, ms, reason_end="trackdone", skipped=False, **extra):
        base = {"ts": ts, "username": "someone", "platform": "Android OS 14 API 34 (Google, Pixel 8)",
                "ms_played": ms, "conn_country": "US", "ip_addr": "203.0.113.7", "user_agent_decrypted": None,
                "master_metadata_track_name": track, "master_metadata_album_artist_name": artist,
                "master_metadata_album_album_name": album, "spotify_track_uri": f"spotify:track:{n:0>22}",
                "episode_name": None, "episode_show_name": None, "spotify_episode_uri": None,
                "reason_start": "trackdone", "reason_end": reason_end, "shuffle": False, "skipped": skipped,
                "offline": False, "offline_timestamp": 0, "incognito_mode": False}
        return {**base, **extra}

    return [
        row("2023-06-01T12:00:00Z", "Airbag", "Radiohead", "OK Computer", 1, 284_000),
        row("2023-06-01T12:05:00Z", "Karma Police", "Radiohead", "OK Computer", 2, 263_000),
        # 2023-12-31 23:59 in New York: one minute before the window
        row("2024-01-01T04:59:00Z", "Roads", "Portishead", "Dummy", 3, 100_000),
        row("2024-01-05T03:30:00Z", "Airbag", "Radiohead", "OK Computer", 1, 284_000),  # Thu 22:30 NY
        row("2024-01-05T03:40:00Z", "Airbag", "Radiohead", "OK Computer", 1, 10_000, "fwdbtn", True),  # Thu 22:40
        row("2024-01-06T15:00:00Z", "Jóga", "Björk", "Homogenic", 4, 305_000, skipped=None),  # Sat 10:00
        row("2024-01-06T15:10:00Z", "Hyperballad", "Björk", "Post", 5, 20_000, "endplay", None),  # Sat 10:10
        row("2024-01-07T01:00:00Z", "Roads", "Portishead", "Dummy", 3, 302_000),  # Sat 20:00 NY (Sun 01:00 UTC)
        row("2024-01-10T12:00:00Z", "Karma Police", "Radiohead", "OK Computer", 2, 263_000),  # Wed 07:00
        row("2024-01-10T12:10:00Z", "Lucky", "Radiohead", "OK Computer", 6, 5_000, "clickrow", None),  # Wed 07:10
        row("2024-01-31T23:00:00Z", "Jóga", "Björk", "Homogenic", 4, 305_000),  # Wed 18:00, the last day
        row("2024-02-01T06:00:00Z", "Jóga", "Björk", "Homogenic", 4, 305_000),  # Feb 1 01:00 NY: after it
        row("2024-01-08T07:00:00Z", None, None, None, 0, 1_500_000, episode_name="Episode 12",
            episode_show_name="A Show", spotify_episode_uri="spotify:episode:" + "e" * 22, spotify_track_uri=None),
    ]


LASTFM = "artist,album,track,date\nPortishead,Dummy,Glory Box,20 Jan 2024 14:05\n"  # Sat 09:05 NY; no duration


def write_history(folder: Path) -> list[Path]:
    ext = folder / "Streaming_History_Audio_2023-2024_0.json"
    ext.write_text(json.dumps(extended_rows(), ensure_ascii=False, indent=1), encoding="utf-8")
    csv = folder / "scrobbles.csv"
    csv.write_text(LASTFM, encoding="utf-8")
    return [ext, csv]


async def import_files(storage, owner: str, paths: list[Path]) -> None:
    report = await import_history(storage.listening, owner, [path_source(p, None) for p in paths], "imp_profile")
    assert (report.imported, report.ignored, report.malformed) == (13, 1, 0)


@pytest.fixture
async def storage(settings):
    st = await open_storage(settings)
    yield st
    await st.close()


def grid_cells(profile: dict) -> dict[tuple[int, int], float]:
    return {(d, h): v for d, row in enumerate(profile["listening_times"]["hour_by_weekday"])
            for h, v in enumerate(row) if v}


def check_january(p: dict) -> None:
    """Everything the January window in New York must say, exactly."""
    assert p["window"] == {"period": "custom", "since": "2024-01-01T00:00:00-05:00",
                           "until": "2024-02-01T00:00:00-05:00", "timezone": TZ}
    assert p["history"] == {"events_stored": 13, "first_play": "2023-06-01T12:00:00Z",
                            "last_play": "2024-02-01T06:00:00Z", "undated_events": 0,
                            "by_source": {"spotify": 12, "lastfm": 1}, "non_play_signals": {}}
    assert p["totals"] == {"events": 9, "plays": 9, "listening_minutes": 24.9, "events_with_duration": 8,
                           "artists": 3, "tracks": 7, "undated_events_included": 0}
    assert [(a["artist"], a["plays"], a["listening_minutes"]) for a in p["top_artists_by_plays"]] == [
        ("Radiohead", 4, 9.37), ("Björk", 3, 10.5), ("Portishead", 2, 5.03)]
    assert p["top_artists_by_plays"][0]["share_of_plays"] == pytest.approx(0.4444)
    assert [a["artist"] for a in p["top_artists_by_time"]] == ["Björk", "Radiohead", "Portishead"]
    assert [(t["track"], t["plays"]) for t in p["top_tracks_by_plays"]] == [
        ("Jóga", 2), ("Airbag", 2), ("Roads", 1), ("Karma Police", 1), ("Hyperballad", 1), ("Lucky", 1),
        ("Glory Box", 1)]
    assert [t["track"] for t in p["top_tracks_by_time"]] == [  # Glory Box (Last.fm) has no duration
        "Jóga", "Roads", "Airbag", "Karma Police", "Hyperballad", "Lucky"]
    assert p["top_tracks_by_plays"][0]["spotify_uri"] == f"spotify:track:{4:0>22}"
    assert p["top_tracks_by_plays"][-1]["spotify_uri"] is None
    # Mon=0: Thu 22h x2, Sat 10h x2, Sat 20h, Sat 9h (Last.fm), Wed 7h x2, Wed 18h
    assert grid_cells(p) == {(3, 22): 2, (5, 10): 2, (5, 20): 1, (5, 9): 1, (2, 7): 2, (2, 18): 1}
    assert p["listening_times"]["by_weekday"] == [0, 0, 3, 2, 0, 4, 0]
    assert sum(p["listening_times"]["by_hour"]) == 9
    skip = p["skip_rate"]
    assert (skip["skipped"], skip["events_with_information"], skip["events_without_information"]) == (3, 8, 1)
    assert skip["rate"] == 0.375
    assert skip["by_basis"] == {"spotify_skipped_flag": 5, "reason_end": 2, "short_play": 1}
    assert "skipped flag" in skip["definition"] and "30 s" in skip["definition"]
    d = p["discovery"]  # Björk is new; Radiohead was heard in 2023 and Portishead a minute before the window
    assert (d["new_artists"], d["artists"], d["plays_of_new_artists"]) == (1, 3, 3)
    assert (d["artist_share"], d["play_share"]) == (0.3333, 0.3333)
    assert (d["new_tracks"], d["tracks"], d["track_share"]) == (4, 7, 0.5714)  # Jóga, Hyperballad, Lucky, Glory Box
    assert d["history_starts_inside_window"] is False
    assert p["tags"] == [] and "no" in p["tags_note"] and "guessed" in p["tags_note"]
    assert any("1 of 9 events record no duration" in n for n in p["notes"])


async def test_profile_of_imported_files_is_exact(storage, tmp_path):
    await import_files(storage, "alice", write_history(tmp_path))
    profile = await build_profile(storage.listening, "alice", window(None, **WINDOW))
    check_january(profile.model_dump(mode="json"))
    # the same plays in UTC fall into other hours and days: the 01:00 UTC Sunday play is Sunday here
    utc = (await build_profile(storage.listening, "alice", window(None, "2024-01-01", "2024-01-31"))).model_dump()
    assert grid_cells(utc)[(6, 1)] == 1 and (5, 20) not in grid_cells(utc)
    assert utc["totals"]["events"] == 10  # in UTC the 04:59Z Portishead play is inside January


async def test_named_periods_and_all_time(storage, tmp_path):
    await import_files(storage, "alice", write_history(tmp_path))
    now = 1706788800.0  # 2024-02-01T12:00:00Z: last_4_weeks starts 2024-01-04T12:00Z
    p = (await build_profile(storage.listening, "alice", window("last_4_weeks", None, None, now=now))).model_dump()
    assert p["window"]["period"] == "last_4_weeks" and p["totals"]["events"] == 10
    # Björk and Radiohead 4 plays each; Björk's are longer
    assert [(a["artist"], a["plays"]) for a in p["top_artists_by_plays"]] == [
        ("Björk", 4), ("Radiohead", 4), ("Portishead", 2)]
    everything = (await build_profile(storage.listening, "alice", window("all_time", None, None), top=2)).model_dump()
    assert everything["discovery"] is None and any("all_time" in n for n in everything["notes"])
    assert [(a["artist"], a["plays"]) for a in everything["top_artists_by_plays"]] == [("Radiohead", 6), ("Björk", 4)]
    assert everything["totals"]["events"] == 13
    # a period with no plays says what the history covers
    later = await build_profile(storage.listening, "alice", window("last_year", None, None, now=now + 3 * 365 * 86400))
    assert later.totals.events == 0 and any("2023-06-01T12:00:00Z" in n for n in later.notes)


async def test_another_principal_sees_nothing_of_the_profile(storage, tmp_path):
    await import_files(storage, "alice", write_history(tmp_path))
    with pytest.raises(NoHistory, match="import_listening_history first"):
        await build_profile(storage.listening, "bob", window(None, **WINDOW))
    (tmp_path / "bob.csv").write_text("artist,album,track,date\nSade,Diamond Life,Smooth Operator,2 Jan 2024 10:00\n")
    report = await import_history(storage.listening, "bob", [path_source(tmp_path / "bob.csv", None)], "imp_bob")
    assert report.imported == 1
    bob = await build_profile(storage.listening, "bob", window("all_time", None, None))
    assert [a.artist for a in bob.top_artists_by_plays] == ["Sade"] and bob.history.events_stored == 1
    alice = await build_profile(storage.listening, "alice", window("all_time", None, None))
    assert "Sade" not in {a.artist for a in alice.top_artists_by_plays} and alice.history.events_stored == 13


@pytest.mark.parametrize(("args", "field"), [
    ({"period": None, "since": None, "until": None, "timezone": "Mars/Olympus_Mons"}, "timezone"),
    ({"period": None, "since": None, "until": None, "timezone": "../../etc/passwd"}, "timezone"),
    ({"period": "yesterday", "since": None, "until": None}, "period"),
    ({"period": "last_year", "since": "2024-01-01", "until": None}, "period"),
    ({"period": None, "since": "2024-02-30", "until": None}, "since"),
    ({"period": None, "since": "2024-03-01", "until": "2024-02-01"}, "until"),
])
def test_bad_window_is_refused_naming_the_field(args, field):
    with pytest.raises(BadInput) as err:
        window(**args)
    assert err.value.field == field and f"invalid {field}" in str(err.value)


def text_of(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


async def test_taste_profile_tool_end_to_end(make_client, settings, monkeypatch):
    paths = write_history(settings.allowed_roots[0])
    async with make_client() as (client, app):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["taste_profile"].annotations.read_only_hint is True
        empty = await client.call_tool("taste_profile", {})
        assert empty.is_error and "import_listening_history first" in text_of(empty)
        assert "spotify_extended" in text_of(empty) and "lastfm_csv" in text_of(empty)

        job = (await client.call_tool("import_listening_history", {"paths": [str(p) for p in paths],
                                                                   "wait_seconds": 25})).structured_content
        assert job["status"] == "succeeded" and job["result"]["imported"] == 13

        r = await client.call_tool("taste_profile", WINDOW)
        assert not r.is_error, text_of(r)
        check_january(r.structured_content)
        link = [b for b in r.content if b.type == "resource_link"]
        assert [b.mime_type for b in link] == ["image/png"]
        assert link[0].uri == r.structured_content["chart_uri"]
        assert "timezone=America%2FNew_York" in link[0].uri and "since=2024-01-01" in link[0].uri

        png = await client.read_resource(link[0].uri)
        data = base64.b64decode(png.contents[0].blob)
        assert data.startswith(PNG) and len(data) > 10_000 and png.contents[0].mime_type == "image/png"
        plain = await client.read_resource("echotune://listening/profile.png")
        assert base64.b64decode(plain.contents[0].blob).startswith(PNG)

        for arguments, needle in [({"timezone": "Mars/Olympus_Mons"}, "invalid timezone"),
                                  ({"period": "yesterday"}, "period"),
                                  ({"period": "all_time", "since": "2024-01-01"}, "invalid period"),
                                  ({"since": "2024-02-30"}, "invalid since"),
                                  ({"since": "1/2/2024"}, "since"),
                                  ({"top": 0}, "top")]:
            bad = await client.call_tool("taste_profile", arguments)
            assert bad.is_error and needle in text_of(bad), (arguments, text_of(bad))
        with pytest.raises(Exception, match="timezone"):
            await client.read_resource("echotune://listening/profile.png?timezone=Nowhere%2FAtAll")

        # another principal, through the same tool: none of alice's plays, told to import first
        monkeypatch.setattr("echotune_mcp.toolsets.listening.current_principal", lambda: "user:bob")
        other = await client.call_tool("taste_profile", WINDOW)
        assert other.is_error and "import_listening_history first" in text_of(other)
        assert "Radiohead" not in text_of(other)
        with pytest.raises(Exception, match="import_listening_history first"):
            await client.read_resource(link[0].uri)


async def test_profile_memory_does_not_grow_with_the_number_of_plays(storage, tmp_path):
    """Events are read a page at a time: 6x the plays (of the same 300 items) costs no more memory."""
    import tracemalloc

    peaks = []
    for owner, n in (("small", 2_000), ("large", 12_000)):
        path = tmp_path / f"{owner}.tsv"
        path.write_text("".join(f"u1\tsong{i % 300}\t1\t{1_700_000_000 + 60 * i}\n" for i in range(n)))
        report = await import_history(storage.listening, owner, [path_source(path, None)], f"imp_{owner}")
        assert report.imported == n
        await build_profile(storage.listening, owner, window("all_time", None, None))  # warm caches first
        tracemalloc.start()
        try:
            profile = await build_profile(storage.listening, owner, window("all_time", None, None))
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert profile.totals.events == n and profile.totals.tracks == 300 and profile.totals.artists == 0
        assert profile.top_tracks_by_plays[0].plays == -(-n // 300)
    assert peaks[1] < peaks[0] + 1.5e6, f"peak {peaks[0] / 1e6:.1f} MB for 2k plays, {peaks[1] / 1e6:.1f} MB for 12k"
