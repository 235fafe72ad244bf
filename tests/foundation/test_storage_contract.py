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


async def test_only_jobs_whose_lease_ran_out_are_interrupted(storage):
    import time

    live = await storage.jobs.insert(JobRecord(owner="a", tool="t", status=JobStatus.running,
                                               lease_owner="lease_live", lease_expires_at=time.time() + 60))
    expired = await storage.jobs.insert(JobRecord(owner="a", tool="t", status=JobStatus.running,
                                                  lease_owner="lease_live", lease_expires_at=time.time() - 1))
    orphan = await storage.jobs.insert(JobRecord(owner="b", tool="t", status=JobStatus.queued,
                                                 lease_owner="lease_gone", lease_expires_at=time.time() + 60))
    legacy = await storage.jobs.insert(JobRecord(owner="b", tool="t", status=JobStatus.running))  # from before leases
    done = await storage.jobs.insert(JobRecord(owner="a", tool="t", status=JobStatus.succeeded,
                                               lease_owner="lease_gone", lease_expires_at=time.time() - 1))
    # The jobs snapshot is read before the leases, so a lease registered meanwhile is never mistaken for dead.
    assert await storage.jobs.interrupt_dead(alive_leases=lambda: _const({"lease_live"})) == 3
    assert (await storage.jobs.get("a", live.id)).status == JobStatus.running
    for job in (expired, orphan, legacy):
        got = await storage.jobs.get(job.owner, job.id)
        assert got.status == JobStatus.interrupted and "start it again" in got.error
    assert (await storage.jobs.get("a", done.id)).status == JobStatus.succeeded
    # A heartbeat renews only its own jobs that are still active (an interrupted job stays interrupted).
    assert await storage.jobs.renew_leases("lease_live", [live.id, expired.id], time.time() + 60) == 1


async def _const(value):
    return value


async def test_job_slots_are_taken_atomically(storage):
    import asyncio
    import time

    exp = time.time() + 60
    got = await asyncio.gather(*(storage.jobs.acquire_slot("alice", f"job_{i}", 3, "lease_a", exp) for i in range(20)))
    assert sum(s is not None for s in got) == 3
    assert await storage.jobs.acquire_slot("bob", "job_b", 3, "lease_a", exp) is not None  # per owner
    slot = next(s for s in got if s is not None)
    held_by = next(f"job_{i}" for i, s in enumerate(got) if s == slot)
    # Releasing with the wrong job leaves the slot alone; with its job frees it for the next one.
    assert await storage.jobs.release_slot("alice", slot, "job_other") is False
    assert await storage.jobs.acquire_slot("alice", "job_x", 3, "lease_a", exp) is None
    assert await storage.jobs.release_slot("alice", slot, held_by) is True
    assert await storage.jobs.acquire_slot("alice", "job_x", 3, "lease_a", exp) is not None


async def test_a_dead_lease_gives_its_slots_back(storage):
    import time

    for i in range(2):
        assert await storage.jobs.acquire_slot("alice", f"old_{i}", 2, "lease_dead", time.time() + 60)
    assert await storage.jobs.acquire_slot("alice", "new", 2, "lease_b", time.time() + 60) is None
    # A live holder keeps its slots; once its lease is gone they can be taken over.
    assert await storage.jobs.reclaim_slot("alice", "new", 2, "lease_b", time.time() + 60,
                                           alive_leases=lambda: _const({"lease_dead"})) is None
    assert await storage.jobs.reclaim_slot("alice", "new", 2, "lease_b", time.time() + 60,
                                           alive_leases=lambda: _const(set())) is not None


async def test_process_leases(storage):
    import os
    import time

    leases = storage.leases
    mine = await leases.register(ttl_s=60)
    assert mine.pid == os.getpid()
    assert mine.id in await leases.alive_ids()
    # A lease on this machine whose process is gone is dead at once; one that ran out is dead anywhere.
    ghost = await leases.register(ttl_s=60, pid=2**22 + 12345)
    stale = await leases.register(ttl_s=60)
    await storage.collection("leases").update("system", stale.id, {"expires_at": time.time() - 1})
    alive = await leases.alive_ids()
    assert mine.id in alive and ghost.id not in alive and stale.id not in alive
    assert await leases.renew(mine.id, 60) is True
    await leases.drop(mine.id)
    assert await leases.renew(mine.id, 60) is False
    assert mine.id not in await leases.alive_ids()


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


async def test_listening_events_insert_absent_in_batches_owner_scoped(storage):
    from echotune_mcp.storage.records import ListeningEventRecord

    def event(owner: str, n: int, import_id: str = "imp_1") -> dict:
        return ListeningEventRecord(id=f"lev_{owner}_{n}", owner=owner, source="spotify", format="spotify_extended",
                                    import_id=import_id, played_at=1000.0 + n, track=f"T{n}", artist="A",
                                    item_key=f"spotify:track:{n}").model_dump(mode="json")

    events = storage.listening
    assert await events.insert_absent([event("alice", i) for i in range(5)]) == 5
    # stored ones and a repeat inside the batch are skipped; the new ones still go in (unordered batch)
    assert await events.insert_absent([event("alice", i) for i in (3, 4, 5, 5, 6)]) == 2
    assert await events.insert_absent([]) == 0
    assert await events.count("alice") == 7
    got = await events.get("alice", "lev_alice_2")
    assert got is not None and got.played_at == 1002.0 and got.item_key == "spotify:track:2"
    # another principal sees none of it
    assert await events.count("bob") == 0 and await events.get("bob", "lev_alice_2") is None
    assert (await events.find("bob", limit=50))[0] == []
    # undo is per import and owner-scoped: bob's undo of alice's import id deletes nothing of hers
    assert await events.insert_absent([event("alice", 10, "imp_2"), event("bob", 10, "imp_1")]) == 2
    assert await events.count("alice", {"import_id": "imp_1"}) == 7
    assert await events.delete_import("bob", "imp_1") == 1
    assert await events.delete_import("alice", "imp_2") == 1
    assert await events.count("alice") == 7 and await events.count("bob") == 0
    found, _ = await events.find("alice", {"source": "spotify", "item_key": ["spotify:track:0", "spotify:track:6"]})
    assert sorted(e.id for e in found) == ["lev_alice_0", "lev_alice_6"]
