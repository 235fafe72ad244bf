"""Listening history synced from providers (issue #14, item 1) and one import or sync at a time per owner,
across processes (the CLI and a running server).

Spotify is Prism (its own OpenAPI spec, every request validated) or a scripted loopback API where a test needs
real ids, paging, a 403 or a request that blocks; YouTube Music is ytmusicapi, unmodified, against a loopback
server whose history page is made of recorded youtubei items (../shared/fixtures/ytmusic).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import anyio
import pytest

from echotune_mcp.app import App
from echotune_mcp.errors import Busy
from echotune_mcp.providers.spotify import SpotifyProvider
from echotune_mcp.providers.ytmusic import YTMusicProvider
from echotune_mcp.recommend.importer import SYNC_TOOL, ImportLock
from echotune_mcp.recommend.sync import period_of, run_sync
from echotune_mcp.storage import open_storage
from echotune_mcp.storage.records import JobRecord, JobStatus, LeaseRecord
from tests.conftest import shared_path
from tests.providers.conftest import loopback_api, prism, spotify_spec  # noqa: F401  (fixtures)
from tests.providers.fake_spotify import sid, track
from tests.providers.fake_ytmusic import HOME, auth_file


@pytest.fixture
async def sqlite_storage(settings):
    st = await open_storage(settings)
    yield st
    await st.close()


def text_of(result) -> str:
    return "\n".join(getattr(b, "text", "") for b in result.content)


async def sync(client, **args):
    r = await client.call_tool("sync_listening_history", {"wait_seconds": 20, **args})
    assert not r.is_error, text_of(r)
    job = r.structured_content
    assert job["status"] == "succeeded", job
    return job["result"]


def by_source(report) -> dict:
    return {s["source"]: s for s in report["sources"]}


async def events(app, owner="local"):
    out, cursor = [], None
    while True:
        page, cursor = await app.storage.listening.find(owner, limit=500, cursor=cursor)
        out += page
        if cursor is None:
            return out


# -- Spotify on Prism --------------------------------------------------------------------------------------
async def test_spotify_sync_on_prism_stores_plays_and_signals_and_resync_adds_nothing(make_client, prism):
    async with make_client(spotify_token="ci-token", spotify_api_base=prism) as (client, app):
        tool = {t.name: t for t in (await client.list_tools()).tools}["sync_listening_history"]
        assert tool.annotations.read_only_hint is False and tool.annotations.destructive_hint is False
        assert tool.annotations.idempotent_hint is True and tool.annotations.open_world_hint is True
        first = await sync(client, provider="spotify")
        src = by_source(first)
        assert list(src) == ["spotify:recently_played", "spotify:top:short_term", "spotify:top:medium_term",
                             "spotify:top:long_term", "spotify:saved"]
        assert all(s["status"] == "ok" and s["fetched"] >= 1 for s in src.values()), src
        assert "50" in src["spotify:recently_played"]["limits"]
        assert first["imported"] == first["fetched"] - first["skipped"] and first["duplicates"] == 0
        stored = await events(app)
        assert len(stored) == first["imported"] == first["events_stored"]
        assert {e.signal for e in stored} == {"play", "top", "saved"}
        tops = [e for e in stored if e.signal == "top"]
        assert {e.term for e in tops} == {"short_term", "medium_term", "long_term"} and all(e.rank == 1 for e in tops)
        assert all(e.played_at is None for e in stored if e.signal != "play")
        assert all(e.import_id == first["import_id"] for e in stored)
        again = await sync(client, provider="spotify")
        assert (again["imported"], again["duplicates"]) == (0, first["imported"])
        assert again["events_stored"] == first["events_stored"]
        # the profile counts plays only; the signals are reported apart
        prof = (await client.call_tool("taste_profile", {})).structured_content
        assert prof["totals"]["plays"] == first["plays_imported"]
        assert prof["history"]["non_play_signals"] == {"top": 3, "saved": src["spotify:saved"]["imported"]}
        assert any("not plays" in n for n in prof["notes"])


# -- Spotify, scripted: real ids, the before cursor, a 403, a blocking page --------------------------------
T = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)


def _iso(dt: datetime) -> str:
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


PLAYS = [(T - timedelta(minutes=4 * n), track(f"p{n}", f"Song {n}", f"Artist {n % 2}", f"GBAAA260000{n}"))
         for n in range(5)]  # newest first


class ScriptedSpotify:
    """recently-played in pages of 3 paged by `before` (ms), top tracks 403 (scope missing), saved tracks."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.block_saved = threading.Event()
        self.block_saved.set()
        self.top_status = 403

    def __call__(self, method, path, headers, raw):
        parts = urlsplit(path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.requests.append((parts.path, q))
        if parts.path == "/me/player/recently-played":
            assert int(q["limit"]) <= 50
            before = int(q["before"]) if "before" in q else None
            rows = [(t, tr) for t, tr in PLAYS if before is None or t.timestamp() * 1000 < before][:3]
            last = int(rows[-1][0].timestamp() * 1000) if rows else None
            return 200, {}, {"items": [{"track": tr, "played_at": _iso(t), "context": None} for t, tr in rows],
                             "next": f"{parts.path}?before={last}" if len(rows) == 3 else None,
                             "cursors": {"before": str(last), "after": None} if rows else None, "limit": 3}
        if parts.path == "/me/top/tracks":
            if self.top_status == 403:
                return 403, {}, {"error": {"status": 403, "message": "Insufficient client scope"}}
            return 200, {}, {"items": [PLAYS[2][1], PLAYS[0][1]], "total": 2, "next": None}
        if parts.path == "/me/tracks":
            assert self.block_saved.wait(60)
            items = [{"added_at": "2025-01-02T03:04:05Z", "track": PLAYS[1][1]},
                     {"added_at": "2024-06-01T00:00:00Z", "track": track("s9", "Saved Only", "Someone Else")},
                     {"added_at": "2024-05-01T00:00:00Z", "track": None}]
            return 200, {}, {"items": items, "total": 3, "next": None}
        return 404, {}, {"error": {"status": 404, "message": "Not found"}}


@pytest.fixture
def scripted(loopback_api):  # noqa: F811
    api = ScriptedSpotify()
    api.base = loopback_api(api).base
    return api


async def test_spotify_sync_pages_back_reports_a_403_naming_the_scope_and_keeps_isrc(make_client, scripted):
    async with make_client(spotify_token="tok", spotify_api_base=scripted.base) as (client, app):
        report = await sync(client, provider="spotify")
        src = by_source(report)
        recent = src["spotify:recently_played"]
        assert (recent["fetched"], recent["imported"]) == (5, 5)
        befores = [q.get("before") for p, q in scripted.requests if p == "/me/player/recently-played"]
        assert befores == [None, str(int(PLAYS[2][0].timestamp() * 1000))]  # paged back by the cursor, then ended
        assert recent["time_range"] == {"first": "2026-11-30T17:44:00Z", "last": "2026-11-30T18:00:00Z"}
        for term in ("short_term", "medium_term", "long_term"):
            top = src[f"spotify:top:{term}"]
            assert top["status"] == "unavailable" and top["imported"] == 0
            assert "403" in top["unavailable_reason"] and "user-top-read" in top["unavailable_reason"]
        saved = src["spotify:saved"]
        assert (saved["fetched"], saved["imported"], saved["skipped"]) == (3, 2, 1)
        assert saved["skipped_reasons"] == {"no track in the entry": 1}
        stored = {(e.signal, e.track): e for e in await events(app)}
        play = stored[("play", "Song 0")]
        assert play.spotify_uri == f"spotify:track:{sid('p0')}" == play.item_key and play.isrc == "GBAAA2600000"
        assert play.played_at == T.timestamp() and play.ms_played is None and play.source == "spotify"
        assert stored[("saved", "Song 1")].added_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC).timestamp()
        assert report["plays_imported"] == 5 and report["imported"] == 7
        again = await sync(client, provider="spotify")
        assert (again["imported"], again["duplicates"]) == (0, 7)
        # granted later: the top lists come in, nothing else is added twice
        scripted.top_status = 200
        later = await sync(client, provider="spotify", include=["top"], top_terms=["short_term"])
        assert by_source(later)["spotify:top:short_term"]["imported"] == 2
        ranks = {e.track: e.rank for e in await events(app) if e.signal == "top"}
        assert ranks == {"Song 2": 1, "Song 0": 2}
        prof = (await client.call_tool("taste_profile", {})).structured_content
        assert prof["totals"]["plays"] == 5 and prof["history"]["non_play_signals"] == {"saved": 2, "top": 2}
        assert {a["artist"]: a["plays"] for a in prof["top_artists_by_plays"]} == {"Artist 0": 3, "Artist 1": 2}


