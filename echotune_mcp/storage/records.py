"""The stored aggregates. Every record carries its owner; every id is unguessable.

Records are pydantic models so both backends store exactly the same JSON document, and a
contract test can run unchanged against either.
"""

from __future__ import annotations

import secrets
import time
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field


def new_id(prefix: str) -> str:
    """A prefixed id with 128 bits of randomness: listable by its owner, never guessable."""
    return f"{prefix}_{secrets.token_urlsafe(16)}"


def now() -> float:
    return time.time()


class JobStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"
    interrupted = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled, JobStatus.interrupted})
ACTIVE_STATUSES = frozenset({JobStatus.queued, JobStatus.running})


class JobRecord(BaseModel):
    id: str = Field(default_factory=lambda: new_id("job"))
    owner: str
    tool: str
    status: JobStatus = JobStatus.queued
    progress: float = 0.0
    message: str = ""
    params: dict[str, Any] = Field(default_factory=dict)
    result: dict[str, Any] | None = None
    error: str | None = None
    artifact_ids: list[str] = Field(default_factory=list)
    created_at: float = Field(default_factory=now)
    updated_at: float = Field(default_factory=now)
    started_at: float | None = None
    finished_at: float | None = None
    trace_context: dict[str, str] = Field(default_factory=dict)


class PlaylistSnapshotRecord(BaseModel):
    """A playlist's items in order, saved before a tool changes it, so restore_playlist can put them back."""

    id: str = Field(default_factory=lambda: new_id("psnap"))
    owner: str
    provider: str
    playlist_id: str
    tool: str = Field(description="the tool whose change this snapshot precedes")
    items: list[dict[str, Any]] = Field(default_factory=list)
    provider_snapshot_id: str | None = None
    created_at: float = Field(default_factory=now)
    expires_at: float | None = None


class ArtifactRecord(BaseModel):
    id: str = Field(default_factory=lambda: new_id("art"))
    owner: str
    kind: str
    media_type: str
    name: str
    size: int
    sha256: str
    parents: list[str] = Field(default_factory=list)
    job_id: str | None = None
    created_at: float = Field(default_factory=now)
    meta: dict[str, Any] = Field(default_factory=dict)
    # Written in the same document as the artifact, so the two can never disagree or be half-written.
    provenance: dict[str, Any] | None = None
    license: str | None = None
