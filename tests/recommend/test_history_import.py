"""Listening history in (issue #14, item 1): every format, wrong formats, malformed rows, re-imports, 100k events
in bounded memory, owner scoping, the tool end to end and the CLI."""

from __future__ import annotations

import asyncio
import base64
import csv
import io
import json
import os
import subprocess
import sys
import time
import tracemalloc
import uuid
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from echotune_mcp.jobs import JobCancelled
from echotune_mcp.recommend.history import HistoryFileError, JsonArrayReader, resolve_format
from echotune_mcp.recommend.importer import bytes_source, import_history, open_sources, path_source
from echotune_mcp.storage import open_storage

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
URI = "spotify:track:{:0>22}"


# -- realistic files, written with the field names each service uses ----------------------------------------
def spotify_account_rows() -> list[dict]:
    return [
        {"endTime": "2023-11-14 22:13", "artistName": "Radiohead", "trackName": "Airbag", "msPlayed": 283_500},
        {"endTime": "2023-11-14 22:18", "artistName": "Radiohead", "trackName": "Paranoid Android", "msPlayed": 383_000},
        {"endTime": "2023-11-15 08:02", "artistName": "Björk", "trackName": "Jóga", "msPlayed": 12_500},
    ]


def spotify_extended_rows() -> list[dict]:
    def row(ts, track, artist, album, uri, ms, reason_end="trackdone", skipped=False, **extra):
        base = {"ts": ts, "username": "someone", "platform": "Android OS 14 API 34 (Google, Pixel 8)",
                "ms_played": ms, "conn_country": "DE", "ip_addr": "203.0.113.7", "user_agent_decrypted": None,
                "master_metadata_track_name": track, "master_metadata_album_artist_name": artist,
                "master_metadata_album_album_name": album, "spotify_track_uri": uri, "episode_name": None,
                "episode_show_name": None, "spotify_episode_uri": None, "reason_start": "trackdone",
                "reason_end": reason_end, "shuffle": False, "skipped": skipped, "offline": False,
                "offline_timestamp": 0, "incognito_mode": False}
        return {**base, **extra}

    return [
        row("2023-11-14T22:13:20Z", "Airbag", "Radiohead", "OK Computer", URI.format(1), 284_000),
        row("2023-11-14T22:18:05Z", "Karma Police", "Radiohead", "OK Computer", URI.format(2), 9_000, "fwdbtn", True),
        row("2023-11-15T07:00:00Z", None, None, None, None, 1_500_000, episode_name="Episode 12",
            episode_show_name="A Show", spotify_episode_uri="spotify:episode:" + "e" * 22),
        row("2023-11-15T08:00:00Z", "Baby Shark", "Pinkfong", "Pinkfong Animal Songs", URI.format(9), 80_000,
            incognito_mode=True),
    ]


def listenbrainz_lines() -> list[dict]:
    return [
        {"listened_at": T0, "recording_msid": "9c1e0b3a-5d38-4c6e-9a41-3b0d7c1f2a11", "user_name": "someone",
         "track_metadata": {"artist_name": "Portishead", "track_name": "Roads", "release_name": "Dummy",
                            "additional_info": {"spotify_id": "https://open.spotify.com/track/" + "3" * 22,
                                                "isrc": "GBAAN9400012", "duration_ms": 305000},
                            "mbid_mapping": {"recording_mbid": "3f5b7f3e-2a7c-4e36-9c43-1d0b8b7a9d10",
                                             "artist_mbids": ["8f6bd1e4-fbe1-4f50-aa9b-94c450ec0f11"]}}},
        {"listened_at": T0 + 400, "track_metadata": {"artist_name": "Massive Attack", "track_name": "Teardrop",
                                                     "release_name": "Mezzanine", "additional_info": {}}},
    ]


LASTFM_CSV = ('"Daft Punk","Discovery","One More Time","31 Jan 2021 14:05"\n'
              '"Daft Punk","Discovery","Aerodynamic","31 Jan 2021 14:10"\n'
              '"Sigur Rós","Ágætis byrjun","Svefn-g-englar","01 Feb 2021 09:00"\n')
TSV = "user\titem\tweight\ttimestamp\nu1\tartist:289\t3\t1700000000\nu1\tartist:72\t1.5\t1700000500\nu2\tartist:289\t7\n"


def write(path: Path, fmt: str) -> Path:
    if fmt == "spotify_account":
        path.write_text(json.dumps(spotify_account_rows(), indent=2))
    elif fmt == "spotify_extended":
        path.write_text(json.dumps(spotify_extended_rows()))
    elif fmt == "listenbrainz":
        path.write_text("".join(json.dumps(r) + "\n" for r in listenbrainz_lines()))
    elif fmt == "lastfm_csv":
        path.write_text(LASTFM_CSV, encoding="utf-8")
    else:
        path.write_text(TSV)
    return path


NAMES = {"spotify_account": "StreamingHistory_music_0.json", "spotify_extended": "Streaming_History_Audio_2023_0.json",
         "listenbrainz": "listens.jsonl", "lastfm_csv": "scrobbles.csv", "tsv": "plays.tsv"}