async def test_a_grant_without_the_scope_is_named_before_any_request(sqlite_storage, scripted):
    sp = SpotifyProvider("tok", api_base=scripted.base)
    report = await run_sync(sqlite_storage.listening, "alice", "spotify", sp, "job_x", include=["top", "saved"],
                            terms=["long_term"], granted_scope="user-read-recently-played user-library-read")
    await sp.aclose()
    top = by_source(report.model_dump())["spotify:top:long_term"]
    assert top["status"] == "unavailable" and "without scope user-top-read" in top["unavailable_reason"]
    assert "connect_provider" in top["unavailable_reason"]
    assert [p for p, _ in scripted.requests] == ["/me/tracks"]  # the top list was never asked for
    assert report.imported == 2


async def test_a_cancelled_sync_removes_what_it_stored(make_client, scripted):
    scripted.block_saved.clear()  # the saved-tracks page hangs until released: the job is mid-way
    async with make_client(spotify_token="tok", spotify_api_base=scripted.base) as (client, app):
        try:
            r = await client.call_tool("sync_listening_history", {"provider": "spotify", "wait_seconds": 0})
            job = r.structured_content
            deadline = time.monotonic() + 60
            while await app.storage.listening.count("local") < 5 and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert await app.storage.listening.count("local") == 5  # the recent plays are in
            upload = base64.b64encode(TSV.encode()).decode()
            busy = await client.call_tool("import_listening_history", {"data_base64": upload, "filename": "x.tsv"})
            assert busy.is_error and job["job_id"] in text_of(busy) and "a sync" in text_of(busy)
            cancelled = await client.call_tool("cancel_job", {"job_id": job["job_id"]})
            assert cancelled.structured_content["status"] == "cancelled"
        finally:
            scripted.block_saved.set()
        while await app.storage.listening.count("local") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert await app.storage.listening.count("local") == 0
        # the lock was given back once the undo was done: the next sync runs (and waits for nothing)
        report = await sync(client, provider="spotify", include=["recently_played"])
        assert report["imported"] == 5


