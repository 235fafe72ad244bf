"""What tools return: stable, documented output models (each becomes a tool's outputSchema)."""

from __future__ import annotations

from typing import Any

from mcp_types import ResourceLink
from pydantic import BaseModel, Field

from .artifacts import artifact_uri
from .storage.records import ArtifactRecord, JobRecord


class ArtifactView(BaseModel):
    artifact_id: str
    uri: str = Field(description="echotune://artifacts/{id}: metadata JSON")
    content_uri: str = Field(description="the bytes, with the right mime type")
    waveform_uri: str | None = Field(default=None, description="waveform + spectrogram PNG (audio only)")
    preview_uri: str | None = Field(default=None, description="a small Ogg Opus copy to listen to (audio only; "
                                                            "what players such as the in-chat views read)")
    kind: str
    media_type: str
    name: str
    size: int
    sha256: str
    parents: list[str]
    job_id: str | None
    created_at: float
    license: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def of(cls, rec: ArtifactRecord) -> ArtifactView:
        audio = rec.media_type.startswith("audio/")
        return cls(
            artifact_id=rec.id,
            uri=artifact_uri(rec.id),
            content_uri=artifact_uri(rec.id, "content"),
            waveform_uri=artifact_uri(rec.id, "waveform.png") if audio else None,
            preview_uri=artifact_uri(rec.id, "preview") if audio else None,
            kind=rec.kind,
            media_type=rec.media_type,
            name=rec.name,
            size=rec.size,
            sha256=rec.sha256,
            parents=rec.parents,
            job_id=rec.job_id,
            created_at=rec.created_at,
            license=rec.license,
            meta=rec.meta,
        )

    def link(self) -> ResourceLink:
        return ResourceLink(type="resource_link", uri=self.content_uri, name=self.name,
                            mime_type=self.media_type, size=self.size,
                            description=f"{self.kind} artifact {self.artifact_id}")


class JobView(BaseModel):
    job_id: str
    tool: str
    status: str = Field(description="queued | running | succeeded | failed | cancelled | interrupted")
    progress: float = Field(ge=0, le=1)
    message: str = ""
    error: str | None = None
    resource_uri: str
    created_at: float
    updated_at: float
    finished_at: float | None = None
    artifacts: list[ArtifactView] = Field(default_factory=list)
    result: dict[str, Any] | None = Field(default=None, description="the job's structured result once succeeded")
    attempt: int = Field(default=1, ge=1, description="which run of the job this is: above 1 when the server "
                                                      "replica running it stopped and another ran it again "
                                                      "from its inputs (same seed, same result)")
    takeovers: list[dict[str, Any]] = Field(default_factory=list, description=(
        "each takeover: attempt, from_replica, to_replica, at, reason, and discarded_artifact_ids (what the "
        "stopped run had stored, removed so only this run's artifacts remain)"))
    next_step: str = Field(description="what the agent should do next")

    @classmethod
    def of(cls, job: JobRecord, artifacts: list[ArtifactRecord] | None = None) -> JobView:
        status = job.status.value
        if status in ("queued", "running"):
            hint = f"call get_job(job_id='{job.id}', wait_seconds=20) to wait for it (no busy-looping needed)"
        elif status == "succeeded":
            hint = "done: read the artifacts' content_uri resources, or pass their uri to other tools"
        elif status == "interrupted":
            hint = "the server restarted while this ran; start the same tool again"
        elif status == "failed":
            hint = "read error, fix the arguments it names, and start the tool again"
        else:
            hint = "cancelled; start the tool again if you still need the result"
        return cls(
            job_id=job.id,
            tool=job.tool,
            status=status,
            progress=round(job.progress, 4),
            message=job.message,
            error=job.error,
            resource_uri=f"echotune://jobs/{job.id}",
            created_at=job.created_at,
            updated_at=job.updated_at,
            finished_at=job.finished_at,
            artifacts=[ArtifactView.of(a) for a in artifacts or []],
            result=job.result,
            attempt=job.attempt,
            takeovers=job.takeovers,
            next_step=hint,
        )


class Page(BaseModel):
    next_cursor: str | None = Field(default=None, description="pass as cursor to get the next page; null at the end")


class JobList(Page):
    jobs: list[JobView]


class ArtifactList(Page):
    artifacts: list[ArtifactView]


