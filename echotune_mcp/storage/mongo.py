"""The MongoDB backend (``pymongo.AsyncMongoClient``), with artifact blobs in GridFS.

Several server replicas can point at one database and share jobs, artifacts and blobs. Indexes
are created at start-up for exactly the queries the typed stores make.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

from gridfs import AsyncGridFSBucket
from gridfs.errors import NoFile
from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument
from pymongo.errors import BulkWriteError, DuplicateKeyError, PyMongoError

from .base import (
    Backend,
    BlobStore,
    Collection,
    CollectionSpec,
    DuplicateKey,
    Page,
    StorageError,
    Where,
    decode_cursor,
    encode_cursor,
)


def _plain(value: Any) -> Any:
    return value.value if hasattr(value, "value") else value


def _filter(owner: str | None, where: Where | None, ttl_field: str | None) -> dict[str, Any]:
    query: dict[str, Any] = {}
    if owner is not None:
        query["owner"] = owner
    for key, want in (where or {}).items():
        field = "_id" if key == "id" else key
        if isinstance(want, list | tuple | set | frozenset):
            query[field] = {"$in": [_plain(w) for w in want]}
        else:
            query[field] = _plain(want)
    if ttl_field:
        # The TTL monitor runs about once a minute; hide expired documents in between.
        query["$or"] = [{ttl_field: None}, {ttl_field: {"$gt": time.time()}}]
    return query


def _to_doc(raw: dict[str, Any] | None) -> dict[str, Any] | None:
    if raw is None:
        return None
    raw = dict(raw)
    raw["id"] = raw.pop("_id")
    raw.pop("_expires", None)
    return raw


class MongoCollection(Collection):
    def __init__(self, coll: Any, spec: CollectionSpec):
        self.coll = coll
        self.spec = spec

    async def create_indexes(self) -> None:
        await self.coll.create_index([("owner", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)])
        for field in self.spec.indexed:
            await self.coll.create_index([("owner", ASCENDING), (field, ASCENDING), ("created_at", DESCENDING)])
        if self.spec.ttl_field:
            # Mongo's TTL index needs a BSON date; ``_expires`` mirrors the epoch field as one.
            await self.coll.create_index([("_expires", ASCENDING)], expireAfterSeconds=0)

    def _prepare(self, doc: dict[str, Any]) -> dict[str, Any]:
        out = {k: _plain(v) for k, v in doc.items() if k != "id"}
        out["_id"] = doc["id"]
        if self.spec.ttl_field and doc.get(self.spec.ttl_field):
            from datetime import UTC, datetime

            out["_expires"] = datetime.fromtimestamp(doc[self.spec.ttl_field], UTC)
        return out

    async def insert(self, doc: dict[str, Any]) -> None:
        try:
            await self.coll.insert_one(self._prepare(doc))
        except DuplicateKeyError as exc:
            raise DuplicateKey(f"{self.spec.name} {doc.get('id')!r} already exists") from exc

    async def insert_absent(self, docs: Sequence[dict[str, Any]]) -> int:
        if not docs:
            return 0
        try:
            res = await self.coll.insert_many([self._prepare(d) for d in docs], ordered=False)
            return len(res.inserted_ids)
        except BulkWriteError as exc:
            details = exc.details or {}
            others = [e for e in details.get("writeErrors", []) if e.get("code") != 11000]
            if others or details.get("writeConcernErrors"):
                first = (others or details.get("writeConcernErrors"))[0]
                raise StorageError(f"writing to {self.spec.name} failed: {first.get('errmsg', first)}") from exc
            return int(details.get("nInserted", 0))

    async def delete_where(self, owner: str, where: Where) -> int:
        if owner is None:
            raise StorageError("delete_where is owner-scoped; an owner is required")
        res = await self.coll.delete_many(_filter(owner, where, None))
        return res.deleted_count

    async def get(self, owner: str, id_: str) -> dict[str, Any] | None:
        return _to_doc(await self.coll.find_one(_filter(owner, {"id": id_}, self.spec.ttl_field)))

    async def update(
        self, owner: str, id_: str, fields: dict[str, Any], *, expect: Where | None = None
    ) -> dict[str, Any] | None:
        query = _filter(owner, {"id": id_, **(expect or {})}, None)
        update = {k: _plain(v) for k, v in fields.items() if k != "id"}
        raw = await self.coll.find_one_and_update(query, {"$set": update}, return_document=ReturnDocument.AFTER)
        return _to_doc(raw)

    async def update_where(self, where: Where, fields: dict[str, Any]) -> int:
        res = await self.coll.update_many(_filter(None, where, None), {"$set": {k: _plain(v) for k, v in fields.items()}})
        return res.modified_count

    async def delete(self, owner: str, id_: str, *, expect: Where | None = None) -> bool:
        res = await self.coll.delete_one(_filter(owner, {"id": id_, **(expect or {})}, None))
        return res.deleted_count > 0

    async def find(
        self, owner: str | None, where: Where | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        query = _filter(owner, where, self.spec.ttl_field)
        if cursor:
            created_at, id_ = decode_cursor(cursor)
            query = {
                "$and": [
                    query,
                    {"$or": [{"created_at": {"$lt": created_at}}, {"created_at": created_at, "_id": {"$lt": id_}}]},
                ]
            }
        found = self.coll.find(query).sort([("created_at", DESCENDING), ("_id", DESCENDING)]).limit(limit + 1)
        docs = [_to_doc(d) for d in await found.to_list(length=limit + 1)]
        more = len(docs) > limit
        docs = docs[:limit]
        nxt = encode_cursor(docs[-1]["created_at"], docs[-1]["id"]) if more and docs else None
        return Page(items=docs, next_cursor=nxt)  # type: ignore[arg-type]

    async def purge_expired(self) -> int:
        """Mongo's TTL monitor does this about once a minute; this makes it immediate."""
        if not self.spec.ttl_field:
            return 0
        res = await self.coll.delete_many({self.spec.ttl_field: {"$ne": None, "$lte": time.time()}})
        return res.deleted_count

    async def count(self, owner: str | None, where: Where | None = None) -> int:
        return await self.coll.count_documents(_filter(owner, where, self.spec.ttl_field))