EXPECTED = {"spotify_account": (3, 0), "spotify_extended": (2, 2), "listenbrainz": (2, 0), "lastfm_csv": (3, 0),
            "tsv": (3, 0)}  # (events, ignored)


@pytest.fixture(params=["sqlite", "mongodb"])
async def storage(request, settings):
    """Both backends: the import's dedupe and undo rest on their insert_absent / delete_where."""
    if request.param == "mongodb":
        settings = replace(settings, mongodb_uri=request.getfixturevalue("mongo_uri"),
                           mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    st = await open_storage(settings)
    assert st.backend.name == request.param
    yield st
    await st.close()


@pytest.fixture
async def sqlite_storage(settings):
    st = await open_storage(settings)
    yield st
    await st.close()


async def run_import(storage, owner, paths, fmt=None, import_id="imp_test", **kw):
    sources = [path_source(Path(p), fmt) for p in paths]
    return await import_history(storage.listening, owner, sources, import_id, **kw)


async def events_of(storage, owner):
    out, cursor = [], None
    while True:
        page, cursor = await storage.listening.find(owner, limit=500, cursor=cursor)
        out += page
        if cursor is None:
            return out


# -- formats -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", list(NAMES))
async def test_each_format_is_detected_and_imported(storage, tmp_path, fmt):
    path = write(tmp_path / NAMES[fmt], fmt)
    assert path_source(path, None).format == fmt
    report = await run_import(storage, "alice", [path])
    events, ignored = EXPECTED[fmt]
    assert (report.read, report.imported, report.duplicates, report.ignored, report.malformed) == (
        events + ignored, events, 0, ignored, 0)
    assert report.by_format[fmt].imported == events and report.by_format[fmt].files == 1
    assert report.files[0].format == fmt and report.events_stored == events
    stored = await events_of(storage, "alice")
    assert len(stored) == events and {e.format for e in stored} == {fmt}
    assert all(e.import_id == "imp_test" and e.owner == "alice" for e in stored)
    assert report.time_range is not None


async def test_fields_are_kept_as_the_services_write_them(storage, tmp_path):
    await run_import(storage, "alice", [write(tmp_path / NAMES[f], f) for f in NAMES])
    by = {(e.format, e.track or e.item_key): e for e in await events_of(storage, "alice")}
    airbag = by[("spotify_extended", "Airbag")]
    assert airbag.played_at == T0 and airbag.spotify_uri == URI.format(1) and airbag.item_key == URI.format(1)
    assert airbag.ms_played == 284_000 and airbag.album == "OK Computer" and airbag.skipped is False
    karma = by[("spotify_extended", "Karma Police")]
    assert karma.skipped is True and karma.reason_end == "fwdbtn"
    assert by[("spotify_account", "Airbag")].played_at == 1_700_000_000 - 20  # "2023-11-14 22:13", minute precision
    roads = by[("listenbrainz", "Roads")]
    assert roads.recording_mbid == "3f5b7f3e-2a7c-4e36-9c43-1d0b8b7a9d10" and roads.isrc == "GBAAN9400012"
    assert roads.spotify_uri == "spotify:track:" + "3" * 22 and roads.played_at == T0
    assert by[("lastfm_csv", "Svefn-g-englar")].artist == "Sigur Rós"
    tsv = sorted((e.external_user, e.item_key, e.weight, e.played_at) for e in await events_of(storage, "alice")
                 if e.format == "tsv")
    assert tsv == [("u1", "item:artist:289", 3.0, T0), ("u1", "item:artist:72", 1.5, T0 + 500),
                   ("u2", "item:artist:289", 7.0, None)]
    # what is not needed is not kept: no IP address, country or device from the Spotify export
    raw = await storage.collection("listening_events").get("alice", airbag.id)
    assert "ip_addr" not in raw and "conn_country" not in raw and "platform" not in raw


# -- wrong formats ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("wanted,actual", [("spotify_extended", "lastfm_csv"), ("spotify_account", "spotify_extended"),
                                           ("listenbrainz", "tsv"), ("lastfm_csv", "spotify_account"),
                                           ("tsv", "listenbrainz")])
def test_a_file_of_another_format_is_refused_naming_the_format_expected(tmp_path, wanted, actual):
    path = write(tmp_path / NAMES[actual], actual)
    with pytest.raises(HistoryFileError) as err:
        path_source(path, wanted)
    message = str(err.value)
    assert f"is not {wanted} (" in message, message
    assert {"spotify_extended": "master_metadata_track_name", "spotify_account": "endTime",
            "listenbrainz": "listened_at", "lastfm_csv": "artist,album,track,date",
            "tsv": "user, item, weight"}[wanted] in message


