"""Privacy toolset: a principal exports all their data, or deletes all of it (GDPR articles 15, 17 and 20).

Both act on the caller's whole account, so over authenticated HTTP both need a stepped-up token
(``auth.policy.ALWAYS_STEP_UP``). Both run as jobs: a long history is exported or erased in the background
and polled with get_job, and an interrupted deletion is finished by calling delete_my_data again.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from ..app import App
from ..errors import BadInput
from ..jobs import JobContext
from ..principal import current_principal
from ..privacy.delete import PHRASE, DeleteReport, delete_principal, remaining
from ..privacy.export import FORMAT, build_export
from ..views import JobView
from .base import Toolset, current_app
from .common import WaitSeconds, job_result

log = logging.getLogger(__name__)

Confirm = Annotated[str, Field(max_length=64, description=f"type exactly '{PHRASE}' to confirm; nothing is "
                                                          "deleted otherwise")]


async def _audit(app: App, event: str, principal: str | None, **fields: Any) -> None:
    try:
        from ..auth.audit import audit
    except ImportError:  # pragma: no cover - the audit log is part of the same release
        return
    await audit(app, event, principal=principal, **fields)


toolset = Toolset("privacy", "Your data and your rights over it: export everything the server holds about you, "
                             "or delete all of it.")


@toolset.tool(title="Export my data", read_only=False, destructive=False, idempotent=False)
async def export_my_data(ctx: Context, wait_seconds: WaitSeconds = 0) -> Annotated[CallToolResult, JobView]:
    """Export every record the server holds about you as one zip artifact (GDPR access and portability).

    The zip holds manifest.json (format, counts per collection), records/<collection>.jsonl (your jobs,
    artifacts' metadata, listening events, playlist snapshots, segment opt-in, provider grant metadata,
    audit entries, cached results) and artifacts/<id>/<name> (the files). Provider tokens are never
    exported, only which providers you connected and when. Runs as a job: the artifact is in its result.
    """
    app = current_app()
    owner = current_principal()

    async def work(job: JobContext) -> dict[str, Any]:
        path, manifest = await build_export(app, owner, job.progress)
        try:
            data = await anyio.to_thread.run_sync(path.read_bytes)
        finally:
            path.unlink(missing_ok=True)
        day = time.strftime("%Y%m%d", time.gmtime())
        art = await job.add_artifact(data=data, kind="export", media_type="application/zip",
                                     name=f"echotune-export-{day}.zip",
                                     meta={"format": FORMAT, "counts": manifest["counts"]},
                                     provenance={"tool": "export_my_data", "inputs": [],
                                                 "source": {"type": "export", "format": FORMAT}})
        await _audit(app, "data_exported", owner, artifact_id=art.id, records=sum(manifest["counts"].values()))
        return {"artifact_id": art.id, "format": FORMAT, "size": art.size, "counts": manifest["counts"],
                "artifact_files": len(manifest["artifact_files"]), "left_out": manifest["left_out"],
                "redacted": manifest["redacted"]}

    job = await app.jobs.submit(owner=owner, tool="export_my_data", params={}, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)


@toolset.tool(title="Delete my data", read_only=False, destructive=True, idempotent=True)
async def delete_my_data(confirm: Confirm, ctx: Context,
                         wait_seconds: WaitSeconds = 0) -> Annotated[CallToolResult, JobView]:
    """Delete everything the server holds about you; it cannot be undone (GDPR erasure).

    Stops your other jobs, revokes provider grants at the provider where it can and deletes them, deletes
    your data key (so your sealed listening history is unreadable even in backups), your artifacts and the
    files no other user shares, your listening events, playlist snapshots, caches, opt-ins and audit
    entries. Call export_my_data first if you want a copy. Runs as a job; its result reports what was
    deleted per collection. If it is interrupted, the result says what remains: call it again to finish.
    """
    if confirm != PHRASE:
        raise BadInput("confirm", "does not match the confirmation phrase; nothing was deleted",
                       f"exactly '{PHRASE}'")
    app = current_app()
    owner = current_principal()
    for status in ("running", "queued"):  # one deletion at a time: a second call follows the first
        jobs, _ = await app.jobs.list(owner, status=status, limit=100)
        running = next((j for j in jobs if j.tool == "delete_my_data"), None)
        if running is not None:
            return await job_result(app, owner, running.id, wait_seconds, ctx)

    async def work(job: JobContext) -> dict[str, Any]:
        report = DeleteReport(principal=owner, complete=False)
        try:
            # Grants are revoked through the App's own hub (its OAuth settings); delete_principal closes
            # only a hub it built itself, never this one.
            await delete_principal(app, owner, keep_job=job.job.id, progress=job.progress, report=report,
                                   hub=app.providers)
        except BaseException:
            # Say exactly what was deleted and what remains, in the job's record, then let the job end
            # as failed / cancelled / interrupted; calling delete_my_data again finishes the work.
            with anyio.CancelScope(shield=True):
                try:
                    report.remaining = await remaining(app, owner, job.job.id)
                    await app.storage.jobs.update(owner, job.job.id, {"result": report.model_dump(mode="json")})
                except Exception:
                    log.warning("could not record the partial deletion report of %s", job.job.id,
                                exc_info=True)
            raise
        await _audit(app, "data_deleted", None, complete=report.complete, collections=sorted(report.deleted))
        return report.model_dump(mode="json")

    job = await app.jobs.submit(owner=owner, tool="delete_my_data", params={}, work=work)
    return await job_result(app, owner, job.id, wait_seconds, ctx)
