"""OpenTelemetry set-up from the standard ``OTEL_*`` variables (read in config.py), and span helpers.

The MCP SDK already opens a SERVER span per ``tools/call`` (``mcp.method.name``,
``gen_ai.tool.name``) and honours a W3C ``traceparent`` in ``_meta``; we do not duplicate it.
We add child spans for jobs, storage calls, renders and provider HTTP calls, and carry the trace
context into a job's background task so its spans stay under the call that started it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, Status, StatusCode

from .config import Settings

TRACER_NAME = "echotune_mcp"
_configured = False


def setup_telemetry(settings: Settings) -> bool:
    """Install an SDK tracer provider exporting OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set.

    Returns whether an exporter was installed. Without the variable nothing is exported and the
    API's no-op provider stays in place (zero overhead), unless a test installed its own provider.
    """
    global _configured
    if _configured:
        return True
    if not settings.otel_endpoint:  # unset, or OTEL_SDK_DISABLED=true
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": settings.otel_service_name})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads the OTEL_* variables itself
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def shutdown_telemetry() -> None:
    provider = trace.get_tracer_provider()
    if hasattr(provider, "shutdown"):
        provider.force_flush()  # type: ignore[attr-defined]
        provider.shutdown()  # type: ignore[attr-defined]


def tracer() -> trace.Tracer:
    return trace.get_tracer(TRACER_NAME)


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Span]:
    """A child span of whatever is current; exceptions mark it as an error and propagate."""
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with tracer().start_as_current_span(name, attributes=attrs, record_exception=True) as sp:
        yield sp


def capture_context() -> dict[str, str]:
    """The current trace context as a W3C carrier (stored on the job, used by its background task)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier


@contextmanager
def attached(carrier: dict[str, str] | None) -> Iterator[None]:
    """Make ``carrier`` the current context for the block (a job running in the background)."""
    token = otel_context.attach(propagate.extract(carrier or {}))
    try:
        yield
    finally:
        otel_context.detach(token)


def mark_error(sp: Span, message: str) -> None:
    sp.set_status(Status(StatusCode.ERROR, message))