def test_an_unknown_file_lists_the_formats_read(tmp_path):
    for content in (b"", b"\x89PNG\r\n\x1a\n\x00\x00", b'[{"foo": 1}]', b"just some words\n"):
        (tmp_path / "x").write_bytes(content)
        with pytest.raises(HistoryFileError, match="spotify_account .*spotify_extended .*listenbrainz .*lastfm_csv "
                                                   ".*tsv "):
            path_source(tmp_path / "x", None)


def test_an_empty_spotify_array_needs_its_name_or_format():
    assert resolve_format(b"[]", "StreamingHistory_music_3.json", None) == "spotify_account"
    assert resolve_format(b"[ ]\n", "export.json", "spotify_extended") == "spotify_extended"
    with pytest.raises(HistoryFileError, match="say which with format"):
        resolve_format(b"[]", "export.json", None)


# -- archives as the services send them --------------------------------------------------------------------
def spotify_zip(path: Path) -> Path:
    later = [{**spotify_extended_rows()[0], "ts": "2024-01-01T00:00:00Z"}]
    podcast = [{"endTime": "2023-11-14 22:13", "podcastName": "A Show", "episodeName": "Episode 12", "msPlayed": 5}]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        folder = "Spotify Extended Streaming History/"
        zf.writestr(folder + "ReadMeFirst_ExtendedStreamingHistory.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n\x00\x01")
        zf.writestr(folder + "Streaming_History_Audio_2023_0.json", json.dumps(spotify_extended_rows()))
        zf.writestr(folder + "Streaming_History_Audio_2023-2024_1.json", json.dumps(later))
        zf.writestr("Spotify Account Data/StreamingHistory_podcast_0.json", json.dumps(podcast))
        zf.writestr("Spotify Account Data/Userdata.json", json.dumps({"username": "someone", "country": "DE"}))
    return path


def listenbrainz_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("user.json", json.dumps({"user_id": 1, "username": "someone"}))
        zf.writestr("feedback.jsonl", json.dumps({"recording_msid": "x", "score": 1, "created": T0}) + "\n")
        for n, listen in enumerate(listenbrainz_lines()):
            zf.writestr(f"listens/2023/{11 + n}.jsonl", json.dumps(listen) + "\n")
    return path


async def test_an_export_archive_imports_its_history_files_and_lists_the_rest(storage, tmp_path):
    zipped = spotify_zip(tmp_path / "my_spotify_data.zip")
    sources, skipped = open_sources(zipped, "my_spotify_data.zip", None)
    assert [s.format for s in sources] == ["spotify_extended", "spotify_extended"]
    report = await import_history(storage.listening, "alice", sources, "imp_zip", skipped=skipped)
    assert (report.imported, report.ignored, len(report.files), report.skipped_files) == (3, 2, 2, 3)
    assert report.files[0].file == ("my_spotify_data.zip/Spotify Extended Streaming History/"
                                    "Streaming_History_Audio_2023-2024_1.json")
    reasons = {s.file.rsplit("/", 1)[-1]: s.reason for s in report.skipped}
    assert "binary" in reasons["ReadMeFirst_ExtendedStreamingHistory.pdf"]
    assert "podcast history" in reasons["StreamingHistory_podcast_0.json"]
    assert reasons["Userdata.json"].startswith("not a listening history")
    lb_sources, lb_skipped = open_sources(listenbrainz_zip(tmp_path / "lb.zip").read_bytes(), "lb.zip", "listenbrainz")
    assert [s.name for s in lb_sources] == ["lb.zip/listens/2023/11.jsonl", "lb.zip/listens/2023/12.jsonl"]
    assert sorted(s.file for s in lb_skipped) == ["lb.zip/feedback.jsonl", "lb.zip/user.json"]
    report = await import_history(storage.listening, "alice", lb_sources, "imp_lb")
    assert report.imported == 2 and report.by_format["listenbrainz"].files == 2
    with pytest.raises(HistoryFileError, match="ZIP archive with no tsv file in it .*Userdata.json: not tsv"):
        open_sources(zipped, "my_spotify_data.zip", "tsv")
    (tmp_path / "cut.zip").write_bytes(zipped.read_bytes()[:200])
    with pytest.raises(HistoryFileError, match="damaged ZIP archive"):
        open_sources(tmp_path / "cut.zip", "cut.zip", None)


# -- malformed rows ------------------------------------------------------------------------------------------
async def test_malformed_rows_are_counted_with_examples_and_never_stored(storage, tmp_path):
    rows = spotify_extended_rows()[:2] + [
        {"ts": "yesterday", "ms_played": 1, "master_metadata_track_name": "A",
         "master_metadata_album_artist_name": "B"},
        {"ts": "2023-11-14T22:30:00Z", "ms_played": -5, "master_metadata_track_name": "A",
         "master_metadata_album_artist_name": "B"},
        {"ts": "2023-11-14T22:31:00Z", "ms_played": 5, "master_metadata_track_name": "No artist",
         "master_metadata_album_artist_name": None},
        {"ts": "2023-11-14T22:32:00Z", "ms_played": 5},
        "not an object",
    ]
    path = tmp_path / "Streaming_History_Audio_2023_1.json"
    path.write_text(json.dumps(rows))
    report = await run_import(storage, "alice", [path])
    assert (report.read, report.imported, report.malformed) == (7, 2, 5)
    problems = {e.where: e.problem for e in report.files[0].malformed_examples}
    assert problems == {
        "element 2": "ts 'yesterday' is not a time (expected ISO 8601, '31 Jan 2021 14:05' or epoch seconds)",
        "element 3": "ms_played is -5, not a non-negative number of milliseconds",
        "element 4": "master_metadata_album_artist_name is missing or empty",
        "element 5": "master_metadata_track_name is missing",
        "element 6": "is a JSON string, not an object",
    }
    assert {e.track for e in await events_of(storage, "alice")} == {"Airbag", "Karma Police"}


