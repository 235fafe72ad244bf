"""Privacy: export_my_data and delete_my_data on both backends, and per-principal encryption at rest.

Two principals get one of everything the server stores (jobs, artifacts with a blob they share and blobs of
their own, listening events, playlist snapshots, segment opt-ins, provider grants, audit entries, cached
results, tombstones). The checks read the database itself: every SQLite table / every MongoDB collection.
"""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
import uuid
import zipfile
from dataclasses import replace

import pytest

from echotune_mcp.auth.context import principal_for
from echotune_mcp.config import Settings
from echotune_mcp.privacy.delete import PHRASE
from echotune_mcp.storage.records import PlaylistSnapshotRecord
from tests.providers.oauth_fixtures import auth_server, cfg, port  # noqa: F401  (fixtures)

ALICE = principal_for("https://issuer.test", "alice")
BOB = principal_for("https://issuer.test", "bob")
ARTIST = "Zyxwvut Quartet"  # a name that appears nowhere else, to look for in raw storage


@pytest.fixture(params=["sqlite", "mongodb"])
def backend_settings(request, settings):
    if request.param == "mongodb":
        uri = request.getfixturevalue("mongo_uri")
        return replace(settings, mongodb_uri=uri, mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    return settings


@pytest.fixture
def as_principal(monkeypatch):
    who = [ALICE]
    monkeypatch.setattr("echotune_mcp.toolsets.privacy.current_principal", lambda: who[0])
    return who


def event(owner: str, n: int, artist: str = ARTIST) -> dict:
    return {"id": f"lev_{owner[-6:]}_{n}", "owner": owner, "created_at": time.time(), "source": "lastfm",
            "format": "lastfm_csv", "import_id": "imp_1", "played_at": 1_700_000_000.0 + n, "track": f"Song {n}",
            "artist": artist, "album": "Quiet Rooms", "item_key": f"name:{artist.lower()}\x1fsong {n}",
            "isrc": f"GBAAN{n:07d}"}


async def seed(app, owner: str, tag: str) -> dict:
    """One of everything for ``owner``; returns the ids and hashes the checks need."""
    from echotune_mcp.auth.audit import audit
    from echotune_mcp.providers.token_store import TokenKeyring, TokenStore

    st = app.storage

    async def work(job):
        own = await job.add_artifact(data=f"only {tag}".encode(), kind="json", media_type="application/json",
                                     name=f"{tag}.json")
        shared = await job.add_artifact(data=b"shared bytes", kind="json", media_type="application/json",
                                        name="shared.json")
        gone = await job.add_artifact(data=f"deleted {tag}".encode(), kind="json", media_type="application/json",
                                      name="gone.json")
        await job.add_artifact(data=b"shared bytes", kind="json", media_type="application/json", name="again.json")
        return {"own": own.id, "shared": shared.id, "gone": gone.id, "own_sha": own.sha256,
                "shared_sha": shared.sha256}

    job = await app.jobs.submit(owner=owner, tool="seed", params={}, work=work)
    done = await app.jobs.wait(owner, job.id, 10)
    assert done.status.value == "succeeded", done.error
    ids = dict(done.result)
    await app.artifacts.delete(owner, ids["gone"])  # leaves a tombstone (licensing)
    assert await st.listening.insert_absent([event(owner, n) for n in range(30)]) == 30
    await st.collection("playlist_snapshots").insert(PlaylistSnapshotRecord(
        owner=owner, provider="spotify", playlist_id=f"pl_{tag}", tool="add_tracks",
        items=[{"uri": "spotify:track:" + "1" * 22}], expires_at=time.time() + 3600).model_dump(mode="json"))
    await st.segment_optins.opt_in(owner)
    await TokenStore(st.collection("tokens"), TokenKeyring(None, app.settings.data_dir)).save(
        owner, "spotify", {"access_token": f"AT-{tag}-secret", "refresh_token": f"RT-{tag}-secret",
                           "expires_at": time.time() + 3600, "scope": "playlist-modify-private"})
    await st.collection("idempotency").insert({"id": f"idem_{tag}", "owner": owner, "created_at": time.time(),
                                               "key": "k1", "expires_at": time.time() + 3600, "result": {"n": 1}})
    await audit(app, "grant_added", principal=owner, provider="spotify")
    return ids


def raw_sqlite_rows(settings, needle: str) -> dict[str, int]:
    """Rows of every table whose owner is ``needle`` or whose document mentions it."""
    conn = sqlite3.connect(settings.data_dir / "echotune.sqlite3")
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        out = {}
        for t in tables:
            cols = {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')}
            clauses = (["owner = ?"] if "owner" in cols else []) + (["doc LIKE ?"] if "doc" in cols else [])
            if not clauses:
                continue
            args = ([needle] if "owner" in cols else []) + ([f"%{needle}%"] if "doc" in cols else [])
            n = conn.execute(f'SELECT COUNT(*) FROM "{t}" WHERE {" OR ".join(clauses)}', args).fetchone()[0]
            if n:
                out[t] = n
        return out
    finally:
        conn.close()


def raw_mongo_docs(settings, needle: str) -> dict[str, int]:
    from pymongo import MongoClient

    client = MongoClient(settings.mongodb_uri)
    try:
        db = client[settings.mongodb_db]
        out = {}
        for name in db.list_collection_names():
            n = sum(1 for d in db[name].find() if needle in json.dumps(d, default=str))
            if n:
                out[name] = n
        return out
    finally:
        client.close()


def everything_of(settings, needle: str) -> dict[str, int]:
    return raw_mongo_docs(settings, needle) if settings.mongodb_uri else raw_sqlite_rows(settings, needle)


async def blob_exists(app, sha: str) -> bool:
    return await app.storage.blobs.exists(sha)


async def test_export_holds_every_record_and_file_but_no_secret(backend_settings, make_client, as_principal):
    async with make_client(**vars_of(backend_settings)) as (client, app):
        ids = await seed(app, ALICE, "alice")
        await seed(app, BOB, "bob")
        r = await client.call_tool("export_my_data", {"wait_seconds": 20})
        out = r.structured_content
        assert out["status"] == "succeeded", out
        res = out["result"]
        art = await app.artifacts.get(ALICE, res["artifact_id"])
        assert art.owner == ALICE and art.kind == "export" and art.media_type == "application/zip"
        assert await app.storage.artifacts.get(BOB, art.id) is None
        path = app.storage.blobs.local_path(art.sha256)
        if path is not None:
            assert path.stat().st_mode & 0o777 == 0o600
        zf = zipfile.ZipFile(io.BytesIO(await app.artifacts.read(art)))
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format"] == "echotune-export/1" and manifest["principal"] == ALICE
        counts = manifest["counts"]
        assert counts["listening_events"] == 30 and counts["playlist_snapshots"] == 1
        assert counts["segment_optins"] == 1 and counts["tokens"] == 1 and counts["idempotency"] == 1
        assert counts["tombstones"] == 1 and counts["audit"] >= 1
        assert counts["artifacts"] == 3 and counts["jobs"] == 2  # the seed job and this export job
        assert "principal_keys" not in counts and "principal_keys" in manifest["left_out"]

        def lines(name):
            return [json.loads(x) for x in zf.read(f"records/{name}.jsonl").decode().splitlines()]

        events = lines("listening_events")
        assert {e["owner"] for e in events} == {ALICE} and {e["artist"] for e in events} == {ARTIST}
        assert sorted(e["track"] for e in events)[:2] == ["Song 0", "Song 1"]  # opened, not ciphertext
        grant = lines("tokens")[0]
        assert grant["provider"] == "spotify" and grant["scope"] == "playlist-modify-private"
        whole = b"".join(zf.read(n) for n in zf.namelist())
        assert b"AT-alice-secret" not in whole and b"RT-alice-secret" not in whole and b"ciphertext" not in whole
        assert BOB.encode() not in whole and b"only bob" not in whole  # nothing of the other principal
        assert zf.read(f"artifacts/{ids['own']}/alice.json") == b"only alice"
        assert zf.read(f"artifacts/{ids['shared']}/shared.json") == b"shared bytes"
        assert not list((app.settings.data_dir / "tmp").iterdir())  # the temp zip is gone


def vars_of(settings) -> dict:
    return {"mongodb_uri": settings.mongodb_uri, "mongodb_db": settings.mongodb_db}


async def test_delete_leaves_nothing_of_the_principal_and_all_of_the_other(backend_settings, make_client,
                                                                           as_principal):
    async with make_client(**vars_of(backend_settings)) as (client, app):
        a = await seed(app, ALICE, "alice")
        b = await seed(app, BOB, "bob")
        bob_before = everything_of(app.settings, BOB)
        assert ALICE in json.dumps(everything_of(app.settings, ALICE)) or everything_of(app.settings, ALICE)

        bad = await client.call_tool("delete_my_data", {"confirm": "yes", "wait_seconds": 20})
        assert bad.is_error and "confirm" in bad.content[0].text and PHRASE in bad.content[0].text
        assert (await app.storage.listening.count(ALICE)) == 30  # nothing deleted

        r = await client.call_tool("delete_my_data", {"confirm": PHRASE, "wait_seconds": 20})
        out = r.structured_content
        assert out["status"] == "succeeded", out
        rep = out["result"]
        assert rep["complete"] is True and rep["remaining"] == {}
        assert rep["deleted"]["listening_events"] == 30 and rep["deleted"]["artifacts"] == 3
        assert rep["key_shredded"] is True and rep["blobs_deleted"] == 1 and rep["blobs_kept_shared"] == 1
        assert rep["grants"] == [{"provider": "spotify", "revoked_at_provider": False, "deleted": True,
                                  "note": rep["grants"][0]["note"]}]
        # Walk every table / collection: only this job's receipt names the principal.
        left = everything_of(app.settings, ALICE)
        assert left == {"jobs": 1}, left
        if not app.settings.mongodb_uri:  # nor in the file's free pages or the write-ahead log
            raw = {p.name: p.read_bytes() for p in app.settings.data_dir.glob("echotune.sqlite3*")}
            assert b"pl_bob" in b"".join(raw.values())  # the scan does see stored rows
            assert [name for name, data in raw.items() if b"pl_alice" in data or b"alice.json" in data] == []
        receipt = await app.storage.jobs.get(ALICE, out["job_id"])
        assert receipt is not None and ARTIST not in receipt.model_dump_json()
        # Alice's own blob is gone; the blob Bob also holds stays; Bob's data is untouched.
        assert not await blob_exists(app, a["own_sha"])
        assert await blob_exists(app, b["shared_sha"]) and await blob_exists(app, b["own_sha"])
        assert everything_of(app.settings, BOB) == bob_before
        assert (await app.storage.listening.count(BOB)) == 30
        bob_events, _ = await app.storage.listening.find(BOB, limit=5)
        assert {e.artist for e in bob_events} == {ARTIST}
        assert (await app.artifacts.read(await app.artifacts.get(BOB, b["shared"]))) == b"shared bytes"


async def test_an_interrupted_delete_reports_what_remains_and_resumes(backend_settings, make_client,
                                                                      as_principal, monkeypatch):
    import echotune_mcp.privacy.delete as deletion

    real = deletion._collection

    async def failing(app, owner, name, keep):
        if name == "listening_events":
            raise RuntimeError("storage went away")
        return await real(app, owner, name, keep)

    async with make_client(**vars_of(backend_settings)) as (client, app):
        await seed(app, ALICE, "alice")
        await seed(app, BOB, "bob")
        monkeypatch.setattr(deletion, "_collection", failing)
        r = await client.call_tool("delete_my_data", {"confirm": PHRASE, "wait_seconds": 20})
        out = r.structured_content
        assert out["status"] == "failed"
        rep = out["result"]
        assert rep["complete"] is False and rep["key_shredded"] is True
        assert rep["deleted"]["artifacts"] == 3 and "listening_events" not in rep["deleted"]
        assert rep["remaining"]["listening_events"] == 30
        assert set(rep["steps_done"]) >= {"stop_jobs", "grants", "key", "artifacts"}
        monkeypatch.setattr(deletion, "_collection", real)
        again = (await client.call_tool("delete_my_data", {"confirm": PHRASE, "wait_seconds": 20})).structured_content
        assert again["status"] == "succeeded" and again["result"]["complete"] is True
        assert again["result"]["deleted"]["listening_events"] == 30
        assert again["result"]["deleted"]["jobs"] == 1  # the failed attempt's record; this one is the receipt
        assert everything_of(app.settings, ALICE) == {"jobs": 1}
        assert (await app.storage.listening.count(BOB)) == 30


async def test_delete_stops_the_principals_running_jobs_first(settings, make_client, as_principal):
    import asyncio

    async with make_client() as (client, app):
        started = asyncio.Event()

        async def slow(job):
            started.set()
            for _ in range(200):
                await job.progress(0.1, "working")
                await asyncio.sleep(0.05)
            await job.add_artifact(data=b"late", kind="json", media_type="application/json", name="late.json")
            return {}

        job = await app.jobs.submit(owner=ALICE, tool="slow", params={}, work=slow)
        await asyncio.wait_for(started.wait(), 5)
        out = (await client.call_tool("delete_my_data", {"confirm": PHRASE, "wait_seconds": 20})).structured_content
        assert out["status"] == "succeeded" and out["result"]["jobs_stopped"] == 1
        assert out["result"]["deleted"]["jobs"] == 1
        await asyncio.sleep(0.3)
        assert await app.storage.jobs.get(ALICE, job.id) is None
        assert everything_of(app.settings, ALICE) == {"jobs": 1}


# -- encryption at rest ------------------------------------------------------------------------------------------
@pytest.fixture
async def storage(backend_settings):
    from echotune_mcp.storage import open_storage

    st = await open_storage(backend_settings)
    yield st
    await st.close()


def raw_mentions(settings, needle: str) -> dict[str, int]:
    """Documents anywhere in the database whose stored form contains ``needle`` (any field, any owner)."""
    if settings.mongodb_uri:
        return raw_mongo_docs(settings, needle)
    conn = sqlite3.connect(settings.data_dir / "echotune.sqlite3")
    try:
        n = conn.execute("SELECT COUNT(*) FROM listening_events WHERE doc LIKE ? OR item_key LIKE ?",
                         (f"%{needle}%", f"%{needle}%")).fetchone()[0]
        return {"listening_events": n} if n else {}
    finally:
        conn.close()


async def test_listening_events_are_sealed_at_rest_and_still_dedupe_and_filter(storage, backend_settings):
    st = storage
    assert await st.listening.insert_absent([event(ALICE, n) for n in range(5)]) == 5
    assert await st.listening.insert_absent([event(ALICE, n) for n in range(7)]) == 2  # dedupe by id
    first = event(ALICE, 0)["id"]
    raw = await st.collection("listening_events").get(ALICE, first)
    stored = json.dumps(raw)
    for clear in (ARTIST, "Song 0", "Quiet Rooms", "GBAAN", ARTIST.lower()):
        assert clear not in stored, clear
    assert raw["item_key"].startswith("h:") and raw["sealed"] and raw["played_at"] == 1_700_000_000.0
    assert raw_mentions(backend_settings, "Zyxwvut") == {}
    assert raw_mentions(backend_settings, "zyxwvut") == {}
    # reads through the store are plain, owner-scoped, and filter on the clear item_key
    rec = await st.listening.get(ALICE, first)
    assert (rec.artist, rec.track, rec.album, rec.isrc) == (ARTIST, "Song 0", "Quiet Rooms", "GBAAN0000000")
    key3 = event(ALICE, 3)["item_key"]
    found, _ = await st.listening.find(ALICE, {"item_key": key3})
    assert [e.track for e in found] == ["Song 3"] and found[0].item_key == key3
    assert await st.listening.count(ALICE, {"item_key": [key3, event(ALICE, 4)["item_key"]]}) == 2
    assert await st.listening.count(ALICE) == 7 and await st.listening.get(BOB, first) is None
    # the data key at rest is wrapped, not the key itself
    kdoc = (await st.collection("principal_keys").find(ALICE)).items[0]
    assert set(kdoc) >= {"wrapped", "kid"} and "key" not in kdoc


async def test_a_copied_sealed_row_does_not_open_elsewhere(storage):
    st = storage
    await st.listening.insert_absent([event(ALICE, 1)])
    await st.listening.insert_absent([event(BOB, 1)])
    raw = await st.collection("listening_events").get(ALICE, event(ALICE, 1)["id"])
    coll = st.collection("listening_events")
    # onto another owner: their key never opened it; it reads as nothing of theirs
    await coll.insert({**raw, "owner": BOB, "id": "lev_copied_to_bob"})
    bobs, _ = await st.listening.find(BOB)
    assert [e.id for e in bobs] == [event(BOB, 1)["id"]]
    # onto another record of the same owner: the record id is bound in, so it is refused loudly
    await coll.insert({**raw, "id": "lev_moved"})
    with pytest.raises(ValueError, match="does not open"):
        await st.listening.get(ALICE, "lev_moved")


async def test_deleting_the_key_makes_a_backup_copy_unreadable(storage, backend_settings):
    from echotune_mcp.privacy.keys import KeyShredded
    from echotune_mcp.storage import open_storage

    st = storage
    await st.listening.insert_absent([event(ALICE, n) for n in range(3)])
    backup = await st.collection("listening_events").get(ALICE, event(ALICE, 0)["id"])  # what a backup holds
    assert await st.principal_keys.shred(ALICE) is True
    found, _ = await st.listening.find(ALICE)
    assert found == []  # the rows still stored read as gone
    # another process (nothing cached) has no key for them either
    other = await open_storage(backend_settings)
    try:
        assert await other.principal_keys.get(ALICE, create=False) is None
        assert (await other.listening.find(ALICE))[0] == []
    finally:
        await other.close()
    # restoring the backup row does not bring it back: new plays get a new key, which cannot open it
    await st.collection("listening_events").delete_where(ALICE, {})
    await st.collection("listening_events").insert(backup)
    await st.listening.insert_absent([event(ALICE, 50)])
    found, _ = await st.listening.find(ALICE)
    assert [e.track for e in found] == ["Song 50"]
    new_key = await st.principal_keys.get(ALICE)
    with pytest.raises(KeyShredded):
        new_key.open(backup["id"], backup["sealed"])


# -- over real HTTP, with the tokens a real issuer signs ----------------------------------------------------------
async def test_export_and_delete_over_http_need_step_up_and_erase_one_principal_only(tmp_path, issuer):
    import base64

    import httpx

    from tests.auth.conftest import mcp_http_client, start_server
    from tests.conftest import stop_process

    scopes = ("echotune:read", "echotune:write", "echotune:providers")
    csv = "".join(f"{ARTIST},Quiet Rooms,Song {n},0{n % 9 + 1} Jan 2024 1{n % 10}:00\n" for n in range(12))
    srv = start_server(tmp_path / "srv", issuer, {"ECHOTUNE_TOOLSETS": "jobs,artifacts,listening,privacy"})
    try:
        alice_p, bob_p = principal_for(issuer.url, "alice"), principal_for(issuer.url, "bob")
        for who in ("alice", "bob"):
            async with mcp_http_client(srv.mcp, issuer.token(who, scopes, amr=["pwd", "otp"])) as client:
                r = await client.call_tool("import_listening_history", {
                    "data_base64": base64.b64encode(csv.encode()).decode(), "filename": "scrobbles.csv",
                    "wait_seconds": 20})
                assert r.structured_content["status"] == "succeeded", r.content
        # Without a second factor both tools get the RFC 9470 challenge at the HTTP layer.
        for tool, args in (("export_my_data", {}), ("delete_my_data", {"confirm": PHRASE})):
            resp = httpx.post(srv.mcp, headers={"accept": "application/json, text/event-stream",
                                                "content-type": "application/json",
                                                "authorization": f"Bearer {issuer.token('alice', scopes)}"},
                              content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                                                  "params": {"name": tool, "arguments": args}}), timeout=30)
            assert resp.status_code == 401, (tool, resp.status_code)
            assert "insufficient_user_authentication" in resp.headers["www-authenticate"]
        async with mcp_http_client(srv.mcp, issuer.token("alice", scopes, amr=["pwd", "mfa"])) as client:
            r = await client.call_tool("export_my_data", {"wait_seconds": 20})
            assert r.structured_content["status"] == "succeeded", r.content
            assert r.structured_content["result"]["counts"]["listening_events"] == 12
            r = await client.call_tool("delete_my_data", {"confirm": PHRASE, "wait_seconds": 20})
            rep = r.structured_content
            assert rep["status"] == "succeeded" and rep["result"]["complete"], rep
            assert rep["result"]["deleted"]["listening_events"] == 12 and rep["result"]["key_shredded"]
        settings = Settings(data_dir=tmp_path / "srv" / "data")
        assert everything_of(settings, alice_p) == {"jobs": 1}  # the receipt only
        bob_left = everything_of(settings, bob_p)
        assert bob_left["listening_events"] == 12 and bob_left["principal_keys"] == 1
        async with mcp_http_client(srv.mcp, issuer.token("bob", scopes, amr=["pwd", "otp"])) as client:
            prof = await client.call_tool("taste_profile", {"period": "all_time"})
            assert not prof.is_error and ARTIST in json.dumps(prof.structured_content)
    finally:
        stop_process(srv.proc)


