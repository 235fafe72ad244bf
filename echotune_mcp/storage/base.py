"""One storage interface, two backends (embedded SQLite, MongoDB).

Backends implement a small document-collection primitive (`Collection`) and a content-addressed
`BlobStore`; the typed per-aggregate stores (`JobStore`, `ArtifactStore`, ...) are written once on
top of it, so both backends behave identically and the contract tests exercise the same code.
Every read takes the owner: there is no query path that can return another principal's record.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class StorageError(Exception):
    """A storage operation failed in a way the caller should see (not a missing record)."""


class InvalidCursor(StorageError):
    pass


class DuplicateKey(StorageError):
    """An insert met a document with the same id (the one atomic check both backends share)."""


@dataclass(frozen=True)
class CollectionSpec:
    """How an aggregate is stored: the fields it is filtered on become real columns / indexes."""

    name: str
    indexed: tuple[str, ...] = ()
    ttl_field: str | None = None  # documents whose value (epoch seconds) has passed are dropped


Where = dict[str, Any | Sequence[Any]]  # field -> value, or field -> list of allowed values


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    next_cursor: str | None


def encode_cursor(created_at: float, id_: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([created_at, id_]).encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created_at, id_ = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return float(created_at), str(id_)
    except Exception as exc:
        raise InvalidCursor("cursor is not one this server issued; pass the next_cursor of a previous page") from exc


class Collection(ABC):
    """Owner-scoped documents keyed by ``id``; ordered newest first by ``created_at`` then ``id``."""

    spec: CollectionSpec

    @abstractmethod
    async def insert(self, doc: dict[str, Any]) -> None: ...

    @abstractmethod
    async def get(self, owner: str, id_: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def update(
        self, owner: str, id_: str, fields: dict[str, Any], *, expect: Where | None = None
    ) -> dict[str, Any] | None:
        """Set ``fields`` if the document exists and matches ``expect``; return the new document or None."""

    @abstractmethod
    async def update_where(self, where: Where, fields: dict[str, Any]) -> int:
        """System-wide update (recovery after a crash); never reachable from a tool."""

    @abstractmethod
    async def delete(self, owner: str, id_: str, *, expect: Where | None = None) -> bool:
        """Delete the document if it exists and matches ``expect`` (compare-and-delete); whether it did."""

    @abstractmethod
    async def find(
        self, owner: str | None, where: Where | None = None, *, limit: int = 50, cursor: str | None = None
    ) -> Page:
        """Owner's documents matching ``where``, newest first; ``owner=None`` only for system checks."""

    @abstractmethod
    async def count(self, owner: str | None, where: Where | None = None) -> int: ...

    @abstractmethod
    async def insert_absent(self, docs: Sequence[dict[str, Any]]) -> int:
        """Insert those of ``docs`` whose id is not stored yet (nor repeated earlier in ``docs``), as one batch;
        how many were inserted. The deduplicating write: an id derived from what the document says makes a
        second write of the same thing a no-op, on either backend and across processes."""

    @abstractmethod
    async def delete_where(self, owner: str, where: Where) -> int:
        """Delete the owner's documents matching ``where`` (an owner's bulk undo); how many were deleted."""

    async def purge_expired(self) -> int:
        """Delete documents whose ``ttl_field`` has passed (they are already hidden); returns how many."""
        return 0


class BlobStore(ABC):
    """Content-addressed bytes: the key is the SHA-256, so writes are idempotent and dedupe for free."""

    @abstractmethod
    async def put(self, data: bytes) -> str:
        """Store atomically; return the sha256 hex digest."""

    @abstractmethod
    async def get(self, sha256: str) -> bytes: ...

    @abstractmethod
    async def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    async def delete(self, sha256: str) -> None: ...

    def local_path(self, sha256: str) -> Path | None:
        """A filesystem path for zero-copy reads when the backend has one."""
        return None

    # Half-written blobs. A store whose writes can leave temp files behind names each after its writer's
    # lease (``writer``), so a process sweeps only what a dead process left, never a neighbour's write.
    writer: str | None = None

    def temp_files(self) -> list[Path]:
        """Temp files present now (list them before reading the leases, so a new writer is never missed)."""
        return []

    def sweep_temp_files(self, files: list[Path], alive: set[str], grace_s: float) -> int:
        """Remove those of ``files`` whose writer's lease is not in ``alive`` (untagged ones after ``grace_s``)."""
        return 0


class Backend(ABC):
    """A storage backend: opens collections and a blob store, and closes them."""

    name: str

    @abstractmethod
    async def open(self, specs: Iterable[CollectionSpec]) -> None: ...

    @abstractmethod
    def collection(self, name: str) -> Collection: ...

    async def scrub(self) -> None:
        """After an erasure, drop what the backend keeps of deleted data on its own (SQLite's write-ahead log)."""

    def collection_names(self) -> list[str]:
        """Every collection this backend opened: the privacy export and delete walk each one."""
        return sorted(getattr(self, "_collections", {}))

    @property
    @abstractmethod
    def blobs(self) -> BlobStore: ...

    @abstractmethod
    async def close(self) -> None: ...


def matches(doc: dict[str, Any], where: Where | None) -> bool:
    """Reference semantics of ``where`` (used by backends that filter in Python and by tests)."""
    for key, want in (where or {}).items():
        have = doc.get(key)
        if isinstance(want, list | tuple | set | frozenset):
            if have not in want:
                return False
        elif have != want:
            return False
    return True
