"""Typed per-aggregate stores over a backend's collections, written once for both backends."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..telemetry import span
from .base import Collection, CollectionSpec, Page, Where
from .records import ACTIVE_STATUSES, ArtifactRecord, JobRecord, JobStatus, PlaylistSnapshotRecord, now

T = TypeVar("T", bound=BaseModel)

JOBS = CollectionSpec("jobs", indexed=("status", "tool"))
ARTIFACTS = CollectionSpec("artifacts", indexed=("kind", "sha256", "job_id"))
# Room for the later aggregates; their collections exist from day one so indexes are in place.
TOKENS = CollectionSpec("tokens", indexed=("provider",))
LISTENING = CollectionSpec("listening", indexed=("provider", "track_id"))
TELEMETRY = CollectionSpec("telemetry", indexed=("kind",), ttl_field="expires_at")
IDEMPOTENCY = CollectionSpec("idempotency", indexed=("key",), ttl_field="expires_at")
PLAYLIST_SNAPSHOTS = CollectionSpec("playlist_snapshots", indexed=("provider", "playlist_id"), ttl_field="expires_at")
ALL_SPECS = (JOBS, ARTIFACTS, TOKENS, LISTENING, TELEMETRY, IDEMPOTENCY, PLAYLIST_SNAPSHOTS)


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
    def __init__(self, collection: Collection):
        super().__init__(collection, JobRecord)

    async def set_status(
        self, owner: str, id_: str, status: JobStatus, *, expect: Iterable[JobStatus] | None = None, **fields: Any
    ) -> JobRecord | None:
        """Move a job to ``status`` only from one of ``expect`` (compare-and-set, so no lost transitions)."""
        data = {"status": status.value, "updated_at": now(), **fields}
        if status.terminal:
            data.setdefault("finished_at", now())
        exp = {"status": [s.value for s in expect]} if expect is not None else None
        return await self.update(owner, id_, data, expect=exp)

    async def mark_interrupted(self) -> int:
        """After a crash: every job that was queued or running did not finish; say so."""
        with self._span("mark_interrupted"):
            return await self.coll.update_where(
                {"status": [s.value for s in ACTIVE_STATUSES]},
                {
                    "status": JobStatus.interrupted.value,
                    "error": "the server stopped while this job was running; start it again",
                    "finished_at": now(),
                    "updated_at": now(),
                },
            )


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
