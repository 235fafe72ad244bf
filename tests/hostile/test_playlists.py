"""Issue 13 item 3: playlists never lose items.

Spotify runs against a stateful loopback server (tests/providers/fake_spotify.py: Prism cannot keep
state), YouTube Music against unmodified ytmusicapi talking to a loopback server that answers from
recorded youtubei shapes (tests/providers/fake_ytmusic.py). Every write path is checked for what it
leaves in the playlist, including a failure half way and the retry / restore that recovers.
"""

from __future__ import annotations

import time

import pytest

from echotune_mcp.providers.idempotency import LEASE_S, _doc_id, fingerprint, once
from tests.conftest import shared_path
from tests.providers.conftest import loopback_api  # noqa: F401 (the loopback server fixture)
from tests.providers.fake_spotify import FakeSpotify, sid, track
from tests.providers.fake_ytmusic import FakeYTMusic, auth_file, vid
from tests.providers.test_curation_tools import call, curation_client, text_of


CATALOGUE = [track(f"k{i:02d}", f"Song {i}", f"Artist {i % 9}", f"ISRC{i:08d}",
                   release=f"{1960 + i}-01-01") for i in range(60)]


@pytest.fixture
def spotify(loopback_api):
    fake = FakeSpotify(CATALOGUE)
    fake.base = loopback_api(fake).base
    return fake


@pytest.fixture
def ytm(loopback_api, tmp_path):
    fake = FakeYTMusic(shared_path("fixtures", "ytmusic", "2024_03_get_playlist.json"))
    fake.base = loopback_api(fake).base
    fake.auth = auth_file(tmp_path)
    return fake


def sp_env(fake):
    return {"spotify_token": "tok", "spotify_api_base": fake.base}


def yt_env(fake):
    return {"ytmusic_auth_file": fake.auth, "ytmusic_api_base": fake.base}


# -- Spotify ---------------------------------------------------------------------------------------
async def test_reorder_reads_past_5000_and_keeps_episodes_local_files_and_unavailable(settings, spotify):
    """Before: reads stopped at 5,000 and dropped non-tracks, then the playlist was overwritten."""
    entries = [f"k{i % 60:02d}" for i in range(5040)]
    entries[3], entries[10], entries[5030] = "local:Demo", "episode:" + sid("ep1"), "gone"
    pid = spotify.make("big", entries)
    before = list(spotify.playlists[pid])
    tracks = [e for e in before if len(e) == 22 and ":" not in e]
    order = [tracks[-1], *tracks[1:-1], tracks[0]]  # swap the first and the last track
    async with curation_client(settings, **sp_env(spotify)) as (client, _):
        r, data = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=pid, order=order)
        assert not r.is_error, text_of(r)
    after = spotify.playlists[pid]
    assert len(after) == len(before) == 5040
    assert after[3] == "local:Demo" and after[10] == "episode:" + sid("ep1") and after[5030] == "gone"
    assert [e for e in after if e in tracks] == order
    assert {w[0] for w in spotify.writes} == {"MOVE"} and len(spotify.writes) == data["changed"] <= 2
    assert data["kept_in_place"] == 3 and data["snapshot"].startswith("psnap_")


async def test_over_the_cap_refuses_before_any_change(settings, spotify):
    pid = spotify.make("huge", ["k00"] * 10_001)
    async with curation_client(settings, **sp_env(spotify)) as (client, _):
        r, _ = await call(client, "dedupe_playlist", confirm=True, provider="spotify", playlist_id=pid)
    assert r.is_error and "10001 items" in text_of(r) and "nothing was changed" in text_of(r)
    assert spotify.writes == [] and len(spotify.playlists[pid]) == 10_001


async def test_dedupe_removes_only_the_repeats_by_position_and_restore_puts_them_back(settings, spotify):
    pid = spotify.make("dup", ["k01", "local:Demo", "k02", "k01", "episode:" + sid("ep"), "gone", "k02", "k03", "k01"])
    original = list(spotify.playlists[pid])
    async with curation_client(settings, **sp_env(spotify)) as (client, _):
        r, data = await call(client, "dedupe_playlist", confirm=True, provider="spotify", playlist_id=pid)
        assert not r.is_error, text_of(r)
        assert spotify.names(pid) == ["k01", "local:Demo", "k02", "episode:" + sid("ep"), "gone", "k03"]
        assert data["changed"] == 3 and [t["id"] for t in data["removed"]] == [sid("k01"), sid("k02"), sid("k01")]
        deletes = [b for m, b in spotify.bodies if m == "DELETE"]
        assert len(deletes) == 1 and deletes[0]["snapshot_id"] == "snap1"
        assert sorted(p for i in deletes[0]["items"] for p in i["positions"]) == [3, 6, 8]
        r, restored = await call(client, "restore_playlist", provider="spotify", playlist_id=pid,
                                 snapshot=data["snapshot"])
        assert not r.is_error, text_of(r)
    assert spotify.playlists[pid] == original
    assert restored["readded"] == 3 and restored["not_restored"] == [] and restored["kept_extra"] == 0


