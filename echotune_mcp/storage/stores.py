"""Typed per-aggregate stores over a backend's collections, written once for both backends."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..telemetry import span
from .base import Collection, CollectionSpec, DuplicateKey, Page, Where
from .records import (
    ACTIVE_STATUSES,
    ArtifactRecord,
    JobRecord,
    JobStatus,
    LeaseRecord,
    ListeningEventRecord,
    PlaylistSnapshotRecord,
    now,
    this_host,
)

T = TypeVar("T", bound=BaseModel)

JOBS = CollectionSpec("jobs", indexed=("status", "tool", "lease_owner", "lease_expires_at"))
# A client's quota as documents with fixed ids ``slot_<owner>_<n>``, n < quota: taking one is an insert that
# only one caller can win, on either backend and across processes. Held until the job's work has stopped.
JOB_SLOTS = CollectionSpec("job_slots", indexed=("job_id", "lease_owner", "lease_expires_at"))
# One per running server process (``LeaseRecord``).
LEASES = CollectionSpec("leases", indexed=("expires_at",))
ARTIFACTS = CollectionSpec("artifacts", indexed=("kind", "sha256", "job_id"))
# Room for the later aggregates; their collections exist from day one so indexes are in place.
TOKENS = CollectionSpec("tokens", indexed=("provider",))
# Plays imported from listening histories (``ListeningEventRecord``); ids derived from the event, so re-imports dedupe.
LISTENING_EVENTS = CollectionSpec("listening_events", indexed=("source", "import_id", "played_at", "item_key"))
# Principals who opted in to server-wide listener segments (storage/consent.py); one per owner, deleted on opt-out.
SEGMENT_OPTINS = CollectionSpec("segment_optins")
TELEMETRY = CollectionSpec("telemetry", indexed=("kind",), ttl_field="expires_at")
IDEMPOTENCY = CollectionSpec("idempotency", indexed=("key",), ttl_field="expires_at")
PLAYLIST_SNAPSHOTS = CollectionSpec("playlist_snapshots", indexed=("provider", "playlist_id"), ttl_field="expires_at")
# What a deleted artifact leaves for licence checks: its rights and lineage, never its bytes (licensing.service).
TOMBSTONES = CollectionSpec("tombstones")
# Per-principal settings an operator sets (granted local roots, quota overrides; auth/tenants.py), one per owner.
PRINCIPAL_SETTINGS = CollectionSpec("principal_settings", indexed=("updated_at",))  # CAS version
# The security audit log (auth/audit.py): owner-scoped where there is a principal, dropped after its TTL.
AUDIT = CollectionSpec("audit", indexed=("event",), ttl_field="expires_at")
# Each principal's data key, wrapped by the server key (privacy/keys.py); deleting it crypto-shreds their events.
PRINCIPAL_KEYS = CollectionSpec("principal_keys", indexed=("kid",))  # kid: compare-and-set on re-wrap
ALL_SPECS = (JOBS, ARTIFACTS, TOKENS, LISTENING_EVENTS, TELEMETRY, IDEMPOTENCY, PLAYLIST_SNAPSHOTS, TOMBSTONES,
             JOB_SLOTS, LEASES, SEGMENT_OPTINS, PRINCIPAL_SETTINGS, AUDIT, PRINCIPAL_KEYS)
AliveLeases = Callable[[], Awaitable[set[str]]]
INTERRUPTED = "the server stopped while this job was running; start it again"


class RecordStore(Generic[T]):
    """Owner-scoped CRUD for one record type; every call is a ``storage.*`` span."""

    model: type[T]

    def __init__(self, collection: Collection, model: type[T]):
        self.coll = collection
        self.model = model
        self.name = collection.spec.name

    def _span(self, op: str, **attrs: Any):
        return span(f"storage.{self.name}.{op}", **{"db.collection.name": self.name, "db.operation.name": op, **attrs})

    async def insert(self, record: T) -> T:
        with self._span("insert"):
            await self.coll.insert(record.model_dump(mode="json"))
        return record

    async def get(self, owner: str, id_: str) -> T | None:
        with self._span("get"):
            doc = await self.coll.get(owner, id_)
        return self.model.model_validate(doc) if doc else None

    async def update(self, owner: str, id_: str, fields: dict[str, Any], *, expect: Where | None = None) -> T | None:
        with self._span("update"):
            plain = {k: (v.value if hasattr(v, "value") else v) for k, v in fields.items()}
            doc = await self.coll.update(owner, id_, plain, expect=expect)
        return self.model.model_validate(doc) if doc else None

    async def delete(self, owner: str, id_: str) -> bool:
        with self._span("delete"):
            return await self.coll.delete(owner, id_)

    async def find(
        self, owner: str, where: Where | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[T], str | None]:
        with self._span("find"):
            page: Page = await self.coll.find(owner, where, limit=limit, cursor=cursor)
        return [self.model.model_validate(d) for d in page.items], page.next_cursor

    async def count(self, owner: str, where: Where | None = None) -> int:
        with self._span("count"):
            return await self.coll.count(owner, where)


class JobStore(RecordStore[JobRecord]):
    def __init__(self, collection: Collection, slots: Collection):
        super().__init__(collection, JobRecord)
        self.slots = slots

    async def set_status(
        self, owner: str, id_: str, status: JobStatus, *, expect: Iterable[JobStatus] | None = None,
        lease_owner: str | None = None, **fields: Any
    ) -> JobRecord | None:
        """Move a job to ``status`` only from one of ``expect`` (compare-and-set, so no lost transitions), and with
        ``lease_owner`` only while that process still holds the job (not after another replica took it over)."""
        data = {"status": status.value, "updated_at": now(), **fields}
        if status.terminal:
            data.setdefault("finished_at", now())
        exp: dict[str, Any] = {"status": [s.value for s in expect]} if expect is not None else {}
        if lease_owner is not None:
            exp["lease_owner"] = lease_owner
        return await self.update(owner, id_, data, expect=exp or None)

    # -- leases ------------------------------------------------------------------------------------------------
    async def renew_leases(self, lease_owner: str, job_ids: list[str], expires_at: float) -> int:
        """The heartbeat: push the lease of these jobs (still active, still held by ``lease_owner``) forward."""
        with self._span("renew_leases"):
            if not job_ids:
                return 0
            active = [s.value for s in ACTIVE_STATUSES]
            return await self.coll.update_where({"id": job_ids, "lease_owner": lease_owner, "status": active},
                                                {"lease_expires_at": expires_at})

    async def orphaned(self, alive_leases: AliveLeases) -> list[dict[str, Any]]:
        """Active jobs whose process's lease is dead: they will not finish where they were started.

        Active jobs are read first, then the live leases: a process registers its lease before it inserts a
        job, so a job seen here whose lease is not alive really belongs to a dead process.
        """
        active = [s.value for s in ACTIVE_STATUSES]
        jobs: list[dict[str, Any]] = []
        cursor = None
        while True:
            page = await self.coll.find(None, {"status": active}, limit=500, cursor=cursor)
            jobs.extend(page.items)
            cursor = page.next_cursor
            if cursor is None:
                break
        if not jobs:
            return []
        alive = await alive_leases()
        at = time.time()
        return [d for d in jobs
                if not (d.get("lease_owner") in alive and d.get("lease_expires_at") is not None
                        and d["lease_expires_at"] > at)]

    async def interrupt_dead(self, alive_leases: AliveLeases) -> int:
        """Jobs left queued or running by a process whose lease is dead did not finish; say so.

        Each job is compared and set on the lease it was seen with, so a heartbeat that renews it meanwhile
        wins, and so does a replica that took it over (``take_over``): a job ends one way, exactly once.
        """
        with self._span("interrupt_dead"):
            active = [s.value for s in ACTIVE_STATUSES]
            interrupted = 0
            for doc in await self.orphaned(alive_leases):
                at = time.time()
                done = await self.coll.update(
                    doc["owner"], doc["id"],
                    {"status": JobStatus.interrupted.value, "error": INTERRUPTED, "finished_at": at, "updated_at": at},
                    expect={"status": active, "lease_owner": doc.get("lease_owner"),
                            "lease_expires_at": doc.get("lease_expires_at")},
                )
                interrupted += done is not None
            return interrupted

    async def take_over(self, doc: dict[str, Any], lease_owner: str, expires_at: float, replica: str,
                        note: dict[str, Any], message: str) -> JobRecord | None:
        """Claim an orphaned job to run it again here: a compare-and-set on the dead lease it was seen with, the
        same one ``interrupt_dead`` makes, so among all replicas exactly one claims or interrupts it. The job
        is ``running`` under the new lease with its attempt counted and the takeover noted; None if lost."""
        with self._span("take_over"):
            active = [s.value for s in ACTIVE_STATUSES]
            at = time.time()
            fields = {"status": JobStatus.running.value, "lease_owner": lease_owner, "lease_expires_at": expires_at,
                      "replica": replica, "attempt": int(doc.get("attempt") or 1) + 1, "progress": 0.0,
                      "message": message, "artifact_ids": [], "updated_at": at,
                      "started_at": doc.get("started_at") or at,
                      "takeovers": [*(doc.get("takeovers") or []), note]}
            return await self.update(doc["owner"], doc["id"], fields,
                                     expect={"status": active, "lease_owner": doc.get("lease_owner"),
                                             "lease_expires_at": doc.get("lease_expires_at")})

    async def move_slot(self, job_id: str, lease_owner: str, expires_at: float) -> str | None:
        """The quota slot a taken-over job held, now under the new lease; its id, or None when it lapsed and
        was reclaimed by another job meanwhile (the job then runs without one rather than not at all)."""
        with self._span("move_slot"):
            page = await self.slots.find(None, {"job_id": job_id}, limit=1)
            if not page.items:
                return None
            doc = page.items[0]
            moved = await self.slots.update(doc["owner"], doc["id"], {"lease_owner": lease_owner,
                                                                      "lease_expires_at": expires_at},
                                            expect={"job_id": job_id})
            return doc["id"] if moved is not None else None

    # -- quota -------------------------------------------------------------------------------------------------
    @staticmethod
    def _slot_id(owner: str, n: int) -> str:
        return f"slot_{hashlib.sha256(owner.encode()).hexdigest()[:32]}_{n}"

    async def acquire_slot(self, owner: str, job_id: str, limit: int, lease_owner: str, expires_at: float) -> str | None:
        """Take one of the owner's ``limit`` slots for ``job_id``; its id, or None when all are held."""
        with self._span("acquire_slot"):
            for n in range(limit):
                slot = self._slot_id(owner, n)
                try:
                    await self.slots.insert({"id": slot, "owner": owner, "created_at": now(), "job_id": job_id,
                                             "lease_owner": lease_owner, "lease_expires_at": expires_at})
                    return slot
                except DuplicateKey:
                    continue
            return None

    async def reclaim_slot(self, owner: str, job_id: str, limit: int, lease_owner: str, expires_at: float,
                           alive_leases: AliveLeases) -> str | None:
        """Take over a slot whose holder's lease is dead (it crashed before giving it back); its id or None."""
        with self._span("reclaim_slot"):
            held = [d for d in [await self.slots.get(owner, self._slot_id(owner, n)) for n in range(limit)] if d]
            if len(held) < limit:  # one was given back meanwhile
                return await self.acquire_slot(owner, job_id, limit, lease_owner, expires_at)
            alive = await alive_leases()  # read after the slots, as in interrupt_dead
            at = time.time()
            for doc in held:
                if doc.get("lease_owner") in alive and (doc.get("lease_expires_at") or 0) > at:
                    continue
                taken = await self.slots.update(
                    owner, doc["id"], {"job_id": job_id, "lease_owner": lease_owner, "lease_expires_at": expires_at},
                    expect={"job_id": doc["job_id"], "lease_owner": doc.get("lease_owner"),
                            "lease_expires_at": doc.get("lease_expires_at")},
                )
                if taken is not None:
                    return doc["id"]
            return None

    async def release_slot(self, owner: str, slot: str, job_id: str) -> bool:
        """Give the slot back, if ``job_id`` still holds it (a dead lease's slot may have been taken over)."""
        with self._span("release_slot"):
            return await self.slots.delete(owner, slot, expect={"job_id": job_id})

    async def renew_slots(self, lease_owner: str, job_ids: list[str], expires_at: float) -> int:
        """Keep the slots of work that is still going (a slot whose release failed is left to lapse)."""
        with self._span("renew_slots"):
            if not job_ids:
                return 0
            return await self.slots.update_where({"lease_owner": lease_owner, "job_id": job_ids},
                                                 {"lease_expires_at": expires_at})

    async def statuses(self, job_ids: list[str]) -> dict[str, JobStatus]:
        """System-wide status of these jobs (the heartbeat's check for cancels made by another process)."""
        if not job_ids:
            return {}
        page = await self.coll.find(None, {"id": job_ids}, limit=len(job_ids))
        return {d["id"]: JobStatus(d["status"]) for d in page.items}

    async def holders(self, job_ids: list[str]) -> dict[str, tuple[JobStatus, str | None]]:
        """Status and lease holder of these jobs: the heartbeat's check for cancels made by another process and
        for jobs another replica took over while this one was frozen."""
        if not job_ids:
            return {}
        page = await self.coll.find(None, {"id": job_ids}, limit=len(job_ids))
        return {d["id"]: (JobStatus(d["status"]), d.get("lease_owner")) for d in page.items}


