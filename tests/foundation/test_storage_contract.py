"""One contract, both backends: the embedded SQLite store and MongoDB (a real wire server)."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace

import pytest

from echotune_mcp.storage import StorageError, open_storage
from echotune_mcp.storage.base import InvalidCursor
from echotune_mcp.storage.records import ArtifactRecord, JobRecord, JobStatus


@pytest.fixture(params=["sqlite", "mongodb"])
async def storage(request, settings):
    if request.param == "mongodb":
        uri = request.getfixturevalue("mongo_uri")
        settings = replace(settings, mongodb_uri=uri, mongodb_db=f"t_{uuid.uuid4().hex[:10]}")
    st = await open_storage(settings)
    assert st.backend.name == request.param
    yield st
    await st.close()


async def test_insert_get_is_owner_scoped(storage):
    job = await storage.jobs.insert(JobRecord(owner="alice", tool="generate_music", params={"x": 1}))
    assert (await storage.jobs.get("alice", job.id)).params == {"x": 1}
    assert await storage.jobs.get("bob", job.id) is None
    assert await storage.jobs.delete("bob", job.id) is False
    assert await storage.jobs.update("bob", job.id, {"message": "hijack"}) is None
    assert (await storage.jobs.get("alice", job.id)).message == ""


async def test_duplicate_id_is_refused(storage):
    job = await storage.jobs.insert(JobRecord(owner="alice", tool="t"))
    with pytest.raises(StorageError):
        await storage.jobs.insert(job)


async def test_ids_are_unguessable(storage):
    ids = {JobRecord(owner="a", tool="t").id for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) >= 20 for i in ids)


async def test_status_compare_and_set(storage):
    job = await storage.jobs.insert(JobRecord(owner="a", tool="t"))
    assert await storage.jobs.set_status("a", job.id, JobStatus.running, expect=[JobStatus.queued])
    # A second transition from "queued" must not apply: the job is running now.
    assert await storage.jobs.set_status("a", job.id, JobStatus.cancelled, expect=[JobStatus.queued]) is None
    done = await storage.jobs.set_status("a", job.id, JobStatus.succeeded, expect=[JobStatus.running], result={"ok": 1})
    assert done.status == JobStatus.succeeded and done.result == {"ok": 1} and done.finished_at


async def test_pagination_and_filters(storage):
    for i in range(7):
        await storage.jobs.insert(JobRecord(owner="a", tool="t", created_at=1000.0 + i,
                                            status=JobStatus.succeeded if i % 2 else JobStatus.failed))
    await storage.jobs.insert(JobRecord(owner="b", tool="t", created_at=2000.0))
    seen, cursor = [], None
    while True:
        page, cursor = await storage.jobs.find("a", limit=3, cursor=cursor)
        seen.extend(page)
        if cursor is None:
            break
    assert [j.created_at for j in seen] == [1006.0 - i for i in range(7)]
    ok, _ = await storage.jobs.find("a", {"status": "succeeded"}, limit=50)
    assert len(ok) == 3 and {j.status for j in ok} == {JobStatus.succeeded}
    assert await storage.jobs.count("a", {"status": ["succeeded", "failed"]}) == 7
    with pytest.raises(InvalidCursor):
        await storage.jobs.find("a", cursor="not-a-cursor")


async def test_mark_interrupted_only_touches_active_jobs(storage):
    running = await storage.jobs.insert(JobRecord(owner="a", tool="t", status=JobStatus.running))
    queued = await storage.jobs.insert(JobRecord(owner="b", tool="t", status=JobStatus.queued))
    done = await storage.jobs.insert(JobRecord(owner="a", tool="t", status=JobStatus.succeeded))
    assert await storage.jobs.mark_interrupted() == 2
    assert (await storage.jobs.get("a", running.id)).status == JobStatus.interrupted
    assert (await storage.jobs.get("b", queued.id)).status == JobStatus.interrupted
    assert (await storage.jobs.get("a", done.id)).status == JobStatus.succeeded


async def test_blobs_are_content_addressed(storage):
    data = b"\x00\x01" * 50_000
    sha = await storage.blobs.put(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert await storage.blobs.put(data) == sha  # idempotent
    assert await storage.blobs.get(sha) == data
    assert await storage.blobs.exists(sha)
    await storage.blobs.delete(sha)
    assert not await storage.blobs.exists(sha)
    with pytest.raises(StorageError):
        await storage.blobs.get(sha)


async def test_artifacts_with_provenance_and_shared_blob_refcount(storage):
    data = b"RIFF....WAVE"
    sha = await storage.blobs.put(data)
    a1 = await storage.artifacts.insert(ArtifactRecord(owner="a", kind="audio", media_type="audio/wav", name="x.wav",
                                                       size=len(data), sha256=sha, provenance={"tool": "t"}))
    await storage.artifacts.insert(ArtifactRecord(owner="b", kind="audio", media_type="audio/wav", name="y.wav",
                                                  size=len(data), sha256=sha))
    assert (await storage.artifacts.get("a", a1.id)).provenance == {"tool": "t"}
    assert await storage.artifacts.sha_in_use(sha)
    found, _ = await storage.artifacts.find("a", {"kind": "audio"})
    assert [f.id for f in found] == [a1.id]


async def test_ttl_collection_hides_expired_documents(storage):
    import time

    coll = storage.collection("telemetry")
    await coll.insert({"id": "old", "owner": "a", "created_at": 1.0, "kind": "x", "expires_at": time.time() - 5})
    await coll.insert({"id": "new", "owner": "a", "created_at": 2.0, "kind": "x", "expires_at": time.time() + 600})
    page = await coll.find("a")
    assert [d["id"] for d in page.items] == ["new"]
    assert await coll.get("a", "old") is None


async def test_playlist_snapshots_are_owner_scoped_and_expire(storage):
    import time

    from echotune_mcp.storage.records import PlaylistSnapshotRecord
    from echotune_mcp.storage.stores import PlaylistSnapshotStore

    snaps = PlaylistSnapshotStore(storage.collection("playlist_snapshots"))
    rec = await snaps.insert(PlaylistSnapshotRecord(owner="alice", provider="spotify", playlist_id="p" * 22,
                                                    tool="reorder_playlist", items=[{"id": "t", "kind": "local"}],
                                                    expires_at=time.time() + 600))
    assert rec.id.startswith("psnap_") and len(rec.id) >= 22
    assert (await snaps.get("alice", rec.id)).items == [{"id": "t", "kind": "local"}]
    assert await snaps.get("bob", rec.id) is None
    found, _ = await snaps.find("alice", {"provider": "spotify", "playlist_id": "p" * 22})
    assert [f.id for f in found] == [rec.id]
    old = await snaps.insert(PlaylistSnapshotRecord(owner="alice", provider="spotify", playlist_id="q" * 22,
                                                    tool="dedupe_playlist", expires_at=time.time() - 1))
    assert await snaps.get("alice", old.id) is None
    assert await storage.collection("playlist_snapshots").purge_expired() == 1
    assert await storage.collection("playlist_snapshots").purge_expired() == 0
    assert await snaps.get("alice", rec.id) is not None