async def test_remove_tracks_then_restore(settings, spotify):
    pid = spotify.make("rm", ["k01", "k02", "k03", "k02", "local:X"])
    original = list(spotify.playlists[pid])
    async with curation_client(settings, **sp_env(spotify)) as (client, _):
        r, data = await call(client, "remove_tracks", confirm=True, provider="spotify", playlist_id=pid,
                             track_ids=[sid("k02"), f"spotify:track:{sid('k09')}"])
        assert not r.is_error, text_of(r)
        assert spotify.names(pid) == ["k01", "k03", "local:X"]
        assert data["changed"] == 2 and data["not_in_playlist"] == [sid("k09")]
        spotify.playlists[pid].append(sid("k05"))  # the person adds a track meanwhile
        r, restored = await call(client, "restore_playlist", provider="spotify", playlist_id=pid,
                                 snapshot=data["snapshot"])
        assert not r.is_error, text_of(r)
    assert spotify.playlists[pid] == original + [sid("k05")]
    assert restored["kept_extra"] == 1 and restored["snapshot"].startswith("psnap_")


async def test_spotify_reorder_failing_half_way_resumes_with_the_same_key_and_restores(settings, spotify):
    names = [f"k{i:02d}" for i in range(12)]
    pid = spotify.make("half", names)
    original = list(spotify.playlists[pid])
    spotify.fail_writes_after = 3
    async with curation_client(settings, **sp_env(spotify)) as (client, _):
        args = {"provider": "spotify", "playlist_id": pid, "by": "release_date", "descending": True,
                "idempotency_key": "reorder-half-1"}
        r, _ = await call(client, "reorder_playlist", confirm=True, **args)
        assert r.is_error and "500" in text_of(r)
        assert sorted(spotify.playlists[pid]) == sorted(original)  # moved part way, nothing lost
        assert spotify.playlists[pid] != original
        spotify.fail_writes_after = None
        r, data = await call(client, "reorder_playlist", confirm=True, **args)
        assert not r.is_error, text_of(r)
        assert data["resumed"] is True and spotify.names(pid) == names[::-1]
        r, again = await call(client, "reorder_playlist", confirm=True, **args)
        assert again["replayed"] is True
        r, _ = await call(client, "restore_playlist", provider="spotify", playlist_id=pid, snapshot=data["snapshot"])
        assert not r.is_error, text_of(r)
    assert spotify.playlists[pid] == original  # the snapshot is the order before the first attempt


async def test_failed_keyed_add_resumes_without_duplicates(settings, spotify):
    pid = spotify.make("add", [])
    ids = [sid(f"k{i % 60:02d}") for i in range(250)]
    spotify.fail_writes_after = 1
    async with curation_client(settings, **sp_env(spotify)) as (client, _):
        r, _ = await call(client, "add_tracks", provider="spotify", playlist_id=pid, track_ids=ids,
                          idempotency_key="add-250-resume")
        assert r.is_error and len(spotify.playlists[pid]) == 100
        spotify.fail_writes_after = None
        r, data = await call(client, "add_tracks", provider="spotify", playlist_id=pid, track_ids=ids,
                             idempotency_key="add-250-resume")
        assert not r.is_error, text_of(r)
    assert spotify.playlists[pid] == ids and data["resumed"] is True
    assert [w[2] for w in spotify.writes if w[0] == "POST"] == [100, 100, 50]


async def test_ids_are_validated_before_any_request(settings, spotify, ytm):
    pid = spotify.make("ok", ["k01"])
    async with curation_client(settings, **sp_env(spotify), **yt_env(ytm)) as (client, _):
        for bad in ["../me/playlists", pid + "/../../me", pid + "?market=x", "spotify:track:" + sid("k01")]:
            r, _ = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=bad, by="artist_spread")
            assert r.is_error and "playlist_id" in text_of(r), bad
        r, _ = await call(client, "add_tracks", provider="spotify", playlist_id=pid, track_ids=[sid("k01"), "x/../y"])
        assert r.is_error and "track_ids[1]" in text_of(r)
        r, _ = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=pid, order=["nope"])
        assert r.is_error and "order[0]" in text_of(r)
        r, _ = await call(client, "remove_tracks", confirm=True, provider="ytmusic", playlist_id="PL../x", track_ids=[vid("a")])
        assert r.is_error and "playlist_id" in text_of(r)
        r, _ = await call(client, "add_tracks", provider="ytmusic", playlist_id="PLok_list", track_ids=["short"])
        assert r.is_error and "track_ids[0]" in text_of(r)
    assert spotify.writes == [] and ytm.edits == []


