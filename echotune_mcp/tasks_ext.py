"""Native tasks (``io.modelcontextprotocol/tasks``, SEP-2663) on top of our job system.

Our long tools already run as jobs and hand back a ``{job_id, status, ...}`` handle that an agent polls with
``get_job``. A client that declares the tasks extension (2026-07-28 wire, in the request's
``_meta.clientCapabilities.extensions``) gets the protocol's own shape instead: the job tool answers with a
``CreateTaskResult`` (``resultType: "task"``) whose ``taskId`` *is* the job id, and the client drives it with
``tasks/get`` / ``tasks/update`` / ``tasks/cancel``. Nothing new is stored: a task is a view of a job record,
so it is owner-scoped exactly like ``get_job`` (another principal's task id is "not found", never
"forbidden"), survives a server restart, and ``get_job``/``cancel_job`` keep working for every client.

Wire decisions, and why:
- Which tools: every tool that starts a job and waits for it, recognised from its schemas (a ``wait_seconds``
  argument and a job-handle output) rather than a hand-kept list, so a new job tool is covered the day it is
  registered. ``get_job`` itself is excluded: it polls an existing job. ``cancel_job`` has no wait.
- In task mode the tool waits at most ``TASK_WAIT_S`` (the client polls by itself; holding the request for the
  agent's 20 s would only tie up a connection). A job that finishes within that answers with its normal
  result, the immediate-result shortcut the SEP allows. Tool errors before a job exists (bad input, quota)
  are returned as they are: no task was created.
- Status: queued/running -> ``working``; succeeded -> ``completed`` with the tool's finished
  ``CallToolResult`` inlined; failed -> ``completed`` with that result marked ``isError`` (the SEP reserves
  ``failed`` for JSON-RPC errors, and a job that failed reported a tool error through its result);
  interrupted (the server stopped under it) -> ``failed`` with a ``-32603`` error, since the request it
  stood for never got an answer; cancelled -> ``cancelled``.
- ``ttlMs`` is ``null``: job records are never expired (only ``delete_my_data`` removes them), so a task
  stays readable without limit. ``pollIntervalMs`` is 1 s while running (progress is persisted several
  times a second, a piece takes seconds to minutes) and 2 s while queued; absent once terminal.
- ``tasks/update``: none of our jobs asks for input while it runs (confirmations happen before a job is
  started), so there is never an outstanding input request; the SEP says responses to keys that are not
  outstanding are ignored, so an update of a known task is acknowledged and changes nothing.
- ``tasks/result`` and ``tasks/list`` (removed in SEP-2663) are not served: ``-32601``.
- Only on 2026-07-28: the task methods are bound to the modern protocol version, and a legacy session never
  gets a task (its result shapes cannot carry one).
- Status notifications (optional in the SEP) are not sent: the SDK's listen stream carries a closed set of
  events. A client that wants a push subscribes to the job resource ``echotune://jobs/{taskId}`` instead.
- Scopes (authorized HTTP): ``tasks/get`` needs ``echotune:read``, ``tasks/cancel`` and ``tasks/update``
  ``echotune:write``, as ``get_job`` and ``cancel_job`` do; the HTTP layer refuses a token without them
  (``auth.policy.method_scope``), and the check is repeated here for in-process callers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.extension import Extension, MethodBinding
from mcp.server.mcpserver.server import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolRequestParams, RequestParams
from mcp_types.jsonrpc import HEADER_MISMATCH, INTERNAL_ERROR, INVALID_PARAMS, INVALID_REQUEST
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import Field

from .auth.context import current_caller
from .auth.policy import SCOPE_READ, SCOPE_WRITE
from .errors import NotFound
from .principal import current_principal
from .storage.records import JobRecord, JobStatus

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from .app import App

log = logging.getLogger(__name__)

EXTENSION_ID = "io.modelcontextprotocol/tasks"
TASK_WAIT_S = 1.0  # how long a job tool holds a task-capable request before answering with the task
POLL_RUNNING_MS = 1000
POLL_QUEUED_MS = 2000
NOT_JOB_STARTERS = frozenset({"get_job"})  # has wait_seconds and returns a job, but polls an existing one
_MODERN = frozenset(MODERN_PROTOCOL_VERSIONS)
_STATUS = {
    JobStatus.queued: "working",
    JobStatus.running: "working",
    JobStatus.succeeded: "completed",
    JobStatus.failed: "completed",  # a tool error: completed + result.isError (SEP-2663 error semantics)
    JobStatus.interrupted: "failed",
    JobStatus.cancelled: "cancelled",
}
TaskId = Field(alias="taskId", min_length=1, max_length=200,
               description="the taskId of a CreateTaskResult (our job id)")


class TaskParams(RequestParams):
    """``tasks/get`` and ``tasks/cancel``: which task."""

    task_id: str = TaskId


class UpdateTaskParams(RequestParams):
    """``tasks/update``: responses to outstanding input requests, keyed as the server issued them."""

    task_id: str = TaskId
    input_responses: dict[str, Any] = Field(alias="inputResponses")


def iso(ts: float) -> str:
    """Epoch seconds as an ISO 8601 UTC timestamp with milliseconds (``2026-12-01T09:30:00.123Z``)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def task_status(job: JobRecord) -> str:
    return _STATUS[job.status]