class GridFSBlobStore(BlobStore):
    """Blobs in GridFS under their sha256 as filename, so every replica sees the same bytes."""

    def __init__(self, bucket: AsyncGridFSBucket):
        self.bucket = bucket

    async def _file_id(self, sha256: str) -> Any | None:
        async for f in self.bucket.find({"filename": sha256}).limit(1):
            return f._id
        return None

    async def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        if await self._file_id(sha) is None:
            # GridFS writes chunks first and the files document last, so a crash leaves no visible half-blob.
            await self.bucket.upload_from_stream(sha, data)
        return sha

    async def get(self, sha256: str) -> bytes:
        try:
            stream = await self.bucket.open_download_stream_by_name(sha256)
            return await stream.read()
        except NoFile as exc:
            raise StorageError(f"blob {sha256} is missing from GridFS") from exc

    async def exists(self, sha256: str) -> bool:
        return await self._file_id(sha256) is not None

    async def delete(self, sha256: str) -> None:
        fid = await self._file_id(sha256)
        if fid is not None:
            await self.bucket.delete(fid)


class MongoBackend(Backend):
    name = "mongodb"

    def __init__(self, uri: str, db: str):
        self.uri = uri
        self.db_name = db
        self.client: AsyncMongoClient | None = None
        self._collections: dict[str, MongoCollection] = {}
        self._blobs: GridFSBlobStore | None = None

    async def open(self, specs: Iterable[CollectionSpec]) -> None:
        self.client = AsyncMongoClient(self.uri, serverSelectionTimeoutMS=5000, tz_aware=True)
        db = self.client[self.db_name]
        try:
            for spec in specs:
                coll = MongoCollection(db[spec.name], spec)
                await coll.create_indexes()
                self._collections[spec.name] = coll
        except PyMongoError as exc:
            raise StorageError(f"cannot open MongoDB at the configured ECHOTUNE_MONGODB_URI: {exc}") from exc
        self._blobs = GridFSBlobStore(AsyncGridFSBucket(db, bucket_name="blobs"))

    def collection(self, name: str) -> Collection:
        return self._collections[name]

    @property
    def blobs(self) -> BlobStore:
        assert self._blobs is not None
        return self._blobs

    async def close(self) -> None:
        if self.client is not None:
            await self.client.close()
            self.client = None