async def test_restore_refuses_someone_elses_or_another_playlists_snapshot(settings, spotify):
    a, b = spotify.make("pa", ["k01", "k02"]), spotify.make("pb", ["k01"])
    async with curation_client(settings, **sp_env(spotify)) as (client, app):
        r, data = await call(client, "reorder_playlist", confirm=True, provider="spotify", playlist_id=a, order=[sid("k02"), sid("k01")])
        snap = data["snapshot"]
        r, _ = await call(client, "restore_playlist", provider="spotify", playlist_id=b, snapshot=snap)
        assert r.is_error and "snapshot" in text_of(r)
        rec = await app.storage.collection("playlist_snapshots").get("local", snap)
        assert rec["owner"] == "local" and len(snap) > 20
        assert await app.storage.collection("playlist_snapshots").get("someone-else", snap) is None


# -- idempotency -----------------------------------------------------------------------------------
async def test_key_left_running_by_a_crash_is_taken_over_after_the_lease(settings):
    async with curation_client(settings) as (_, app):
        coll = app.storage.collection("idempotency")
        args = {"x": 1}
        t = time.time()
        doc = {"id": _doc_id("o", "tool", "crashed-key"), "owner": "o", "created_at": t, "key": "crashed-key",
               "tool": "tool", "fingerprint": fingerprint(args), "state": "running", "lease_until": t + LEASE_S,
               "expires_at": t + 3600, "progress": {"done": 2}}
        await coll.insert(doc)
        runs = []

        async def run(progress):
            runs.append(dict(progress.state))
            return {"ok": True}

        with pytest.raises(Exception, match="still running"):
            await once(coll, "o", "tool", "crashed-key", args, run)
        await coll.update("o", doc["id"], {"lease_until": t - 1})  # the lease lapses: its process is gone
        result, replayed = await once(coll, "o", "tool", "crashed-key", args, run)
        assert result == {"ok": True} and not replayed and runs == [{"done": 2}]
        assert (await once(coll, "o", "tool", "crashed-key", args, run)) == ({"ok": True}, True)


async def test_expired_key_is_purged_not_recursed(settings):
    async with curation_client(settings) as (_, app):
        coll = app.storage.collection("idempotency")
        t = time.time()
        await coll.insert({"id": _doc_id("o", "tool", "old-key-1"), "owner": "o", "created_at": t - 90000,
                           "key": "old-key-1", "tool": "tool", "fingerprint": "f", "state": "done",
                           "result": {"stale": True}, "expires_at": t - 10})

        async def run(progress):
            return {"fresh": True}

        assert await once(coll, "o", "tool", "old-key-1", {"y": 2}, run) == ({"fresh": True}, False)


