"""Storage: one interface (typed stores over collections + blobs), embedded SQLite or MongoDB."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..config import Settings
from .base import Backend, BlobStore, Collection, StorageError
from .consent import SegmentOptInStore
from .records import ArtifactRecord, JobRecord, JobStatus
from .stores import ALL_SPECS, ArtifactStore, JobStore, LeaseStore, ListeningEventStore


@dataclass
class Storage:
    backend: Backend
    jobs: JobStore
    artifacts: ArtifactStore
    leases: LeaseStore
    listening: ListeningEventStore
    segment_optins: SegmentOptInStore
    principal_keys: Any = None  # privacy.keys.PrincipalKeys: the per-principal data keys

    @property
    def blobs(self) -> BlobStore:
        return self.backend.blobs

    def collection(self, name: str) -> Collection:
        return self.backend.collection(name)

    def collection_names(self) -> list[str]:
        return self.backend.collection_names()

    async def close(self) -> None:
        await self.backend.close()


def principal_keys(settings: Settings, backend: Backend):
    """Per-principal data keys, wrapped by the server key that seals provider tokens (privacy/keys.py)."""
    from ..privacy.keys import PrincipalKeys
    from ..providers.token_store import TokenKeyring

    keyring = TokenKeyring(settings.secret_key, settings.data_dir)
    tokens = backend.collection("tokens")
    return PrincipalKeys(backend.collection("principal_keys"), lambda: keyring.key(tokens), keyring._old_keys)


async def open_storage(settings: Settings) -> Storage:
    """The MongoDB backend when ``ECHOTUNE_MONGODB_URI`` is set, else SQLite in the data dir."""
    backend: Backend
    if settings.mongodb_uri:
        from .mongo import MongoBackend

        backend = MongoBackend(settings.mongodb_uri, settings.mongodb_db)
    else:
        from .sqlite import SqliteBackend

        backend = SqliteBackend(settings.data_dir)
    await backend.open(ALL_SPECS)
    keys = principal_keys(settings, backend)
    return Storage(backend=backend, jobs=JobStore(backend.collection("jobs"), backend.collection("job_slots")),
                   artifacts=ArtifactStore(backend.collection("artifacts")),
                   leases=LeaseStore(backend.collection("leases")),
                   listening=ListeningEventStore(backend.collection("listening_events"), keys),
                   segment_optins=SegmentOptInStore(backend.collection("segment_optins")), principal_keys=keys)


__all__ = ["Storage", "StorageError", "open_storage", "JobRecord", "ArtifactRecord", "JobStatus"]