async def test_malformed_lines_in_text_formats_and_examples_are_capped(storage, tmp_path):
    lines = [json.dumps(r) for r in listenbrainz_lines()]
    lines += ["{not json", json.dumps({"listened_at": "soon", "track_metadata": {}}), "",
              json.dumps({"track_metadata": {"artist_name": "x", "track_name": "y"}})] * 3
    (tmp_path / "lb.jsonl").write_text("\n".join(lines) + "\n")
    report = await run_import(storage, "alice", [tmp_path / "lb.jsonl"])
    assert (report.imported, report.malformed) == (2, 9)
    examples = report.files[0].malformed_examples
    assert len(examples) == 5 and examples[0].where == "line 3" and examples[0].problem.startswith("not JSON")
    assert examples[2].where == "line 6" and examples[2].problem == "listened_at is missing"
    csv_text = (LASTFM_CSV + 'Air,Moon Safari\n"x","y","","01 Feb 2021 09:00"\n'
                '"Air","Moon Safari","La femme d\'argent",""\n')
    (tmp_path / "s.csv").write_text(csv_text)
    report = await run_import(storage, "alice", [tmp_path / "s.csv"])
    assert (report.imported, report.malformed) == (3, 3)
    assert [(e.where, e.problem) for e in report.files[0].malformed_examples] == [
        ("line 4", "has 2 fields, expected 4 (artist,album,track,date)"), ("line 5", "track is empty"),
        ("line 6", "date is empty (a now-playing row has no time)")]


async def test_a_file_broken_part_way_stores_nothing_of_this_import(storage, tmp_path):
    first = write(tmp_path / "StreamingHistory_music_0.json", "spotify_account")
    await run_import(storage, "alice", [first], import_id="imp_before")
    good = [{"endTime": f"2022-01-01 {i // 60 % 24:02d}:{i % 60:02d}", "artistName": f"A{i}", "trackName": "T",
             "msPlayed": 1000} for i in range(2500)]
    text = json.dumps(good)[:-1] + ', {"endTime": "2022-01-02 00:00", "artistName": "x" "trackName": 1}]'
    broken = tmp_path / "StreamingHistory_music_1.json"
    broken.write_text(text)
    with pytest.raises(HistoryFileError, match="invalid JSON .*element 2500.*after 2500 rows"):
        await run_import(storage, "alice", [broken], batch_size=1000)
    # the 2,000 events written in the first two batches were removed; the earlier import is untouched
    assert await storage.listening.count("alice") == 3
    assert await storage.listening.count("alice", {"import_id": "imp_before"}) == 3


async def test_a_cancelled_import_removes_what_it_stored(storage, tmp_path):
    rows = [{"endTime": f"2022-01-01 {i // 60 % 24:02d}:{i % 60:02d}", "artistName": f"A{i}", "trackName": "T",
             "msPlayed": 1000} for i in range(3000)]
    path = tmp_path / "StreamingHistory_music_0.json"
    path.write_text(json.dumps(rows))
    seen = []

    async def progress(fraction, message):
        seen.append(fraction)
        if len(seen) == 2:
            assert await storage.listening.count("alice") == 2000  # written batch by batch
            raise JobCancelled()

    with pytest.raises(JobCancelled):
        await run_import(storage, "alice", [path], progress=progress, batch_size=1000)
    assert await storage.listening.count("alice") == 0
    assert 0 < seen[0] < seen[1] < 1