class LeaseStore:
    """The leases of the server processes sharing this storage (one document each)."""

    OWNER = "system"

    def __init__(self, collection: Collection):
        self.coll = collection
        self.host = this_host()

    async def register(self, ttl_s: float, *, pid: int | None = None, lease_id: str | None = None,
                       name: str | None = None) -> LeaseRecord:
        """A new lease, or ``lease_id`` again after another process dropped it while this one was frozen."""
        lease = LeaseRecord(expires_at=time.time() + ttl_s, pid=os.getpid() if pid is None else pid, host=self.host,
                            name=name)
        if lease_id is not None:
            lease.id = lease_id
        with span("storage.leases.register"):
            await self.coll.insert(lease.model_dump(mode="json"))
        return lease

    async def renew(self, lease_id: str, ttl_s: float) -> bool:
        """Push the lease forward; False when it is gone (another process found it dead and dropped it)."""
        with span("storage.leases.renew"):
            return await self.coll.update(self.OWNER, lease_id, {"expires_at": time.time() + ttl_s}) is not None

    async def all(self) -> list[LeaseRecord]:
        out: list[LeaseRecord] = []
        cursor = None
        while True:
            page = await self.coll.find(self.OWNER, limit=500, cursor=cursor)
            out.extend(LeaseRecord.model_validate(d) for d in page.items)
            cursor = page.next_cursor
            if cursor is None:
                return out

    async def alive_ids(self) -> set[str]:
        at = time.time()
        return {lease.id for lease in await self.all() if not lease.dead(at, self.host)}

    async def drop_dead(self) -> int:
        """Remove dead leases (after their jobs were interrupted); a renewal that races this wins."""
        at = time.time()
        dropped = 0
        for lease in await self.all():
            if lease.dead(at, self.host):
                dropped += await self.coll.delete(self.OWNER, lease.id, expect={"expires_at": lease.expires_at})
        return dropped

    async def get(self, lease_id: str) -> LeaseRecord | None:
        doc = await self.coll.get(self.OWNER, lease_id)
        return LeaseRecord.model_validate(doc) if doc else None

    async def drop(self, lease_id: str) -> None:
        with span("storage.leases.drop"):
            await self.coll.delete(self.OWNER, lease_id)


