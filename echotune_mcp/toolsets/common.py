"""Shared by the toolsets that start jobs: wait a bounded time, report progress, return the job."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from ..app import App
from ..errors import BadInput
from ..storage.base import InvalidCursor
from ..views import ArtifactView, JobView
from .base import tool_result

WaitSeconds = Annotated[
    float,
    Field(ge=0, le=25, description="how long this call may wait for the job to finish (0-25 s); "
                                   "if it is still running you get a handle to poll with get_job"),
]


async def job_result(app: App, owner: str, job_id: str, wait_seconds: float, ctx: Context | None) -> CallToolResult:
    async def forward(fraction: float, message: str) -> None:
        if ctx is not None:
            try:
                await ctx.report_progress(fraction, 1.0, message)
            except Exception:  # progress is advisory: a client that went away must not fail the call
                pass

    job = await app.jobs.wait(owner, job_id, wait_seconds, forward)
    arts = []
    for art_id in job.artifact_ids:
        rec = await app.storage.artifacts.get(owner, art_id)
        if rec is not None:
            arts.append(rec)
    view = JobView.of(job, arts)
    summary = f"job {job.id} {job.status.value}" + (f": {job.error}" if job.error else "")
    return tool_result(view, links=[ArtifactView.of(a).link() for a in arts], summary=summary)


@contextmanager
def cursor_argument() -> Iterator[None]:
    """A cursor the storage cannot decode is the caller's mistake: say so about ``cursor``, not crash."""
    try:
        yield
    except InvalidCursor as exc:
        raise BadInput("cursor", str(exc)) from None


def jsonable(value: Any) -> Any:
    from pydantic_core import to_jsonable_python

    return to_jsonable_python(value)


def decoded_upload(data_base64: str, limit: int, bigger: str = "") -> bytes:
    """An upload's bytes: refused before decoding when it cannot fit ``limit`` (4 characters per 3 bytes),
    and when it is not valid base64; ``bigger`` tells the agent what to do with a larger file."""
    if len(data_base64) * 3 // 4 > limit + 3:
        raise BadInput("data_base64", f"the upload is about {len(data_base64) * 3 // 4} bytes",
                       f"at most {limit} bytes{bigger}")
    try:
        data = base64.b64decode(data_base64, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput("data_base64", "is not valid base64") from None
    if len(data) > limit:
        raise BadInput("data_base64", f"the upload is {len(data)} bytes", f"at most {limit} bytes{bigger}")
    return data
