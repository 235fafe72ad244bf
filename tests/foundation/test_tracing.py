"""Tracing: tools/call → job → storage is one trace, in memory and over OTLP/HTTP (oteltap)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import free_port, wait_for_port

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans():
    """Install an SDK provider once (the global provider can be set only once per process)."""
    current = trace.get_tracer_provider()
    if not isinstance(current, TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    elif _EXPORTER not in [getattr(p, "span_exporter", None) for p in current._active_span_processor._span_processors]:
        current.add_span_processor(SimpleSpanProcessor(_EXPORTER))
    return _EXPORTER


async def test_tool_call_job_and_storage_form_one_parent_chain(spans, settings):
    from mcp import Client

    from echotune_mcp.app import App
    from echotune_mcp.principal import current_principal
    from echotune_mcp.server import build_server
    from echotune_mcp.toolsets.common import job_result

    app = App(settings)
    server = build_server(app)

    async def traced_job(ctx_note: str = "x"):
        """Test-only tool: starts a job that writes an artifact."""
        async def work(job):
            await asyncio.sleep(0.05)
            art = await job.add_artifact(data=b"{}", kind="json", media_type="application/json", name="a.json")
            return {"a": art.id}

        job = await app.jobs.submit(owner=current_principal(), tool="traced_job", params={}, work=work)
        return (await job_result(app, current_principal(), job.id, 5, None)).structured_content

    server.add_tool(traced_job, structured_output=False)
    spans.clear()
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_span = "00f067aa0ba902b7"
    async with app, Client(server) as client:
        result = await client.call_tool("traced_job", {}, meta={"traceparent": f"00-{trace_id}-{parent_span}-01"})
        assert not result.is_error
    finished = spans.get_finished_spans()
    by_id = {s.context.span_id: s for s in finished}
    call = next(s for s in finished if s.name == "tools/call traced_job")
    assert format(call.context.trace_id, "032x") == trace_id, "traceparent in _meta was not honoured"
    assert format(call.parent.span_id, "016x") == parent_span
    assert call.attributes["mcp.method.name"] == "tools/call" and call.attributes["gen_ai.tool.name"] == "traced_job"
    insert = next(s for s in finished if s.name == "storage.artifacts.insert")
    chain = []
    node = insert
    while node is not None:
        chain.append(node.name)
        node = by_id.get(node.parent.span_id) if node.parent else None
    assert chain[0] == "storage.artifacts.insert"
    assert "job.run" in chain and chain[-1] == "tools/call traced_job", chain
    for name in ("job.submit", "job.run", "storage.jobs.insert", "storage.artifacts.insert", "artifact.create"):
        span = next(s for s in finished if s.name == name)
        assert format(span.context.trace_id, "032x") == trace_id, f"{name} left the caller's trace"


async def test_spans_reach_an_otlp_http_collector(tmp_path):
    from mcp import Client
    from oteltap import OtelTapHttpProtobufReceiver, OtelTapHttpProtobufReceiverSettings

    otlp_port, mcp_port = free_port(), free_port()
    async with OtelTapHttpProtobufReceiver(OtelTapHttpProtobufReceiverSettings(http_port=otlp_port)) as receiver:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
               "OTEL_BSP_SCHEDULE_DELAY": "100", "OTEL_SERVICE_NAME": "echotune-test",
               "ECHOTUNE_DATA_DIR": str(tmp_path / "data"), "ECHOTUNE_TOOLSETS": "jobs,artifacts"}
        proc = subprocess.Popen([sys.executable, "-m", "echotune_mcp", "serve", "--transport", "http",
                                 "--port", str(mcp_port)], env=env, stderr=subprocess.PIPE)
        try:
            await asyncio.to_thread(wait_for_port, mcp_port)
            seen = {}

            def collect(span) -> bool:  # spans arrive children-first; keep every one we are shown
                seen[span.name] = span
                return {"tools/call list_jobs", "storage.jobs.find"} <= seen.keys()

            # Listen before calling: the receiver only shows spans that arrive while someone awaits.
            waiter = asyncio.create_task(receiver.await_trace(collect, timeout=30))
            await asyncio.sleep(0.1)
            async with Client(f"http://127.0.0.1:{mcp_port}/mcp") as client:
                await client.call_tool("list_jobs", {"limit": 3})
            await waiter
            call, storage = seen["tools/call list_jobs"], seen["storage.jobs.find"]
            assert storage.trace_id == call.trace_id and storage.parent_span_id == call.span_id
        finally:
            proc.terminate()
            proc.wait(timeout=10)