async def test_sync_refuses_bad_input_before_any_job(make_client):
    async with make_client() as (client, app):
        cases = [
            ({"provider": "ytmusic", "include": ["top"]}, ["include", "no top-tracks"]),
            ({"provider": "spotify", "include": ["saved"], "top_terms": ["short_term"]}, ["top_terms"]),
            ({"provider": "spotify", "include": ["plays"]}, ["include"]),
            ({"provider": "spotify", "max_items": 0}, ["max_items"]),
            ({"provider": "spotify", "timezone": "Mars/Base"}, ["timezone"]),
            ({"provider": "deezer"}, ["provider"]),
            ({"provider": "spotify"}, ["connect_provider(provider='spotify')"]),
            ({"provider": "ytmusic"}, ["connect_provider(provider='ytmusic')"]),
        ]
        for arguments, needles in cases:
            r = await client.call_tool("sync_listening_history", arguments)
            assert r.is_error, arguments
            for needle in needles:
                assert needle in text_of(r), (needle, text_of(r))
        assert (await client.call_tool("list_jobs", {})).structured_content["jobs"] == []


# -- YouTube Music: get_history on recorded items ---------------------------------------------------------
def _recorded_items() -> list[dict]:
    data = json.loads(shared_path("fixtures", "ytmusic", "2024_03_get_playlist.json").read_text())
    shelf = (data["contents"]["twoColumnBrowseResultsRenderer"]["secondaryContents"]["sectionListRenderer"]
             ["contents"][0]["musicPlaylistShelfRenderer"])
    return shelf["contents"]