async def test_events_an_older_version_stored_in_clear_are_sealed_at_start(backend_settings):
    from echotune_mcp.app import App
    from echotune_mcp.storage import open_storage

    old = await open_storage(backend_settings)  # as a version before sealing wrote them: straight to the collection
    try:
        for n in range(3):
            await old.collection("listening_events").insert(event(ALICE, n))
        await old.collection("listening_events").insert(event(BOB, 9))
    finally:
        await old.close()
    assert raw_mentions(backend_settings, "Zyxwvut")
    async with App(backend_settings) as app:
        await asyncio.wait_for(app._sealing, 30)  # the start-up pass, in the background
        assert raw_mentions(backend_settings, "Zyxwvut") == {}
        found, _ = await app.storage.listening.find(ALICE, {"item_key": event(ALICE, 1)["item_key"]})
        assert [(e.track, e.artist, e.isrc) for e in found] == [("Song 1", ARTIST, "GBAAN0000001")]
        assert [e.track for e in (await app.storage.listening.find(BOB))[0]] == ["Song 9"]
        assert await app.storage.listening.seal_stored() == 0  # once per store


async def test_a_big_history_exports_in_bounded_memory(settings):
    import tracemalloc

    from echotune_mcp.app import App
    from echotune_mcp.privacy.export import build_export

    n = 20_000
    async with App(settings) as app:
        for start in range(0, n, 2000):
            await app.storage.listening.insert_absent([event(ALICE, i) for i in range(start, start + 2000)])

        async def progress(fraction, message):
            pass

        tracemalloc.start()
        try:
            path, manifest = await build_export(app, ALICE, progress)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        try:
            assert manifest["counts"]["listening_events"] == n
            with zipfile.ZipFile(path) as zf:
                assert sum(1 for _ in zf.open("records/listening_events.jsonl")) == n
        finally:
            path.unlink()
        # the 20k events as records would take tens of MB; the walk holds one page of 500
        print(f"export of {n} events: peak {peak / 1e6:.1f} MB")
        assert peak < 8e6, f"peak {peak / 1e6:.1f} MB"


