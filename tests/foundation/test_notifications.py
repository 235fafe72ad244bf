"""Clients are told when a job changes state, and see progress while a tool call waits."""

from __future__ import annotations

import asyncio
import warnings

import mcp_types as types
from mcp import Client

from echotune_mcp.app import App
from echotune_mcp.principal import current_principal
from echotune_mcp.server import build_server
from echotune_mcp.toolsets.common import job_result


def _server_with_slow_tool(app: App, gate: asyncio.Event):
    server = build_server(app)

    async def slow_job(wait_seconds: float = 0) -> types.CallToolResult:
        """Test-only tool: a job that reports progress and waits for a gate."""
        async def work(job):
            for i in range(1, 4):
                await job.progress(i / 4, f"step {i}")
                await asyncio.sleep(0.05)
            await gate.wait()
            return {"ok": True}

        job = await app.jobs.submit(owner=current_principal(), tool="slow_job", params={}, work=work)
        return await job_result(app, current_principal(), job.id, wait_seconds, None)

    server.add_tool(slow_job, structured_output=False)
    return server


async def test_listen_stream_reports_job_state_changes(settings):
    gate = asyncio.Event()
    app = App(settings)
    server = _server_with_slow_tool(app, gate)
    async with app, Client(server) as client:
        started = await client.call_tool("slow_job", {})
        job_id = started.structured_content["job_id"]
        uri = f"echotune://jobs/{job_id}"
        async with client.listen(resource_subscriptions=[uri]) as sub:
            gate.set()
            event = await asyncio.wait_for(sub.__anext__(), 10)
            assert getattr(event, "uri", None) == uri
        state = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 5})
        assert state.structured_content["status"] == "succeeded"


async def test_legacy_resources_subscribe_gets_updates(settings):
    gate = asyncio.Event()
    app = App(settings)
    server = _server_with_slow_tool(app, gate)
    updates: list[str] = []

    async def handler(message):
        root = getattr(message, "root", message)
        if isinstance(root, types.ResourceUpdatedNotification):
            updates.append(str(root.params.uri))

    async with app, Client(server, mode="legacy", message_handler=handler) as client:
        assert client.server_capabilities.resources.subscribe
        started = await client.call_tool("slow_job", {})
        job_id = started.structured_content["job_id"]
        uri = f"echotune://jobs/{job_id}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            await client.subscribe_resource(uri)
        gate.set()
        for _ in range(100):
            if uri in updates:
                break
            await asyncio.sleep(0.05)
    assert uri in updates


async def test_get_job_forwards_progress_notifications(settings):
    gate = asyncio.Event()
    app = App(settings)
    server = _server_with_slow_tool(app, gate)
    seen: list[tuple[float, str | None]] = []

    async def on_progress(progress, total, message):
        seen.append((progress, message))

    async with app, Client(server) as client:
        started = await client.call_tool("slow_job", {})
        job_id = started.structured_content["job_id"]
        asyncio.get_running_loop().call_later(0.5, gate.set)
        done = await client.call_tool("get_job", {"job_id": job_id, "wait_seconds": 10}, progress_callback=on_progress)
        assert done.structured_content["status"] == "succeeded"
    assert seen and all(0 <= p <= 1 for p, _ in seen)
    assert any(m and m.startswith("step") for _, m in seen)