# -- dedupe ----------------------------------------------------------------------------------------------------
async def test_reimporting_adds_nothing_and_an_overlapping_export_adds_only_the_new(storage, tmp_path):
    path = write(tmp_path / NAMES["spotify_extended"], "spotify_extended")
    first = await run_import(storage, "alice", [path], import_id="imp_1")
    again = await run_import(storage, "alice", [path], import_id="imp_2")
    assert (first.imported, first.duplicates) == (2, 0)
    assert (again.read, again.imported, again.duplicates, again.ignored) == (4, 0, 2, 2)
    assert again.events_stored == 2 == await storage.listening.count("alice")
    later = spotify_extended_rows() + [{**spotify_extended_rows()[0], "ts": "2023-11-16T10:00:00Z"}]
    later[0] = {**later[0], "spotify_track_uri": None}  # a later export that lost an id is still the same play
    path2 = tmp_path / "Streaming_History_Audio_2023_1.json"
    path2.write_text(json.dumps(later))
    report = await run_import(storage, "alice", [path2], import_id="imp_3")
    assert (report.imported, report.duplicates) == (1, 2)
    # the account export's times are whole minutes: two short plays of one track in a minute are two plays
    short = [{"endTime": "2023-11-14 22:13", "artistName": "Pinkfong", "trackName": "Baby Shark", "msPlayed": ms}
             for ms in (20_000, 31_000)]
    (tmp_path / "StreamingHistory_music_9.json").write_text(json.dumps(short))
    for n, imported in enumerate((2, 0)):
        report = await run_import(storage, "alice", [tmp_path / "StreamingHistory_music_9.json"], import_id=f"imp_s{n}")
        assert (report.imported, report.duplicates) == (imported, 2 - imported)
    # Spotify's account export (to the minute) and extended history (to the second) of the same plays
    account = [{"endTime": "2023-11-14 22:13", "artistName": "Radiohead", "trackName": "Airbag", "msPlayed": 284_000},
               {"endTime": "2023-11-14 22:18", "artistName": "Radiohead", "trackName": "Karma Police",
                "msPlayed": 9_000},
               {"endTime": "2023-11-16 09:00", "artistName": "Radiohead", "trackName": "Lucky", "msPlayed": 259_000}]
    (tmp_path / "StreamingHistory_music_5.json").write_text(json.dumps(account))
    report = await run_import(storage, "alice", [tmp_path / "StreamingHistory_music_5.json"], import_id="imp_acc")
    assert (report.imported, report.duplicates) == (1, 2)  # only "Lucky" was not in the extended history
    # a play repeated inside one file is stored once
    (tmp_path / "dup.tsv").write_text("u1\ta\t1\t1700000000\nu1\ta\t1\t1700000000\nu1\ta\t1\t1700000001\n")
    report = await run_import(storage, "alice", [tmp_path / "dup.tsv"], import_id="imp_4")
    assert (report.imported, report.duplicates) == (2, 1)


async def test_another_principal_never_sees_the_events(storage, tmp_path):
    path = write(tmp_path / NAMES["listenbrainz"], "listenbrainz")
    await run_import(storage, "alice", [path])
    assert await storage.listening.count("bob") == 0 and await events_of(storage, "bob") == []
    alice_ids = [e.id for e in await events_of(storage, "alice")]
    assert [await storage.listening.get("bob", i) for i in alice_ids] == [None, None]
    # bob's import of the same file is his own: new events, not "duplicates" of alice's
    report = await run_import(storage, "bob", [path])
    assert (report.imported, report.duplicates, report.events_stored) == (2, 0, 2)
    assert not set(alice_ids) & {e.id for e in await events_of(storage, "bob")}
    assert await storage.listening.delete_import("bob", "imp_test") == 2
    assert await storage.listening.count("alice") == 2


# -- scale -----------------------------------------------------------------------------------------------------
def write_extended(path: Path, n: int) -> None:
    """``n`` distinct plays in the layout Spotify writes (one object per line, every field present)."""
    with open(path, "w") as fh:
        fh.write("[\n")
        for i in range(n):
            ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(1_600_000_000 + 37 * i))
            row = {"ts": ts, "username": "someone", "platform": "Android OS 14", "ms_played": 1000 + i % 300_000,
                   "conn_country": "DE", "ip_addr": "203.0.113.7", "user_agent_decrypted": "unknown",
                   "master_metadata_track_name": f"Track {i % 5000}",
                   "master_metadata_album_artist_name": f"Artist {i % 700}",
                   "master_metadata_album_album_name": f"Album {i % 1200}",
                   "spotify_track_uri": URI.format(i % 5000), "episode_name": None, "episode_show_name": None,
                   "spotify_episode_uri": None, "reason_start": "trackdone", "reason_end": "trackdone",
                   "shuffle": i % 2 == 0, "skipped": i % 7 == 0, "offline": False, "offline_timestamp": 0,
                   "incognito_mode": False}
            fh.write(("," if i else "") + json.dumps(row) + "\n")
        fh.write("]\n")


async def test_100k_events_stream_in_bounded_memory(sqlite_storage, tmp_path):
    storage = sqlite_storage
    n = 100_000
    path = tmp_path / "Streaming_History_Audio_2020-2023_0.json"
    write_extended(path, n)
    size = path.stat().st_size
    assert size > 50e6
    tracemalloc.start()
    try:
        report = await run_import(storage, "alice", [path])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (report.read, report.imported, report.malformed) == (n, n, 0)
    # json.load of this file alone would hold several times its size; the import holds about one batch
    assert peak < 24e6, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.0f} MB file"
    # the time, without tracemalloc's overhead: another owner's import of the same file (all new for them)
    t0 = time.monotonic()
    report = await run_import(storage, "bob", [path])
    elapsed = time.monotonic() - t0
    assert (report.imported, report.duplicates) == (n, 0)
    assert elapsed < 60, f"{elapsed:.1f} s for {n} events"  # 2 shared cores; about 10 s when they are idle
    assert await storage.listening.count("alice") == n == await storage.listening.count("bob")
    print(f"100k events, {size / 1e6:.0f} MB: peak {peak / 1e6:.1f} MB (tracemalloc), {elapsed:.1f} s plain")