async def test_a_grant_is_revoked_at_the_provider_before_it_is_deleted(settings, cfg, auth_server):
    from echotune_mcp.app import App
    from echotune_mcp.privacy.delete import DeleteReport, delete_principal
    from echotune_mcp.providers.hub import ProviderHub
    from tests.providers.test_oauth import _connect

    token = await _connect(cfg)  # a real grant from the loopback OAuth server (code + PKCE)
    async with App(settings) as app:
        hub = ProviderHub(app, configs={"spotify": cfg})
        await hub.keeper.store.save(ALICE, "spotify", token)
        await hub.keeper.store.save(BOB, "spotify", {**token, "refresh_token": "bobs-own"})

        async def progress(fraction, message):
            pass

        report = await delete_principal(app, ALICE, keep_job=None, progress=progress,
                                        report=DeleteReport(principal=ALICE, complete=False), hub=hub)
        assert [(g.provider, g.revoked_at_provider, g.deleted) for g in report.grants] == [("spotify", True, True)]
        assert auth_server.db.token_by("refresh_token", token["refresh_token"]).revoked
        assert await hub.keeper.store.load(ALICE, "spotify") is None
        assert (await hub.keeper.store.load(BOB, "spotify"))["refresh_token"] == "bobs-own"
        assert report.complete and report.remaining == {}


