"""Artifacts: every file the server produces or receives, with lineage and provenance.

The bytes live in the content-addressed blob store (atomic writes); the record (kind, media type,
size, sha256, parents, job, provenance) is one document, inserted only after its blob is safely
on disk, so a crash can leave an unreferenced blob but never a record without its bytes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from .errors import BadInput, NotFound
from .storage import Storage
from .storage.records import ArtifactRecord
from .telemetry import span

ARTIFACT_URI = "echotune://artifacts/{id}"
HOW_TO_LIST = "call list_artifacts to see the artifact ids you own"

KINDS = ("audio", "stem", "preview", "midi", "image", "json", "arrangement", "upload", "manifest", "export",
         "daw_export")


def artifact_uri(artifact_id: str, suffix: str = "") -> str:
    return f"echotune://artifacts/{artifact_id}" + (f"/{suffix}" if suffix else "")


def parse_artifact_uri(ref: str) -> str | None:
    """The artifact id in ``echotune://artifacts/{id}[/...]``, or None if ``ref`` is not such a URI."""
    prefix = "echotune://artifacts/"
    if not ref.startswith(prefix):
        return None
    return ref[len(prefix):].split("/", 1)[0] or None


def package_version() -> str:
    try:
        return importlib.metadata.version("echotune-mcp")
    except importlib.metadata.PackageNotFoundError:  # running from a checkout without install
        from . import __version__

        return __version__


CreatedHook = Callable[["ArtifactService", ArtifactRecord], Awaitable[None]]
DeletedHook = Callable[["ArtifactService", ArtifactRecord], Awaitable[None]]
AdmissionHook = Callable[[str, int, str], Awaitable[None]]  # (owner, size in bytes, kind); raises to refuse


class ArtifactService:
    def __init__(self, storage: Storage):
        self.storage = storage
        self._created_hooks: list[CreatedHook] = []
        self._deleted_hooks: list[DeletedHook] = []
        self._admission_hooks: list[AdmissionHook] = []

    def on_admission(self, hook: AdmissionHook) -> None:
        """Run ``hook(owner, size, kind)`` before each artifact is stored; it refuses one by raising (a quota)."""
        self._admission_hooks.append(hook)

    def on_created(self, hook: CreatedHook) -> None:
        """Run ``hook`` after each artifact is stored (e.g. to sign a content-credentials manifest)."""
        self._created_hooks.append(hook)

    def on_deleted(self, hook: DeletedHook) -> None:
        """Run ``hook`` before each artifact's record is deleted (e.g. to keep a tombstone of its rights);
        a hook that fails stops the delete, so nothing the hook must keep is lost."""
        self._deleted_hooks.append(hook)

    async def create(
        self,
        *,
        owner: str,
        data: bytes,
        kind: str,
        media_type: str,
        name: str,
        parents: list[str] | None = None,
        job_id: str | None = None,
        meta: dict[str, Any] | None = None,
        provenance: dict[str, Any] | None = None,
        license: str | None = None,
    ) -> ArtifactRecord:
        if kind not in KINDS:
            raise ValueError(f"unknown artifact kind {kind!r}")
        parent_records = [await self.get(owner, p) for p in parents or []]
        for admit in self._admission_hooks:
            await admit(owner, len(data), kind)
        with span("artifact.create", **{"echotune.artifact.kind": kind, "echotune.artifact.size": len(data)}):
            sha = await self.storage.blobs.put(data)
            record = ArtifactRecord(
                owner=owner,
                kind=kind,
                media_type=media_type,
                name=name,
                size=len(data),
                sha256=sha,
                parents=[p.id for p in parent_records],
                job_id=job_id,
                meta=meta or {},
                license=license,
            )
            record.provenance = {
                "artifact_id": record.id,
                "created_at": record.created_at,
                "owner": owner,
                "job_id": job_id,
                "sha256": sha,
                "inputs": [{"artifact_id": p.id, "sha256": p.sha256, "kind": p.kind} for p in parent_records],
                "package": {"name": "echotune-mcp", "version": package_version()},
                **(provenance or {}),
            }
            await self.storage.artifacts.insert(record)
        for hook in self._created_hooks:
            await hook(self, record)
        return record

    async def get(self, owner: str, artifact_id: str) -> ArtifactRecord:
        record = await self.storage.artifacts.get(owner, artifact_id)
        if record is None:
            raise NotFound("artifact", artifact_id, HOW_TO_LIST)
        return record

    async def resolve(self, owner: str, ref: str) -> ArtifactRecord:
        """Accept a bare id or an ``echotune://artifacts/{id}`` URI."""
        art_id = parse_artifact_uri(ref) or ref
        return await self.get(owner, art_id)

    async def read(self, record: ArtifactRecord) -> bytes:
        with span("artifact.read", **{"echotune.artifact.size": record.size}):
            data = await self.storage.blobs.get(record.sha256)
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise RuntimeError(f"artifact {record.id} bytes do not match their sha256; storage is corrupt")
        return data

    async def list(
        self, owner: str, *, kind: str | None = None, job_id: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> tuple[list[ArtifactRecord], str | None]:
        where: dict[str, Any] = {}
        if kind:
            if kind not in KINDS:
                raise BadInput("kind", f"{kind!r} is not an artifact kind", KINDS)
            where["kind"] = kind
        if job_id:
            where["job_id"] = job_id
        return await self.storage.artifacts.find(owner, where, limit=limit, cursor=cursor)

    async def update_meta(self, owner: str, artifact_id: str, **fields: Any) -> ArtifactRecord:
        updated = await self.storage.artifacts.update(owner, artifact_id, fields)
        if updated is None:
            raise NotFound("artifact", artifact_id, HOW_TO_LIST)
        return updated

    async def delete(self, owner: str, artifact_id: str) -> ArtifactRecord:
        record = await self.get(owner, artifact_id)
        for hook in self._deleted_hooks:
            await hook(self, record)
        await self.storage.artifacts.delete(owner, artifact_id)
        # Blobs are shared by content; drop the bytes only when no record points at them.
        if not await self.storage.artifacts.sha_in_use(record.sha256):
            await self.storage.blobs.delete(record.sha256)
        return record


class PathPolicy:
    """Local files may be read only inside configured roots; symlinks are resolved before checking."""

    def __init__(self, roots: tuple[Path, ...], *, how_to_widen: str = "set ECHOTUNE_ALLOWED_ROOTS to widen, "
                                                                        "or use import_audio"):
        self.roots = tuple(Path(os.path.realpath(r)) for r in roots)
        self.how_to_widen = how_to_widen

    def check(self, path_str: str) -> Path:
        if "\x00" in path_str:  # the OS cannot take it (os.path.realpath raises ValueError)
            raise BadInput("audio", "the path contains a NUL byte", "an absolute path inside an allowed root")
        raw = Path(path_str).expanduser()
        if not raw.is_absolute():
            raise BadInput("audio", f"{path_str!r} is not an absolute path",
                           "an echotune://artifacts/... URI, or an absolute path inside an allowed root")
        real = Path(os.path.realpath(raw))
        if not any(real == root or root in real.parents for root in self.roots):
            roots = ", ".join(str(r) for r in self.roots) or "(none configured)"
            raise BadInput("audio", f"{path_str!r} is outside the allowed roots (after resolving symlinks)",
                           f"files under {roots}; {self.how_to_widen}")
        if not real.is_file():
            raise BadInput("audio", f"{path_str!r} is not a file")
        return real


