"""Native tasks (SEP-2663) over the in-memory transport: a client that declares ``io.modelcontextprotocol/tasks``
gets a task for a job tool and drives it with tasks/get and tasks/cancel; one that does not gets the job handle.

The job's work is the real tool's (the composer renders a real piece); a test seam only holds it at its start
until the test lets it go, so the "working" state is observed deterministically on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any, Literal

import pytest
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.shared.exceptions import MCPError
from mcp_types import CallToolResult, Request, RequestParams, Result
from pydantic import ConfigDict, TypeAdapter

from echotune_mcp.app import App
from echotune_mcp.auth.context import VerifiedToken, principal_for
from echotune_mcp.server import build_server
from echotune_mcp.tasks_ext import EXTENSION_ID, TASK_WAIT_S

RAW = TypeAdapter(dict[str, Any])
TERMINAL = {"completed", "failed", "cancelled"}


class CreateTaskResult(Result):
    """The claimed ``resultType: "task"`` shape, kept raw so the test sees exactly what the server sent."""

    model_config = ConfigDict(extra="allow")
    result_type: Literal["task"] = "task"


class TasksClient(ClientExtension):
    """Declares the extension; a task result is handed back to the test as it is (no auto-polling)."""

    identifier = EXTENSION_ID

    def claims(self):
        async def keep(result: CreateTaskResult, _ctx: ClaimContext) -> CallToolResult:
            raise AssertionError("tests read the task with session.call_tool(allow_claimed=True)")

        return (ResultClaim(result_type="task", model=CreateTaskResult, resolve=keep),)


class TaskIdParams(RequestParams):
    model_config = ConfigDict(extra="allow")


class TaskRequest(Request[TaskIdParams, str]):
    name_param = "taskId"  # SEP-2663: tasks/* carry Mcp-Name = taskId over HTTP


async def task_call(client: Client, method: str, task_id: str, **extra: Any) -> dict[str, Any]:
    params = TaskIdParams.model_validate({"taskId": task_id, **extra})
    return await client.session.send_request(TaskRequest(method=method, params=params), RAW)


async def call_raw(client: Client, name: str, args: dict[str, Any]) -> Any:
    return await client.session.call_tool(name, args, allow_claimed=True)


async def poll(client: Client, task_id: str, timeout: float = 90.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        task = await task_call(client, "tasks/get", task_id)
        if task["status"] in TERMINAL:
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task['status']} after {timeout} s"
        await asyncio.sleep(min(0.5, task.get("pollIntervalMs", 1000) / 1000))


@pytest.fixture
def gate(monkeypatch):
    """Hold every composer job at its start until ``gate.set()``; a cancel ends the wait at once."""
    from echotune_mcp.toolsets import compose

    release = asyncio.Event()
    real = compose._run_composer

    async def held(app, job, *args, **kwargs):
        await job.until_cancelled(release.wait())
        return await real(app, job, *args, **kwargs)

    monkeypatch.setattr(compose, "_run_composer", held)
    return release


@pytest.fixture
def clients(settings):
    @asynccontextmanager
    async def factory(*, tasks: bool = True, **overrides) -> AsyncIterator[tuple[Client, App]]:
        app = App(replace(settings, **overrides) if overrides else settings)
        server = build_server(app)
        extensions = [TasksClient()] if tasks else None
        async with app, Client(server, raise_exceptions=True, extensions=extensions) as client:
            yield client, app

    return factory


@contextmanager
def as_user(sub: str, scopes=("echotune:read", "echotune:write")):
    token = VerifiedToken(token="t", client_id="cli", scopes=list(scopes), subject=sub,
                          issuer="https://idp.example", amr=["pwd", "otp"])
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield principal_for("https://idp.example", sub)
    finally:
        auth_context_var.reset(reset)


PIECE = {"prompt": "calm piano, 90 bpm in C major", "duration_s": 4, "wait_seconds": 20}


async def test_extension_advertised_and_job_tool_answers_with_a_task(clients, gate):
    async with clients() as (client, app):
        caps = client.session.server_capabilities  # type: ignore[attr-defined]
        assert caps.extensions and EXTENSION_ID in caps.extensions

        started = time.monotonic()
        created = await call_raw(client, "generate_music", PIECE)
        held_for = time.monotonic() - started
        assert isinstance(created, CreateTaskResult), created
        raw = created.model_dump(by_alias=True, mode="json")
        assert raw["resultType"] == "task" and raw["status"] == "working"
        assert raw["taskId"].startswith("job_")
        assert raw["ttlMs"] is None  # job records never expire
        assert raw["pollIntervalMs"] in (1000, 2000)
        assert raw["createdAt"].endswith("Z") and raw["lastUpdatedAt"].endswith("Z")
        for absent in ("result", "error", "inputRequests", "requestState", "task", "ttl", "pollInterval"):
            assert absent not in raw
        assert held_for < TASK_WAIT_S + 5  # not the 20 s the agent asked for: the client polls by itself

        task_id = raw["taskId"]
        working = await task_call(client, "tasks/get", task_id)
        assert working["taskId"] == task_id and working["status"] == "working"
        assert "result" not in working and working["resultType"] == "complete"
        assert working["statusMessage"]

        gate.set()
        done = await poll(client, task_id)
        assert done["status"] == "completed", done
        result = done["result"]
        assert result.get("isError") in (None, False)
        assert result["structuredContent"]["status"] == "succeeded"
        assert result["structuredContent"]["job_id"] == task_id
        assert "pollIntervalMs" not in done
        kinds = {a["kind"] for a in result["structuredContent"]["artifacts"]}
        assert "mix" in kinds or "audio" in kinds or kinds, kinds
        links = [c for c in result["content"] if c["type"] == "resource_link"]
        assert links and all(link["uri"].startswith("echotune://artifacts/") for link in links)
        assert "io.modelcontextprotocol/related-task" not in (result.get("_meta") or {})

        # The same job through get_job: one record, two views.
        via_job = await client.call_tool("get_job", {"job_id": task_id})
        assert via_job.structured_content["status"] == "succeeded"
        assert via_job.structured_content["artifacts"] == result["structuredContent"]["artifacts"]


async def test_cancel_acks_and_the_task_settles_cancelled(clients, gate):
    async with clients() as (client, app):
        created = await call_raw(client, "generate_music", PIECE)
        task_id = created.model_dump(by_alias=True)["taskId"]
        ack = await task_call(client, "tasks/cancel", task_id)
        assert ack.get("resultType", "complete") == "complete"
        assert not {"taskId", "status", "result", "error", "inputRequests"} & set(ack)
        final = await poll(client, task_id, timeout=20)
        assert final["status"] == "cancelled" and "result" not in final and "error" not in final
        job = await client.call_tool("get_job", {"job_id": task_id})
        assert job.structured_content["status"] == "cancelled"
        again = await task_call(client, "tasks/cancel", task_id)  # idempotent on a terminal task
        assert not {"taskId", "status"} & set(again)


async def test_update_is_acknowledged_and_changes_nothing(clients, gate):
    async with clients() as (client, app):
        created = await call_raw(client, "generate_music", PIECE)
        task_id = created.model_dump(by_alias=True)["taskId"]
        ack = await task_call(client, "tasks/update", task_id, inputResponses={"nope": {"action": "accept"}})
        assert not {"taskId", "status"} & set(ack)
        assert (await task_call(client, "tasks/get", task_id))["status"] == "working"
        await task_call(client, "tasks/cancel", task_id)


async def test_unknown_task_is_invalid_params(clients):
    async with clients() as (client, app):
        for method in ("tasks/get", "tasks/cancel", "tasks/update"):
            extra = {"inputResponses": {}} if method == "tasks/update" else {}
            with pytest.raises(MCPError) as err:
                await task_call(client, method, "job_doesnotexist", **extra)
            assert err.value.code == -32602, (method, err.value)
            assert "not found" in err.value.error.message


async def test_removed_v1_methods_are_method_not_found(clients):
    async with clients() as (client, app):
        for method in ("tasks/result", "tasks/list"):
            with pytest.raises(MCPError) as err:
                await task_call(client, method, "job_x")
            assert err.value.code == -32601, (method, err.value)


async def test_another_principals_task_is_not_found(clients, gate):
    async with clients() as (client, app):
        with as_user("alice"):
            created = await call_raw(client, "generate_music", PIECE)
            task_id = created.model_dump(by_alias=True)["taskId"]
            assert (await task_call(client, "tasks/get", task_id))["status"] == "working"
        with as_user("bob"):
            for method in ("tasks/get", "tasks/cancel", "tasks/update"):
                extra = {"inputResponses": {}} if method == "tasks/update" else {}
                with pytest.raises(MCPError) as err:
                    await task_call(client, method, task_id, **extra)
                assert err.value.code == -32602 and "not found" in err.value.error.message
        with as_user("alice"):
            assert (await task_call(client, "tasks/get", task_id))["status"] == "working"  # bob cancelled nothing
        with as_user("alice", scopes=("echotune:read",)):
            with pytest.raises(MCPError) as err:
                await task_call(client, "tasks/cancel", task_id)
            assert err.value.code == -32600 and "echotune:write" in err.value.error.message
        with as_user("alice"):
            await task_call(client, "tasks/cancel", task_id)
            assert (await poll(client, task_id, timeout=20))["status"] == "cancelled"


async def test_client_without_the_extension_gets_the_job_handle(clients, gate):
    async with clients(tasks=False) as (client, app):
        res = await client.call_tool("generate_music", {**PIECE, "wait_seconds": 0.2})
        assert not res.is_error
        handle = res.structured_content
        assert handle["status"] in ("queued", "running") and handle["job_id"].startswith("job_")
        for method in ("tasks/get", "tasks/cancel"):
            with pytest.raises(MCPError) as err:
                await task_call(client, method, handle["job_id"])
            assert err.value.code == -32021, (method, err.value)
            assert err.value.error.data["requiredCapabilities"]["extensions"] == {EXTENSION_ID: {}}
        cancelled = await client.call_tool("cancel_job", {"job_id": handle["job_id"]})
        assert cancelled.structured_content["status"] == "cancelled"


async def test_a_job_that_finishes_within_the_wait_answers_normally(clients, monkeypatch):
    from echotune_mcp.toolsets import compose

    async def quick(app, job, *args, **kwargs):
        return {"note": "finished at once"}

    monkeypatch.setattr(compose, "_run_composer", quick)
    async with clients() as (client, app):
        done = await call_raw(client, "generate_music", PIECE)  # the immediate-result shortcut: no task
        assert isinstance(done, CallToolResult) and not done.is_error
        assert done.structured_content["status"] == "succeeded"
        assert done.structured_content["result"]["note"] == "finished at once"


async def test_non_job_tools_and_refusals_are_never_tasks(clients):
    async with clients() as (client, app):
        res = await call_raw(client, "list_jobs", {})  # not a job tool: never a task
        assert isinstance(res, CallToolResult)
        bad = await call_raw(client, "generate_music", {**PIECE, "duration_s": -3})  # refused before a job exists
        assert isinstance(bad, CallToolResult) and bad.is_error
        too_long = await call_raw(client, "generate_music", {**PIECE, "wait_seconds": 99})  # still refused by name
        assert isinstance(too_long, CallToolResult) and too_long.is_error
        assert "wait_seconds" in too_long.content[0].text
        tools = await build_server_job_tools(app)
        assert {"generate_music", "regenerate_stem", "add_stem", "separate_stems", "remix", "analyze_audio",
                "import_listening_history", "sync_listening_history", "fit_recommender", "export_my_data",
                "delete_my_data"} <= set(tools)
        assert "get_job" not in tools and "cancel_job" not in tools


async def build_server_job_tools(app: App) -> dict[str, float]:
    from echotune_mcp.tasks_ext import TasksExtension

    ext = TasksExtension(app)
    ext.bind(build_server(app))
    return await ext.job_tools()


async def test_failed_job_is_completed_with_is_error(clients, monkeypatch):
    from echotune_mcp.jobs import JobFailed
    from echotune_mcp.toolsets import compose

    async def broken(app, job, *args, **kwargs):
        await asyncio.sleep(TASK_WAIT_S + 0.5)  # outlive the task-mode wait, then fail like a real tool error
        raise JobFailed("the soundfont could not be loaded")

    monkeypatch.setattr(compose, "_run_composer", broken)
    async with clients() as (client, app):
        created = await call_raw(client, "generate_music", PIECE)
        task_id = created.model_dump(by_alias=True)["taskId"]
        done = await poll(client, task_id, timeout=20)
        assert done["status"] == "completed" and done["result"]["isError"] is True
        assert "soundfont" in done["statusMessage"]
        assert done["result"]["structuredContent"]["error"] == "the soundfont could not be loaded"


async def test_interrupted_job_is_failed_with_an_error(clients):
    from echotune_mcp.storage.records import JobRecord, JobStatus

    async with clients() as (client, app):
        job = JobRecord(owner="local", tool="generate_music", status=JobStatus.interrupted,
                        error="the server stopped while this job was running; start it again",
                        finished_at=time.time())
        await app.storage.jobs.insert(job)
        task = await task_call(client, "tasks/get", job.id)
        assert task["status"] == "failed" and "result" not in task
        assert task["error"]["code"] == -32603 and "server stopped" in task["error"]["message"]


async def test_a_legacy_session_never_gets_a_task(settings, gate):
    """2025-11-25 result shapes cannot carry a task, and its tasks/* were the removed v1 surface: a legacy host
    that lists the extension at initialize still gets job handles, and tasks/get is not a method there."""
    from mcp.client.extension import advertise

    app = App(settings)
    async with app, Client(build_server(app), raise_exceptions=True, mode="legacy",
                           extensions=[advertise(EXTENSION_ID)]) as client:
        res = await client.call_tool("generate_music", {**PIECE, "wait_seconds": 0.2})
        assert isinstance(res, CallToolResult) and res.structured_content["job_id"].startswith("job_")
        with pytest.raises(MCPError) as err:
            await task_call(client, "tasks/get", res.structured_content["job_id"])
        assert err.value.code == -32601
        await client.call_tool("cancel_job", {"job_id": res.structured_content["job_id"]})