async def test_delete_my_data_revokes_through_the_apps_hub_and_leaves_it_open(settings, make_client, cfg,
                                                                                auth_server, as_principal):
    """The tool hands delete_principal the App's one provider hub (its OAuth settings revoke the grant); the
    deletion must not close it: other users' connections in progress live in it until the App closes."""
    from tests.providers.test_oauth import _connect

    token = await _connect(cfg)
    async with make_client() as (client, app):
        hub = app.providers
        hub._configs_override["spotify"] = cfg  # this App's Spotify app is the loopback authorization server
        closed = []
        real_close = hub.aclose

        async def aclose():
            closed.append(True)
            await real_close()

        hub.aclose = aclose
        await hub.keeper.store.save(ALICE, "spotify", token)
        r = await client.call_tool("delete_my_data", {"confirm": PHRASE, "wait_seconds": 20})
        out = r.structured_content
        assert out["status"] == "succeeded", out
        assert out["result"]["grants"] == [{"provider": "spotify", "revoked_at_provider": True, "deleted": True,
                                            "note": ""}]
        assert auth_server.db.token_by("refresh_token", token["refresh_token"]).revoked
        assert closed == [] and app.providers is hub
    assert closed == [True]  # closed once, with the App


async def test_a_grant_is_sealed_with_the_owners_key_inside_the_server_key(settings):
    import base64

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from echotune_mcp.app import App
    from echotune_mcp.providers.hub import ProviderHub
    from echotune_mcp.providers.token_store import TokenKeyring, TokenStore, token_doc_id

    async with App(settings) as app:
        hub = ProviderHub(app)
        await hub.keeper.store.save(ALICE, "spotify", {"access_token": "AT-secret", "refresh_token": "RT-secret",
                                                       "expires_at": time.time() + 3600})
        raw = await app.storage.collection("tokens").get(ALICE, token_doc_id(ALICE, "spotify"))
        server_key = await TokenKeyring(None, settings.data_dir).key(app.storage.collection("tokens"))
        outer = AESGCM(server_key).decrypt(base64.b64decode(raw["nonce"]), base64.b64decode(raw["ciphertext"]),
                                           TokenStore.aad(ALICE, "spotify"))
        assert b"RT-secret" not in outer and b"AT-secret" not in outer  # the server key alone does not open it
        assert (await hub.keeper.store.load(ALICE, "spotify"))["refresh_token"] == "RT-secret"
        await app.storage.principal_keys.shred(ALICE)
        assert await hub.keeper.store.load(ALICE, "spotify") is None  # crypto-shredded with the data key