# -- YouTube Music -----------------------------------------------------------------------------------
async def test_ytmusic_every_write_path(settings, ytm):
    async with curation_client(settings, **yt_env(ytm)) as (client, _):
        r, created = await call(client, "create_playlist", provider="ytmusic", name="Mix", idempotency_key="yt-create-1")
        assert not r.is_error, text_of(r)
        pid = created["id"]
        r, again = await call(client, "create_playlist", provider="ytmusic", name="Mix", idempotency_key="yt-create-1")
        assert again["id"] == pid and len(ytm.playlists) == 1
        ids = [vid(f"v{i % 40}") for i in range(130)]
        r, data = await call(client, "add_tracks", provider="ytmusic", playlist_id=pid, track_ids=ids)
        assert not r.is_error and ytm.video_ids(pid) == ids and [len(e) for e in ytm.edits[-2:]] == [100, 30]
        # remove: every occurrence of the given tracks, by setVideoId, nothing else
        entries_before = {e.set_id: e.video_id for e in ytm.playlists[pid]}
        r, data = await call(client, "remove_tracks", confirm=True, provider="ytmusic", playlist_id=pid, track_ids=[vid("v1")])
        assert not r.is_error, text_of(r)
        assert vid("v1") not in ytm.video_ids(pid) and len(ytm.video_ids(pid)) == 130 - 4
        assert all(entries_before[e.set_id] == e.video_id for e in ytm.playlists[pid])  # the others untouched
        # dedupe: only ACTION_REMOVE_VIDEO for the repeats' setVideoIds
        edits = len(ytm.edits)
        r, dd = await call(client, "dedupe_playlist", confirm=True, provider="ytmusic", playlist_id=pid)
        assert not r.is_error, text_of(r)
        assert ytm.video_ids(pid) == list(dict.fromkeys(v for v in ids if v != vid("v1")))
        assert {a["action"] for e in ytm.edits[edits:] for a in e} == {"ACTION_REMOVE_VIDEO"}
        # reorder: moves only; entries keep their setVideoIds (no remove + re-add)
        kept = {e.video_id: e.set_id for e in ytm.playlists[pid]}
        order = ytm.video_ids(pid)[::-1]
        edits = len(ytm.edits)
        r, ro = await call(client, "reorder_playlist", confirm=True, provider="ytmusic", playlist_id=pid, order=order)
        assert not r.is_error, text_of(r)
        assert ytm.video_ids(pid) == order and {e.video_id: e.set_id for e in ytm.playlists[pid]} == kept
        assert {a["action"] for e in ytm.edits[edits:] for a in e} == {"ACTION_MOVE_VIDEO_BEFORE"}
        assert ro["changed"] == len(order) - 1
        # restore the dedupe snapshot: the removed repeats come back, in their old places
        r, rs = await call(client, "restore_playlist", provider="ytmusic", playlist_id=pid, snapshot=dd["snapshot"])
        assert not r.is_error, text_of(r)
        assert ytm.video_ids(pid) == [v for v in ids if v != vid("v1")] and rs["readded"] == 126 - 39


async def test_ytmusic_reorder_keeps_episodes_and_unavailable_in_place(settings, ytm):
    pid = "PL" + "e" * 32
    ytm.make(pid, [(vid("a"), "A"), (vid("ep"), "Episode", "episode"), (vid("b"), "B"),
                   (vid("gone"), "Gone", "unavailable"), (vid("c"), "C")])
    async with curation_client(settings, **yt_env(ytm)) as (client, _):
        r, data = await call(client, "reorder_playlist", confirm=True, provider="ytmusic", playlist_id=pid,
                             order=[vid("c"), vid("b"), vid("a")])
        assert not r.is_error, text_of(r)
    assert ytm.video_ids(pid) == [vid("c"), vid("ep"), vid("b"), vid("gone"), vid("a")]
    assert data["kept_in_place"] == 2


async def test_ytmusic_failure_half_way_then_retry_and_restore(settings, ytm):
    pid = "PL" + "f" * 32
    names = [vid(f"s{i}") for i in range(10)]
    ytm.make(pid, [(v, v) for v in names] + [(names[0], "again"), (names[3], "again")])
    original = [(e.video_id, e.set_id) for e in ytm.playlists[pid]]
    async with curation_client(settings, **yt_env(ytm)) as (client, _):
        ytm.fail_edits_after = 2
        args = {"provider": "ytmusic", "playlist_id": pid, "order": names[::-1] + [names[0], names[3]],
                "idempotency_key": "yt-reorder-half"}
        r, _ = await call(client, "reorder_playlist", confirm=True, **args)
        assert r.is_error and "YouTube Music" in text_of(r)
        assert sorted(original) == sorted((e.video_id, e.set_id) for e in ytm.playlists[pid])  # nothing lost
        ytm.fail_edits_after = None
        r, data = await call(client, "reorder_playlist", confirm=True, **args)
        assert not r.is_error, text_of(r)
        assert data["resumed"] is True and ytm.video_ids(pid) == args["order"]
        # dedupe failing half way: a retry with the key finishes; restore brings back everything
        ytm.fail_edits_after = len(ytm.edits)
        r, _ = await call(client, "dedupe_playlist", confirm=True, provider="ytmusic", playlist_id=pid, idempotency_key="yt-dd-half")
        assert r.is_error and len(ytm.playlists[pid]) == 12
        ytm.fail_edits_after = None
        r, dd = await call(client, "dedupe_playlist", confirm=True, provider="ytmusic", playlist_id=pid, idempotency_key="yt-dd-half")
        assert not r.is_error and dd["changed"] == 2 and len(ytm.playlists[pid]) == 10
        r, _ = await call(client, "restore_playlist", provider="ytmusic", playlist_id=pid, snapshot=data["snapshot"])
        assert not r.is_error, text_of(r)
    assert ytm.video_ids(pid) == [v for v, _ in original]