class History:
    """FEmusic_history as YouTube sends it: one musicShelfRenderer per label over recorded list items."""

    def __init__(self, sections: list[tuple[str, list[int]]]):
        self.items = _recorded_items()
        self.sections = sections
        self.browses = 0

    def page(self) -> dict:
        shelves = [{"musicShelfRenderer": {"title": {"runs": [{"text": label}]},
                                           "contents": [self.items[i] for i in idx]}} for label, idx in self.sections]
        return {"contents": {"singleColumnBrowseResultsRenderer": {"tabs": [{"tabRenderer": {"content": {
            "sectionListRenderer": {"contents": shelves}}}}]}}}

    def __call__(self, method, path, headers, raw):
        if method == "GET" and path.split("?")[0] == "/":
            return 200, {"Content-Type": "text/html"}, HOME
        body = json.loads(raw or b"{}")
        if path.startswith("/youtubei/v1/browse") and body.get("browseId") == "FEmusic_history":
            self.browses += 1
            return 200, {}, self.page()
        return 404, {}, {"error": {"code": 404, "message": "Requested entity was not found."}}


def test_history_labels_become_the_periods_they_mean():
    today = date(2026, 12, 1)  # a Tuesday
    assert [period_of(x, today) for x in ("Today", "Yesterday", "This week", "Last week", "This month",
                                          "Last month", "March 2024", "2023", "Unbekannt", None)] == [
        "2026-12-01", "2026-11-30", "2026-W49", "2026-W48", "2026-12", "2026-11", "2024-03", "2023",
        "label:unbekannt", "label:(none)"]


async def test_ytmusic_history_sync_keeps_labels_and_a_resync_adds_nothing(make_client, loopback_api, tmp_path):  # noqa: F811
    hist = History([("Today", [0, 1, 2]), ("Yesterday", [3, 4]), ("Last week", [5]), ("March 2024", [6])])
    api = loopback_api(hist)
    env = {"ytmusic_auth_file": auth_file(tmp_path), "ytmusic_api_base": api.base}
    async with make_client(**env) as (client, app):
        report = await sync(client, provider="ytmusic", timezone="Europe/Berlin")
        src = by_source(report)
        assert list(src) == ["ytmusic:history"]
        h = src["ytmusic:history"]
        assert (h["fetched"], h["imported"], h["duplicates"]) == (7, 7, 0)
        assert h["periods"] == {"Today": 3, "Yesterday": 2, "Last week": 1, "March 2024": 1}
        assert h["time_range"] is None  # no exact times were given, none invented
        stored = {e.ytmusic_video_id: e for e in await events(app)}
        today = datetime.now(ZoneInfoBerlin()).date()
        assert stored["3_R4ulvg8OY"].played_period == today.isoformat()
        assert stored["8Y8fDsU0hX8"].played_period == (today - timedelta(days=1)).isoformat()
        assert stored["Zk405nQ1Sv8"].played_period == "2024-03"
        first = stored["3_R4ulvg8OY"]
        assert (first.track, first.artist, first.album) == ("I Hate Everything (feat. Action Bronson)",
                                                            "The Alchemist", "The Food Villain")
        assert first.played_at is None and first.source == "ytmusic" and first.signal == "play"
        assert any("no times" in n for n in report["notes"])
        again = await sync(client, provider="ytmusic", timezone="Europe/Berlin")
        assert (again["imported"], again["duplicates"]) == (0, 7)
        prof = (await client.call_tool("taste_profile", {})).structured_content
        assert prof["totals"]["plays"] == 7 and prof["history"]["undated_events"] == 7