async def test_data_keys_move_with_the_server_key_when_a_passphrase_is_set(settings):
    from echotune_mcp.app import App

    async with App(settings) as app:  # no ECHOTUNE_SECRET_KEY: the key file seals
        await app.storage.listening.insert_absent([event(ALICE, n) for n in range(3)])
        before = (await app.storage.collection("principal_keys").find(ALICE)).items[0]["wrapped"]
    moved = replace(settings, secret_key="a passphrase set later")
    async with App(moved) as app:  # the keyring moves the tokens; the start-up pass re-wraps the data keys
        await asyncio.wait_for(app._sealing, 30)
        after = (await app.storage.collection("principal_keys").find(ALICE)).items[0]["wrapped"]
        assert after != before
        assert sorted(e.track for e in (await app.storage.listening.find(ALICE))[0]) == ["Song 0", "Song 1", "Song 2"]
    (settings.data_dir / "token.key").unlink()  # the old key file is gone now: nothing depends on it any more
    async with App(moved) as app:
        assert len((await app.storage.listening.find(ALICE))[0]) == 3


async def test_auth_reset_also_drops_the_data_keys_the_lost_key_wrapped(settings, monkeypatch, capsys):
    import anyio

    from echotune_mcp.app import App
    from echotune_mcp.providers.cli import auth_main

    async with App(replace(settings, secret_key="lost")) as app:
        await app.storage.listening.insert_absent([event(ALICE, n) for n in range(3)])
    monkeypatch.setenv("ECHOTUNE_SECRET_KEY", "new one")
    assert await anyio.to_thread.run_sync(auth_main, ["reset", "--data-dir", str(settings.data_dir)]) == 2
    assert "listening histories sealed with them can no longer be read" in capsys.readouterr().err
    assert await anyio.to_thread.run_sync(auth_main, ["reset", "--yes", "--data-dir", str(settings.data_dir)]) == 0
    assert "1 principal data key(s)" in capsys.readouterr().out
    async with App(replace(settings, secret_key="new one")) as app:
        assert (await app.storage.listening.find(ALICE))[0] == []  # unreadable now: gone, not an error
        await app.storage.listening.insert_absent([event(ALICE, 7)])
        assert [e.track for e in (await app.storage.listening.find(ALICE))[0]] == ["Song 7"]