async def test_the_lastfm_2k_interactions_file_imports_whole(sqlite_storage):
    """Real data: hetrec2011 Last.fm-2k user_artists.dat (tab-separated userID, artistID, weight; CRLF lines)."""
    from tests.conftest import shared_path

    from echotune_mcp.recommend.history import event_id

    path = shared_path("data", "recsys", "hetrec2011_lastfm_2k", "user_artists.dat")
    report = await import_history(sqlite_storage.listening, "alice", [path_source(path, None)], "imp_lastfm2k")
    assert (report.files[0].format, report.read, report.imported, report.malformed) == ("tsv", 92_834, 92_834, 0)
    first_row = {"source": "tsv", "format": "tsv", "played_at": None, "external_user": "2", "item_key": "item:51"}
    stored = await sqlite_storage.listening.get("alice", event_id("alice", first_row))
    assert stored is not None and stored.weight == 13883 and stored.external_user == "2"


def test_the_array_reader_survives_any_chunking():
    elements = [{"a": i, "s": "x" * (i % 50), "n": [1.5, None, True]} for i in range(300)] + [12345678, "tail"]
    text = json.dumps(elements)
    for chunk in (1, 7, 64, 4096):
        assert list(JsonArrayReader(io.StringIO(text).read, chunk=chunk)) == elements
    with pytest.raises(HistoryFileError, match="longer than 100 characters"):
        list(JsonArrayReader(io.StringIO(json.dumps([{"a": "y" * 500}])).read, max_element=100, chunk=16))
    for broken in ("[1, 2", "[1 2]", "[1,]", "[1] x", '[{"a": }]'):
        with pytest.raises(HistoryFileError):
            list(JsonArrayReader(io.StringIO(broken).read, chunk=2))