async def test_the_next_days_history_matches_what_was_synced_today(sqlite_storage, loopback_api, tmp_path):  # noqa: F811
    hist = History([("Today", [0, 1]), ("Yesterday", [2])])
    api = loopback_api(hist)
    yt = YTMusicProvider(auth_file=auth_file(tmp_path), api_base=api.base)
    day = date(2026, 11, 30)
    store = sqlite_storage.listening
    one = await run_sync(store, "bob", "ytmusic", yt, "job_1", include=["recently_played"], today=day)
    assert one.imported == 3
    # a day later (Tuesday Dec 1) item 1 was played again; item 0 is now "Yesterday", and Sunday's item 2 is
    # listed under "Last week" (YouTube lists a track once, at its latest play)
    hist.sections = [("Today", [1]), ("Yesterday", [0]), ("Last week", [2])]
    two = await run_sync(store, "bob", "ytmusic", yt, "job_2", include=["recently_played"],
                         today=day + timedelta(days=1))
    # weeks later: everything is under the month
    hist.sections = [("November 2026", [0, 2]), ("December 2026", [1])]
    three = await run_sync(store, "bob", "ytmusic", yt, "job_3", include=["recently_played"],
                           today=date(2027, 1, 20))
    await yt.aclose()
    assert (two.imported, two.duplicates) == (1, 2)  # only the new play of item 1 on Dec 1
    assert (three.imported, three.duplicates) == (0, 3)
    assert await store.count("bob") == 4 and await store.count("bob", {"import_id": "job_2"}) == 1


def ZoneInfoBerlin():  # noqa: N802
    from zoneinfo import ZoneInfo

    return ZoneInfo("Europe/Berlin")


# -- one import or sync at a time, across processes -------------------------------------------------------
def run_cli(*args, data_dir, timeout=180):
    env = {**os.environ, "ECHOTUNE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "echotune_mcp", "history", "import", *args], capture_output=True,
                          text=True, env=env, timeout=timeout)


TSV = "user\titem\tweight\nu1\tartist:1\t3\nu1\tartist:2\t1\n"


async def _held(app: App, owner: str = "local") -> tuple[ImportLock, JobRecord]:
    """What a server running a sync looks like in storage: the lock, bound to its running job."""
    job = await app.storage.jobs.insert(JobRecord(owner=owner, tool=SYNC_TOOL, status=JobStatus.running,
                                                  started_at=time.time(), lease_owner=app.jobs.lease_id,
                                                  lease_expires_at=time.time() + 300))
    lock = ImportLock(app, owner)
    await lock.acquire()
    await lock.bind(job.id)
    return lock, job