def _status_message(job: JobRecord) -> str | None:
    if job.status == JobStatus.running:
        return f"{job.message or 'running'} ({round(job.progress * 100)}%)"
    if job.status == JobStatus.queued:
        return "queued: waiting for a free worker or quota slot"
    if job.status in (JobStatus.failed, JobStatus.interrupted):
        return job.error or job.message or None
    return job.message or None


def task_fields(job: JobRecord) -> dict[str, Any]:
    """The ``Task`` base fields of a job: what ``CreateTaskResult`` and every ``tasks/get`` carry."""
    status = task_status(job)
    out: dict[str, Any] = {
        "taskId": job.id,
        "status": status,
        "createdAt": iso(job.created_at),
        "lastUpdatedAt": iso(max(job.updated_at, job.finished_at or 0.0, job.started_at or 0.0, job.created_at)),
        "ttlMs": None,  # job records are kept until their owner deletes them: no expiry
    }
    if status == "working":
        out["pollIntervalMs"] = POLL_RUNNING_MS if job.status == JobStatus.running else POLL_QUEUED_MS
    message = _status_message(job)
    if message:
        out["statusMessage"] = message
    return out


def _declared(ctx: ServerRequestContext[Any, Any]) -> bool:
    """Whether this request's client capabilities carry the tasks extension (per request, SEP-2575)."""
    caps = ctx.session.client_capabilities
    return bool(caps and caps.extensions and EXTENSION_ID in caps.extensions)


def _structured(result: Any) -> dict[str, Any] | None:
    if isinstance(result, dict):
        data = result.get("structuredContent")
    else:
        data = getattr(result, "structured_content", None)
    return data if isinstance(data, dict) else None


def _is_error(result: Any) -> bool:
    return bool(result.get("isError") if isinstance(result, dict) else getattr(result, "is_error", False))