async def test_a_second_delete_while_one_runs_follows_the_first(settings, make_client, as_principal, monkeypatch):
    import echotune_mcp.privacy.delete as deletion

    gate = asyncio.Event()
    real = deletion._stop_jobs

    async def slow_stop(app, owner, keep_job, report):
        await gate.wait()
        await real(app, owner, keep_job, report)

    monkeypatch.setattr(deletion, "_stop_jobs", slow_stop)
    async with make_client() as (client, app):
        await seed(app, ALICE, "alice")
        first = (await client.call_tool("delete_my_data", {"confirm": PHRASE})).structured_content
        second = (await client.call_tool("delete_my_data", {"confirm": PHRASE})).structured_content
        assert second["job_id"] == first["job_id"] and second["status"] in ("queued", "running")
        gate.set()
        done = await app.jobs.wait(ALICE, first["job_id"], 20)
        assert done.status.value == "succeeded" and done.result["complete"]
        assert everything_of(app.settings, ALICE) == {"jobs": 1}


async def test_sqlite_erasure_leaves_no_copy_in_free_pages_or_the_log(settings):
    from echotune_mcp.storage import open_storage

    st = await open_storage(settings)
    try:
        coll = st.collection("idempotency")
        for who in ("alice", "bob"):
            await coll.insert_absent([{"id": f"idem_{who}_{n}", "owner": who, "created_at": n, "key": f"k{n}",
                                       "result": {"note": f"needle-{who}-{n:04d}" * 4}} for n in range(40)])
        await st.backend.scrub()  # the rows are in the database file itself now
        assert b"needle-alice-" in (settings.data_dir / "echotune.sqlite3").read_bytes()
        assert await coll.delete_where("alice", {}) == 40
        await st.backend.scrub()
        raw = b"".join(p.read_bytes() for p in settings.data_dir.glob("echotune.sqlite3*"))
        assert b"needle-alice-" not in raw and b"needle-bob-" in raw
    finally:
        await st.close()