async def test_the_cli_waits_for_a_servers_sync_and_says_which_job(settings, tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_text(TSV)
    async with App(replace(settings, job_lease_seconds=300)) as server:
        lock, job = await _held(server)
        busy = await anyio.to_thread.run_sync(lambda: run_cli(str(path), "--wait", "1", data_dir=settings.data_dir))
        assert busy.returncode == 1, busy.stderr
        assert f"a sync of your listening history is already running for you (job {job.id})" in busy.stderr
        assert await server.storage.listening.count("local") == 0
        await lock.release(job.id)
        ok = await anyio.to_thread.run_sync(lambda: run_cli(str(path), "--wait", "1", data_dir=settings.data_dir))
        assert ok.returncode == 0, ok.stderr
        assert json.loads(ok.stdout)["imported"] == 2
        # and the other way round: the lock is free again once the CLI's import ended
        assert await server.storage.jobs.slots.get("local", lock.id) is None


async def test_a_lock_left_by_a_dead_process_is_taken_over_and_its_plays_undone(settings, tmp_path):
    path = tmp_path / "plays.tsv"
    path.write_text(TSV)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)  # a process that has exited
    async with App(replace(settings, job_lease_seconds=300)) as app:
        lease = LeaseRecord(expires_at=time.time() + 300, pid=pid, host=app.storage.leases.host)
        await app.storage.leases.coll.insert(lease.model_dump(mode="json"))
        job = await app.storage.jobs.insert(JobRecord(owner="local", tool=SYNC_TOOL, status=JobStatus.running,
                                                      started_at=time.time(), lease_owner=lease.id,
                                                      lease_expires_at=time.time() + 300))
        lock = ImportLock(app, "local")
        await lock.slots.insert({"id": lock.id, "owner": "local", "created_at": time.time(), "job_id": job.id,
                                 "lease_owner": lease.id, "lease_expires_at": time.time() + 300})
        # what the killed sync had stored so far
        await app.storage.listening.insert_absent([{
            "id": "lev_" + "d" * 40, "owner": "local", "created_at": time.time(), "source": "spotify",
            "format": "spotify_recent", "import_id": job.id, "played_at": 1.7e9, "track": "T", "artist": "A",
            "item_key": "name:a\x1ft", "weight": 1.0, "signal": "play"}])
    ok = await anyio.to_thread.run_sync(lambda: run_cli(str(path), "--wait", "0", data_dir=settings.data_dir))
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["imported"] == 2 and report["interrupted_imports_undone"] == 1
    async with App(settings) as app:
        assert await app.storage.listening.count("local") == 2
        assert (await app.storage.jobs.get("local", job.id)).status == JobStatus.interrupted


@pytest.mark.parametrize("backend", ["sqlite", "mongodb"])
async def test_two_servers_on_one_data_dir_take_turns(settings, request, backend):
    settings = replace(settings, job_lease_seconds=300)
    if backend == "mongodb":
        settings = replace(settings, mongodb_uri=request.getfixturevalue("mongo_uri"),
                           mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    async with App(settings) as a, App(settings) as b:
        lock, job = await _held(a)
        t0 = time.monotonic()
        with pytest.raises(Busy, match=job.id):
            await ImportLock(b, "local").acquire(wait_s=0.5)
        assert time.monotonic() - t0 >= 0.5  # the bounded wait was waited
        assert await ImportLock(b, "someone-else").acquire() is None  # another owner is not held up

        async def give_back():
            await asyncio.sleep(0.6)
            await lock.release(job.id)

        waiter = ImportLock(b, "local")
        t0 = time.monotonic()
        await asyncio.gather(give_back(), waiter.acquire(wait_s=10))
        assert 0.5 <= time.monotonic() - t0 < 5 and waiter.held
        # a job that ended but is still undoing: waited for (bounded), not reported as a new import's turn
        await waiter.release()
        ended = await a.storage.jobs.insert(JobRecord(owner="local", tool=SYNC_TOOL, status=JobStatus.cancelled,
                                                      started_at=time.time(), lease_owner=a.jobs.lease_id))
        lock = ImportLock(a, "local")
        await lock.acquire()
        await lock.bind(ended.id)
        asyncio.get_running_loop().call_later(0.5, lambda: asyncio.ensure_future(lock.release(ended.id)))
        late = ImportLock(b, "local")
        await late.acquire(wait_s=0)
        assert late.held
        # a job cancelled before it started never runs its work (nor gives the lock back): taken over at once
        await late.release()
        never = await a.storage.jobs.insert(JobRecord(owner="local", tool=SYNC_TOOL, status=JobStatus.cancelled,
                                                      lease_owner=a.jobs.lease_id))
        lock = ImportLock(a, "local")
        await lock.acquire()
        await lock.bind(never.id)
        t0 = time.monotonic()
        taker = ImportLock(b, "local")
        await taker.acquire(wait_s=0)
        assert taker.held and time.monotonic() - t0 < 2
        assert (await b.storage.jobs.slots.get("local", taker.id))["lease_owner"] == b.jobs.lease_id
