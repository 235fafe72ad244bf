"""Jobs toolset: poll, list and cancel long-running work started by other tools."""


import json
from typing import Annotated, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp_types import CallToolResult
from pydantic import Field

from ..errors import NotFound
from ..principal import current_principal
from ..views import JobList, JobView
from .base import Toolset, current_app, tool_result
from .common import WaitSeconds, cursor_argument, job_result

JobId = Annotated[str, Field(min_length=1, max_length=64, description="a job id from a job-starting tool or list_jobs")]
StatusFilter = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]


toolset = Toolset("jobs", "Poll, list and cancel background jobs (generation, separation, remix, analysis).")


@toolset.tool(title="Get job", read_only=True, ui="job")
async def get_job(job_id: JobId, ctx: Context, wait_seconds: WaitSeconds = 0) -> Annotated[CallToolResult, JobView]:
    """Get a job's status, progress and (once it succeeded) its result and artifacts.

    Pass wait_seconds (up to 25) to long-poll: the call returns as soon as the job ends, or
    after that many seconds with the current progress. Call again until status is
    succeeded, failed, cancelled or interrupted; no need to sleep between calls.
    """
    return await job_result(current_app(), current_principal(), job_id, wait_seconds, ctx)


@toolset.tool(title="List jobs", read_only=True)
async def list_jobs(
    status: Annotated[StatusFilter | None, Field(description="only jobs in this state")] = None,
    limit: Annotated[int, Field(ge=1, le=100, description="page size (1-100)")] = 20,
    cursor: Annotated[str | None, Field(max_length=512, description="next_cursor from a previous page")] = None,
) -> JobList:
    """List this client's jobs, newest first, optionally filtered by status; paginated."""
    with cursor_argument():
        jobs, nxt = await current_app().jobs.list(current_principal(), status=status, limit=limit, cursor=cursor)
    return JobList(jobs=[JobView.of(j) for j in jobs], next_cursor=nxt)


@toolset.tool(title="Cancel job", read_only=False, destructive=False, idempotent=True)
async def cancel_job(job_id: JobId) -> Annotated[CallToolResult, JobView]:
    """Cancel a queued or running job. Artifacts it already produced are kept; a finished job is unchanged."""
    owner = current_principal()
    job = await current_app().jobs.cancel(owner, job_id)
    return tool_result(JobView.of(job), summary=f"job {job.id} is {job.status.value}")


@toolset.resource("echotune://jobs/{job_id}", name="job", mime_type="application/json",
                  description="A job's state as JSON; clients listening for updates are told when it changes.")
async def job_resource(job_id: str) -> str:
    try:
        job = await current_app().jobs.get(current_principal(), job_id)
    except NotFound as exc:
        raise ResourceNotFoundError(str(exc)) from None
    return json.dumps(JobView.of(job).model_dump(mode="json"))