class TasksExtension(Extension):
    """The SDK extension: ``tasks/get``, ``tasks/update``, ``tasks/cancel`` and the ``tools/call`` interceptor."""

    identifier = EXTENSION_ID

    def __init__(self, app: App):
        self.app = app
        self._server: MCPServer | None = None
        self._job_tools: dict[str, float] | None = None  # tool name -> its wait_seconds default

    def bind(self, server: MCPServer) -> None:
        """Give the extension the server whose tool schemas say which tools start jobs (read on first call)."""
        self._server = server

    async def job_tools(self) -> dict[str, float]:
        """Tools that start a job and wait for it: a ``wait_seconds`` argument and a job-handle result."""
        if self._job_tools is None:
            found: dict[str, float] = {}
            if self._server is not None:
                for tool in await self._server.list_tools():
                    inputs = (tool.input_schema or {}).get("properties", {})
                    outputs = (tool.output_schema or {}).get("properties", {})
                    if ("wait_seconds" in inputs and {"job_id", "status", "tool"} <= set(outputs)
                            and tool.name not in NOT_JOB_STARTERS):
                        found[tool.name] = float(inputs["wait_seconds"].get("default", 0) or 0)
            self._job_tools = found
        return self._job_tools

    # -- SDK extension surface ------------------------------------------------------------------
    def methods(self) -> Sequence[MethodBinding]:
        return (
            MethodBinding("tasks/get", TaskParams, self._get, protocol_versions=_MODERN),
            MethodBinding("tasks/update", UpdateTaskParams, self._update, protocol_versions=_MODERN),
            MethodBinding("tasks/cancel", TaskParams, self._cancel, protocol_versions=_MODERN),
        )

    async def intercept_tool_call(self, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any],
                                  call_next: CallNext) -> HandlerResult:
        if ctx.protocol_version not in _MODERN or not _declared(ctx):
            return await call_next(ctx)
        tools = await self.job_tools()
        if params.name not in tools:
            return await call_next(ctx)
        # The handler is invoked with these very params (the SDK passes them through), so shortening the wait
        # here is what the tool sees. An out-of-range value is left alone for the tool to refuse by name.
        args = params.arguments if params.arguments is not None else {}
        asked = args.get("wait_seconds", tools[params.name])
        if isinstance(asked, int | float) and not isinstance(asked, bool) and 0 <= asked <= 25:
            args["wait_seconds"] = min(float(asked), TASK_WAIT_S)
            params.arguments = args
        result = await call_next(ctx)
        data = _structured(result)
        if (data is None or _is_error(result) or data.get("tool") != params.name
                or data.get("status") not in ("queued", "running") or not isinstance(data.get("job_id"), str)):
            return result  # finished within the wait, refused before a job existed, or not a job handle
        job = await self.app.jobs.get(current_principal(), data["job_id"])  # durable: inserted before submit returned
        return {"resultType": "task", **task_fields(job)}

    # -- methods --------------------------------------------------------------------------------
    async def _job(self, ctx: ServerRequestContext[Any, Any], method: str, task_id: str, scope: str) -> JobRecord:
        """Gate (declared extension, routing header, token scope), then the caller's own job or -32602."""
        require_client_extension(ctx, EXTENSION_ID)
        _check_name_header(ctx, method, task_id)
        caller = current_caller()
        if caller.authenticated and scope not in caller.scopes:
            # Not -32602: a client may read that as "this task is gone" and forget a task that still runs.
            raise MCPError(INVALID_REQUEST, f"{method} needs the {scope} scope in the access token (it has "
                                            f"{', '.join(sorted(caller.scopes)) or 'none'})")
        try:
            return await self.app.jobs.get(caller.principal, task_id)
        except NotFound:
            raise MCPError(INVALID_PARAMS, f"task {task_id!r} was not found for this client (it may never have "
                                           "existed, belong to another user, or have been deleted)") from None

    async def _get(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        job = await self._job(ctx, "tasks/get", params.task_id, SCOPE_READ)
        return await self.detailed(job)

    async def _update(self, ctx: ServerRequestContext[Any, Any], params: UpdateTaskParams) -> dict[str, Any]:
        await self._job(ctx, "tasks/update", params.task_id, SCOPE_WRITE)
        # No job of ours ever has an outstanding input request: every response is for a key that is not
        # outstanding, which the SEP says to ignore. Acknowledge; the task's state is unchanged.
        return {}

    async def _cancel(self, ctx: ServerRequestContext[Any, Any], params: TaskParams) -> dict[str, Any]:
        job = await self._job(ctx, "tasks/cancel", params.task_id, SCOPE_WRITE)
        if not job.status.terminal:
            await self.app.jobs.cancel(job.owner, job.id)
        return {}  # an empty ack; the cancelled status is seen on the next tasks/get

    async def detailed(self, job: JobRecord) -> dict[str, Any]:
        """``tasks/get``'s ``DetailedTask``: the task fields plus the inlined result or error once terminal."""
        out = task_fields(job)
        if job.status in (JobStatus.succeeded, JobStatus.failed):
            from .toolsets.common import job_result

            result = await job_result(self.app, job.owner, job.id, 0, None)
            if job.status == JobStatus.failed:
                result.is_error = True
            out["result"] = result.model_dump(by_alias=True, mode="json", exclude_none=True)
        elif job.status == JobStatus.interrupted:
            out["error"] = {"code": INTERNAL_ERROR,
                            "message": job.error or "the server stopped while this job was running",
                            "data": {"jobId": job.id, "tool": job.tool}}
        return out


def _check_name_header(ctx: ServerRequestContext[Any, Any], method: str, task_id: str) -> None:
    """SEP-2663 routing header: over HTTP a ``Mcp-Name`` that is sent must equal ``params.taskId`` (-32020).

    A missing header is tolerated: the SDK's own clients do not send it for extension methods.
    """
    request = ctx.request
    headers = getattr(request, "headers", None)
    if headers is None:
        return
    value = headers.get("mcp-name")
    if value is None:
        return
    from mcp.shared.inbound import decode_header_value

    try:
        decoded = decode_header_value(value)
    except Exception:
        decoded = None
    if decoded != task_id:
        raise MCPError(HEADER_MISMATCH, f"Mcp-Name header does not match the {method} request's taskId")