class ArtifactStore(RecordStore[ArtifactRecord]):
    def __init__(self, collection: Collection):
        super().__init__(collection, ArtifactRecord)

    async def sha_in_use(self, sha256: str) -> bool:
        """Whether any owner's artifact still points at this blob (blobs are shared across owners)."""
        with self._span("sha_in_use"):
            return await self.coll.count(None, {"sha256": sha256}) > 0


class PlaylistSnapshotStore(RecordStore[PlaylistSnapshotRecord]):
    def __init__(self, collection: Collection):
        super().__init__(collection, PlaylistSnapshotRecord)


class ListeningEventStore(RecordStore[ListeningEventRecord]):
    """The owner's listening events: written in deduplicating batches, undone per import.

    With ``keys`` (``privacy.keys.PrincipalKeys``) what identifies the music a person played is sealed at rest
    with their own data key: the fields in ``SEALED`` are stored as one AES-GCM value bound to owner and event
    id, and ``item_key`` (filtered on) as a keyed hash of itself. Reads open them again, so callers see plain
    records; once the owner's key is deleted their events can never be opened (they read as gone). Ids,
    times, sources and import ids stay clear: dedupe and owner-scoped queries work as before.
    """

    SEALED = ("track", "artist", "album", "item_key", "spotify_uri", "recording_mbid", "isrc", "ytmusic_video_id",
              "external_user")

    def __init__(self, collection: Collection, keys: Any = None):
        super().__init__(collection, ListeningEventRecord)
        self.keys = keys

    async def _seal(self, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.keys is None:
            return docs
        out = []
        keys: dict[str, Any] = {}
        for d in docs:
            owner = d["owner"]
            key = keys.get(owner) or keys.setdefault(owner, await self.keys.get(owner))
            secret = {f: d[f] for f in self.SEALED if d.get(f) is not None}
            sealed = {**d, **{f: None for f in self.SEALED}, "sealed": key.seal(d["id"], secret)}
            sealed["item_key"] = key.lookup(str(d["item_key"]))
            out.append(sealed)
        return out

    async def _open(self, owner: str, docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.keys is None or not any("sealed" in d for d in docs):
            return docs
        key = await self.keys.get(owner, create=False)
        out = []
        for d in docs:
            if "sealed" not in d:
                out.append(d)
            # No key, or sealed by a key since deleted (delete_my_data; a restored backup row): it reads as gone.
            # A value of the current key that does not open was tampered with, and raises.
            elif key is not None and key.sealed_by_me(d["sealed"]):
                out.append({**{k: v for k, v in d.items() if k != "sealed"}, **key.open(d["id"], d["sealed"])})
        return out

    async def _where(self, owner: str, where: Where | None) -> Where | None:
        if self.keys is None or not where or "item_key" not in where:
            return where
        key = await self.keys.get(owner)
        want = where["item_key"]
        values = [str(w) for w in want] if isinstance(want, list | tuple | set | frozenset) else [str(want)]
        # the keyed hash, and the clear value for events stored before sealing (read as they are)
        return {**where, "item_key": [key.lookup(v) for v in values] + values}

    async def insert(self, record: ListeningEventRecord) -> ListeningEventRecord:
        with self._span("insert"):
            await self.coll.insert((await self._seal([record.model_dump(mode="json")]))[0])
        return record

    async def insert_absent(self, docs: list[dict[str, Any]]) -> int:
        """Store the events not stored yet (documents of ``ListeningEventRecord``); how many were new."""
        with self._span("insert_absent", **{"db.operation.batch.size": len(docs)}):
            return await self.coll.insert_absent(await self._seal(docs))

    async def get(self, owner: str, id_: str) -> ListeningEventRecord | None:
        with self._span("get"):
            doc = await self.coll.get(owner, id_)
            opened = await self._open(owner, [doc]) if doc else []
        return self.model.model_validate(opened[0]) if opened else None

    async def find(self, owner: str, where: Where | None = None, *, limit: int = 50,
                   cursor: str | None = None) -> tuple[list[ListeningEventRecord], str | None]:
        with self._span("find"):
            page: Page = await self.coll.find(owner, await self._where(owner, where), limit=limit, cursor=cursor)
            docs = await self._open(owner, page.items)
        return [self.model.model_validate(d) for d in docs], page.next_cursor

    async def count(self, owner: str, where: Where | None = None) -> int:
        with self._span("count"):
            return await self.coll.count(owner, await self._where(owner, where))

    SEALED_ALL = ("system:privacy", "pkey_sealed_stored_v1")  # (owner, id) of the marker: the pass finished

    async def seal_stored(self, *, page: int = 500) -> int:
        """Seal the events a version before sealing stored in clear (a system-wide pass, once per store; resumable:
        each event is sealed by compare-and-set, and the marker is written only after a full pass); how many."""
        if self.keys is None:
            return 0
        marker = self.keys.coll
        if await marker.get(*self.SEALED_ALL) is not None:
            return 0
        sealed, cursor = 0, None
        with self._span("seal_stored"):
            while True:
                found = await self.coll.find(None, limit=page, cursor=cursor)
                for d in found.items:
                    if "sealed" in d:
                        continue
                    new = (await self._seal([d]))[0]
                    fields = {f: new[f] for f in (*self.SEALED, "sealed")}
                    done = await self.coll.update(d["owner"], d["id"], fields, expect={"item_key": d["item_key"]})
                    sealed += done is not None
                cursor = found.next_cursor
                if not cursor:
                    break
        try:
            await marker.insert({"id": self.SEALED_ALL[1], "owner": self.SEALED_ALL[0], "created_at": time.time(),
                                 "sealed": sealed})
        except DuplicateKey:  # another process finished the pass too
            pass
        return sealed

    async def update(self, owner: str, id_: str, fields: dict[str, Any], *,
                     expect: Where | None = None) -> ListeningEventRecord | None:
        if self.keys is not None and set(fields) & set(self.SEALED):
            raise NotImplementedError("sealed listening-event fields are written once, by insert")
        return await super().update(owner, id_, fields, expect=expect)

    async def delete_import(self, owner: str, import_id: str) -> int:
        """Remove what one import stored (a failed or cancelled import leaves nothing behind)."""
        with self._span("delete_import"):
            return await self.coll.delete_where(owner, {"import_id": import_id})
