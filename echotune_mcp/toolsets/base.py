"""The toolset seam (after github-mcp-server): modules declare tools; the server decides which to expose.

A tool is a plain module-level function declared on its module's ``toolset`` with honest annotations. In
read-only mode every tool that is not ``readOnlyHint`` is simply not registered, so an agent never sees what
it may not call.

A tool reaches the running server's :class:`~echotune_mcp.app.App` through :func:`current_app`. The server
binds it for the whole handling of every request (a middleware in ``server.py``, so code the SDK runs before the
tool, such as a confirmation resolver, sees it too); a test binds it with ``using_app(app)`` and calls the
function directly, e.g. ``with using_app(app): await get_job("job_...")``.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mcp.server.mcpserver import MCPServer
from mcp_types import CallToolResult, ContentBlock, ResourceLink, TextContent, ToolAnnotations
from pydantic import BaseModel

from ..ui_views import ViewName, view_uri

if TYPE_CHECKING:
    from ..app import App

_APP: ContextVar[App] = ContextVar("echotune_app")


def current_app() -> App:
    """The App the tool being called serves (bound by the server per request, or by ``using_app`` in a test)."""
    try:
        return _APP.get()
    except LookupError:
        raise RuntimeError("no EchoTune app is bound: call tools through the server, or inside using_app(app)") from None


@contextmanager
def using_app(app: App) -> Iterator[App]:
    """Bind ``app`` for direct calls of tool functions (tests, scripts); restored on exit."""
    token = _APP.set(app)
    try:
        yield app
    finally:
        _APP.reset(token)


@dataclass
class ToolDef:
    fn: Callable[..., Any]
    name: str
    title: str
    annotations: ToolAnnotations
    meta: dict[str, Any] | None = None  # e.g. {"ui": {"resourceUri": "ui://echotune/job.html"}} (MCP Apps)


@dataclass
class ResourceDef:
    uri: str
    fn: Callable[..., Any]
    kwargs: dict[str, Any]


@dataclass
class Toolset:
    name: str
    description: str
    tools: list[ToolDef] = field(default_factory=list)
    resources: list[ResourceDef] = field(default_factory=list)

    def tool(
        self,
        *,
        title: str,
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
        ui: ViewName | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a tool. ``ui``: the in-chat view (MCP Apps) a host may render for its result; set as
        ``_meta.ui.resourceUri``. Hosts without Apps ignore it, so the tool's result must stand on its own."""
        meta = {"ui": {"resourceUri": view_uri(ui)}} if ui is not None else None

        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            annotations = ToolAnnotations(
                title=title,
                read_only_hint=read_only,
                destructive_hint=destructive if not read_only else False,
                idempotent_hint=idempotent if not read_only else True,
                open_world_hint=open_world,
            )
            self.tools.append(ToolDef(fn=fn, name=fn.__name__, title=title, annotations=annotations, meta=meta))
            return fn

        return decorate

    def resource(self, uri: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.resources.append(ResourceDef(uri=uri, fn=fn, kwargs=kwargs))
            return fn

        return decorate

    def register(self, server: MCPServer, *, read_only_mode: bool) -> list[str]:
        """Add this toolset's tools and resources to ``server`` (built by ``build_server``, which binds its App
        for every request); the tool names."""
        registered = []
        for t in self.tools:
            if read_only_mode and not t.annotations.read_only_hint:
                continue
            # cleandoc: the description an agent reads does not depend on how deep the function was indented
            server.add_tool(t.fn, name=t.name, title=t.title, description=inspect.cleandoc(t.fn.__doc__ or ""),
                            annotations=t.annotations, meta=t.meta, structured_output=True)
            registered.append(t.name)
        for r in self.resources:
            server.resource(r.uri, **r.kwargs)(r.fn)
        return registered


def tool_result(model: BaseModel, *, links: list[ResourceLink] | None = None,
                extra: list[ContentBlock] | None = None, summary: str | None = None) -> CallToolResult:
    """Structured content for programs, a JSON text block for models, and resource links to files.

    Files are linked, never inlined: an agent fetches ``.../content`` only if it needs the bytes.
    """
    data = model.model_dump(mode="json")
    content: list[ContentBlock] = []
    if summary:
        content.append(TextContent(type="text", text=summary))
    content.append(TextContent(type="text", text=json.dumps(data, indent=1)))
    content.extend(links or [])
    content.extend(extra or [])
    return CallToolResult(content=content, structured_content=data)
