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
    # The server process running it (its lease id) and until when that process last promised to be alive;
    # another process marks the job interrupted only once this lease is dead (see ``LeaseRecord``).
    lease_owner: str | None = None
    lease_expires_at: float | None = None
    # Replicas (docs/SCALE.md): which replica runs it, which run this is, and each takeover after the replica
    # running it stopped (deterministic jobs are run again from their inputs; the others end ``interrupted``).
    replica: str | None = None
    attempt: int = 1
    takeovers: list[dict[str, Any]] = Field(default_factory=list)


class LeaseRecord(BaseModel):
    """One running server process (one ``App``) on this data: renewed by its heartbeat until it stops.

    Dead when it has run out, or at once when it names this machine and its process is gone (kill -9 of a
    client window); a frozen process on any machine loses it after ``ECHOTUNE_JOB_LEASE_SECONDS``.
    """

    id: str = Field(default_factory=lambda: new_id("lease"))
    owner: str = "system"
    created_at: float = Field(default_factory=now)
    expires_at: float
    pid: int
    host: str
    name: str | None = None  # the replica's name (ECHOTUNE_REPLICA_NAME, else host:pid), for takeover notes

    def dead(self, at: float, this_host: str) -> bool:
        if self.expires_at <= at:
            return True
        return self.host == this_host and not _pid_running(self.pid)


def this_host() -> str:
    """This machine as seen by this process: hostname and PID namespace, so containers do not mix up pids."""
    import os
    import socket

    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{socket.gethostname()}|{namespace}"


def _pid_running(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or a pid this OS cannot check: assume alive, let it expire
    return True


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


class ListeningEventRecord(BaseModel):
    """One play from a listening history the owner imported (or, later, synced from a provider).

    The id is derived from the owner and the event's identity (source, time, track), so the same play
    imported twice is one document: re-importing adds nothing. It is never a capability; every read is
    owner-scoped anyway. Only what recommendation needs is kept (no IP address, country or device).
    """

    id: str
    owner: str
    created_at: float = Field(default_factory=now, description="when it was stored")
    source: str = Field(description="spotify | listenbrainz | lastfm | tsv | ytmusic")
    format: str = Field(description="the file format it came from")
    import_id: str = Field(description="the import (job) that stored it; undone together")
    played_at: float | None = Field(default=None, description="epoch seconds, UTC, as the source records it")
    track: str | None = None
    artist: str | None = None
    album: str | None = None
    item_key: str = Field(description="the best stable identity known: spotify:track:..., mbid:..., item:..., "
                                      "or name:artist\x1ftrack (case- and space-folded)")
    spotify_uri: str | None = None
    recording_mbid: str | None = None
    isrc: str | None = None
    ms_played: int | None = None
    skipped: bool | None = None
    reason_end: str | None = None
    external_user: str | None = Field(default=None, description="the user column of a TSV interactions file")
    weight: float = Field(default=1.0, description="plays this event stands for (a TSV row's weight); 1 for a "
                                                   "non-play signal (one top-list entry, one saved track)")
    # Synced from a provider (recommend/sync.py): what kind of signal it is, and what the service said about it.
    signal: str = Field(default="play", description="play | top (in a Spotify top-tracks list) | saved (a saved "
                                                    "or liked track): only plays are listening, the others are "
                                                    "taste signals and never counted as plays")
    rank: int | None = Field(default=None, description="position in a top list, 1 = first")
    term: str | None = Field(default=None, description="a top list's time range: short_term | medium_term | "
                                                       "long_term")
    added_at: float | None = Field(default=None, description="when a saved track was saved, epoch seconds UTC")
    played_period: str | None = Field(default=None, description=(
        "when only a period is known (YouTube Music history: 'Today', 'Yesterday', ...): the day YYYY-MM-DD, "
        "ISO week YYYY-Www, month YYYY-MM or year YYYY it means, or 'label:<text>' when the label is not one of "
        "those"))
    ytmusic_video_id: str | None = None


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