# -- the tool ----------------------------------------------------------------------------------------------
def text_of(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


async def test_import_tool_end_to_end(make_client, settings, tmp_path):
    root = settings.allowed_roots[0]
    a = write(root / NAMES["spotify_extended"], "spotify_extended")
    b = write(root / NAMES["lastfm_csv"], "lastfm_csv")
    bad = root / "bad.jsonl"
    bad.write_text(json.dumps(listenbrainz_lines()[0]) + "\n{oops\n")
    async with make_client() as (client, app):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        tool = tools["import_listening_history"]
        assert tool.annotations.read_only_hint is False and tool.annotations.destructive_hint is False
        assert tool.annotations.idempotent_hint is True and tool.annotations.open_world_hint is False
        assert "result" in tool.output_schema["properties"]
        r = await client.call_tool("import_listening_history", {"paths": [str(a), str(b), str(bad)],
                                                                "wait_seconds": 20})
        assert not r.is_error, text_of(r)
        job = r.structured_content
        assert job["status"] == "succeeded", job
        res = job["result"]
        assert (res["read"], res["imported"], res["duplicates"], res["ignored"], res["malformed"]) == (9, 6, 0, 2, 1)
        assert {k: v["imported"] for k, v in res["by_format"].items()} == {
            "spotify_extended": 2, "lastfm_csv": 3, "listenbrainz": 1}
        assert res["files"][2]["malformed_examples"][0]["where"] == "line 2"
        assert res["files"][0]["ignored_reasons"] == {"podcast episode": 1, "private session (kept out of your "
                                                                               "taste, as Spotify does)": 1}
        assert res["time_range"] == {"first": "2021-01-31T14:05:00Z", "last": "2023-11-14T22:18:05Z"}
        assert res["import_id"] == job["job_id"] and res["events_stored"] == 6
        # again: nothing new
        again = (await client.call_tool("import_listening_history", {"paths": [str(a)]})).structured_content
        assert (again["result"]["imported"], again["result"]["duplicates"]) == (0, 2)
        # an upload
        data = base64.b64encode(write(tmp_path / "p.tsv", "tsv").read_bytes()).decode()
        up = await client.call_tool("import_listening_history", {"data_base64": data, "filename": "plays.tsv",
                                                                 "format": "tsv"})
        assert up.structured_content["result"]["imported"] == 3, text_of(up)
        assert await app.storage.listening.count("local") == 9
        zipped = base64.b64encode(spotify_zip(tmp_path / "my_spotify_data.zip").read_bytes()).decode()
        z = await client.call_tool("import_listening_history",
                                   {"data_base64": zipped, "filename": "my_spotify_data.zip"})
        res = z.structured_content["result"]
        assert (res["imported"], res["duplicates"], res["skipped_files"]) == (1, 2, 3), text_of(z)


async def test_a_cancelled_import_job_leaves_nothing_and_imports_run_one_at_a_time(make_client, settings):
    root = settings.allowed_roots[0]
    big = root / "Streaming_History_Audio_2020_0.json"
    write_extended(big, 30_000)
    small = write(root / NAMES["tsv"], "tsv")
    async with make_client() as (client, app):
        both = await asyncio.gather(*(client.call_tool("import_listening_history",
                                                       {"paths": [str(big)], "wait_seconds": 0}) for _ in range(2)))
        assert sorted(r.is_error for r in both) == [False, True]  # started together, only one runs
        job = next(r for r in both if not r.is_error).structured_content
        assert job["status"] in ("queued", "running"), job
        busy = await client.call_tool("import_listening_history", {"paths": [str(small)]})
        assert busy.is_error and job["job_id"] in text_of(busy) and "already running" in text_of(busy)
        deadline = time.monotonic() + 120
        while await app.storage.listening.count("local") == 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert await app.storage.listening.count("local") > 0  # batches are being written
        cancelled = await client.call_tool("cancel_job", {"job_id": job["job_id"]})
        assert cancelled.structured_content["status"] == "cancelled"
        # the work stops at its next batch and removes every event it stored
        while await app.storage.listening.count("local") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await app.storage.listening.count("local") == 0
        ok = await client.call_tool("import_listening_history", {"paths": [str(small)]})
        assert ok.structured_content["result"]["imported"] == 3, text_of(ok)


async def test_an_import_cut_off_by_a_server_stop_is_undone_by_the_next(make_client, settings):
    from echotune_mcp.storage.records import JobRecord, JobStatus

    root = settings.allowed_roots[0]
    acc = write(root / NAMES["spotify_account"], "spotify_account")
    tsv = write(root / NAMES["tsv"], "tsv")
    async with make_client() as (client, app):
        done = (await client.call_tool("import_listening_history", {"paths": [str(tsv)]})).structured_content
        # what a killed server leaves: an interrupted import job and the plays it had stored so far
        cut = await app.storage.jobs.insert(JobRecord(owner="local", tool="import_listening_history",
                                                      status=JobStatus.interrupted))
        sources = [path_source(acc, None)]
        await import_history(app.storage.listening, "local", sources, cut.id)
        assert await app.storage.listening.count("local") == 6
        r = (await client.call_tool("import_listening_history", {"paths": [str(acc)]})).structured_content
        assert r["status"] == "succeeded", r
        assert r["result"]["interrupted_imports_undone"] == 3
        assert (r["result"]["imported"], r["result"]["duplicates"]) == (3, 0)  # stored again, under this import
        assert await app.storage.listening.count("local", {"import_id": cut.id}) == 0
        assert await app.storage.listening.count("local", {"import_id": done["job_id"]}) == 3
        cut_now = await app.storage.jobs.get("local", cut.id)
        assert cut_now.result == {"undone": True, "removed_events": 3} and "removed" in cut_now.message
        again = (await client.call_tool("import_listening_history", {"paths": [str(tsv)]})).structured_content
        assert again["result"]["interrupted_imports_undone"] == 0 and again["result"]["duplicates"] == 3


async def test_import_tool_refuses_bad_input_before_any_job(make_client, settings, tmp_path):
    root = settings.allowed_roots[0]
    csv_file = write(root / "scrobbles.csv", "lastfm_csv")
    outside = write(tmp_path / "outside.csv", "lastfm_csv")
    latin1 = root / "latin1.csv"
    latin1.write_bytes('"Björk","Homogenic","Jóga","31 Jan 2021 14:05"\n'.encode("latin-1"))
    (root / "folder").mkdir()
    async with make_client(max_upload_bytes=10_000) as (client, app):
        cases = [
            ({"paths": [str(csv_file)], "format": "spotify_extended"},
             ["paths[0]", "is not spotify_extended (", "master_metadata_track_name", "Last.fm scrobble CSV"]),
            ({"paths": [str(outside)]}, ["paths[0]", "outside the allowed roots", "data_base64"]),
            ({"paths": ["relative.csv"]}, ["paths[0]", "not an absolute path", "ECHOTUNE_ALLOWED_ROOTS"]),
            ({"paths": [str(root / "x\x00.csv")]}, ["paths[0]", "NUL"]),
            ({"paths": [str(root / "folder")]}, ["paths[0]", "is not a file"]),
            ({"paths": [str(latin1)]}, ["paths[0]", "not UTF-8 (byte 3)"]),
            ({"paths": [str(csv_file), str(csv_file)]}, ["paths[1]", "already in the list"]),
            ({}, ["paths", "exactly one of paths or data_base64"]),
            ({"data_base64": "QQ==", "paths": [str(csv_file)]}, ["exactly one of"]),
            ({"data_base64": "QUJD"}, ["filename", "required"]),
            ({"data_base64": "@@@", "filename": "x.csv"}, ["data_base64", "not valid base64"]),
            ({"data_base64": base64.b64encode(b"\x89PNG\x00\x00").decode(), "filename": "x.png"},
             ["data_base64", "x.png is not a listening history", "lastfm_csv"]),
            ({"data_base64": "A" * 14_000, "filename": "x.csv"}, ["data_base64", "at most"]),
            ({"data_base64": "A" * 13_336, "filename": "x.csv"}, ["data_base64", "at most 10000 bytes"]),
            ({"paths": [str(csv_file)], "format": "csv"}, ["format"]),
        ]
        for arguments, needles in cases:
            r = await client.call_tool("import_listening_history", arguments)
            assert r.is_error, arguments
            for needle in needles:
                assert needle in text_of(r), (needle, text_of(r))
        assert (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []
        assert await app.storage.listening.count("local") == 0


# -- the CLI ---------------------------------------------------------------------------------------------------
def run_cli(*args, data_dir):
    env = {**os.environ, "ECHOTUNE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "echotune_mcp", "history", "import", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_history_import(tmp_path):
    data = tmp_path / "data"
    lb = write(tmp_path / "listens.jsonl", "listenbrainz")
    acc = write(tmp_path / "StreamingHistory_music_0.json", "spotify_account")
    ok = run_cli(str(lb), str(acc), data_dir=data)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert (report["read"], report["imported"], report["duplicates"], report["malformed"]) == (5, 5, 0, 0)
    assert set(report["by_format"]) == {"listenbrainz", "spotify_account"}
    assert "imported 5, duplicates 0" in ok.stderr
    again = run_cli(str(lb), "--format", "listenbrainz", data_dir=data)
    assert again.returncode == 0 and json.loads(again.stdout)["duplicates"] == 2
    wrong = run_cli(str(lb), "--format", "lastfm_csv", data_dir=data)
    assert wrong.returncode == 2 and "is not lastfm_csv (Last.fm scrobble CSV" in wrong.stderr and not wrong.stdout
    zipped = run_cli(str(spotify_zip(tmp_path / "my_spotify_data.zip")), data_dir=data)
    assert zipped.returncode == 0, zipped.stderr
    assert (json.loads(zipped.stdout)["imported"], json.loads(zipped.stdout)["skipped_files"]) == (3, 3)
    missing = run_cli(str(tmp_path / "nope.json"), data_dir=data)
    assert missing.returncode == 2 and "nope.json is not a file" in missing.stderr
    broken = tmp_path / "StreamingHistory_music_1.json"
    broken.write_text(json.dumps(spotify_account_rows())[:-1] + ", {]")
    failed = run_cli(str(broken), data_dir=data)
    assert failed.returncode == 1 and "invalid JSON" in failed.stderr and "nothing of it was kept" in failed.stderr
    listed = subprocess.run([sys.executable, "-m", "echotune_mcp", "jobs"], capture_output=True, text=True,
                            env={**os.environ, "ECHOTUNE_DATA_DIR": str(data)}, timeout=120)
    assert listed.stdout.count("import_listening_history") == 4 and "failed" in listed.stdout


def test_a_quoted_newline_keeps_the_csv_record_whole():
    # a quoted field with a newline inside is one record spanning two lines
    text = '"A","B","Line one\nline two","31 Jan 2021 14:05"\n'
    assert list(csv.reader(io.StringIO(text))) == [["A", "B", "Line one\nline two", "31 Jan 2021 14:05"]]
    source = bytes_source(text.encode(), "s.csv", None)
    from echotune_mcp.recommend.history import iter_rows

    rows = list(iter_rows(source.open(), source.format))
    assert len(rows) == 1 and rows[0].where == "lines 1-2" and rows[0].event["track"] == "Line one\nline two"


async def test_a_file_that_goes_away_or_is_corrupt_in_an_archive_fails_naming_it(sqlite_storage, tmp_path):
    path = write(tmp_path / NAMES["tsv"], "tsv")
    source = path_source(path, None)
    path.unlink()
    with pytest.raises(HistoryFileError, match="plays.tsv cannot be opened any more"):
        await import_history(sqlite_storage.listening, "alice", [source], "imp_gone")
    # an archive member whose bytes were damaged after the check: the CRC check fails part-way
    rows = [{"endTime": f"2022-01-01 {i // 60 % 24:02d}:{i % 60:02d}", "artistName": f"A{i}", "trackName": "T",
             "msPlayed": 1000} for i in range(3000)]
    zipped = tmp_path / "my_spotify_data.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("MyData/StreamingHistory_music_0.json", json.dumps(rows))
    sources, _ = open_sources(zipped, "my_spotify_data.zip", None)
    data = bytearray(zipped.read_bytes())
    at = data.index(b'"A2500"')
    data[at + 1:at + 6] = b"B2500"
    zipped.write_bytes(bytes(data))
    with pytest.raises(HistoryFileError, match="StreamingHistory_music_0.json could not be read to the end .*CRC"):
        await import_history(sqlite_storage.listening, "alice", sources, "imp_crc", batch_size=1000)
    assert await sqlite_storage.listening.count("alice") == 0
