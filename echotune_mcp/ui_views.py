"""The in-chat views (MCP Apps, extension ``io.modelcontextprotocol/ui``): five ``ui://`` HTML resources.

A host that supports MCP Apps renders a tool's view (``_meta.ui.resourceUri`` on the tool, set by
``Toolset.tool(ui=...)``) in a sandboxed iframe; the view gets the tool's input and result from the host and
makes further calls (``tools/call``, ``resources/read``) through it, never over the network. Hosts without
Apps ignore the link and use the tools' text and structured results, which stay complete.

The HTML files are built from ``ui/`` by ``make ui`` into ``echotune_mcp/ui_dist/`` (git-ignored, shipped in
the wheel). They are read when a client reads the resource, not at import, so the server starts and every
tool works without Node or a UI build; reading a view that was not built fails with a message saying how to
build it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, get_args

import anyio
from mcp.server.apps import APP_MIME_TYPE, Apps, ResourceCsp
from mcp.server.mcpserver.exceptions import ResourceError
from mcp.server.mcpserver.resources import Resource
from pydantic import Field

ViewName = Literal["player", "mixer", "job", "playlist", "provenance"]
VIEWS: tuple[str, ...] = get_args(ViewName)
UI_DIST = Path(__file__).resolve().parent / "ui_dist"
NOT_BUILT = "EchoTune UI not built: run `make ui`"

DESCRIPTIONS: dict[str, str] = {
    "player": "Audio player for an artifact: play/pause/seek, loop a region, waveform, A/B between two "
              "artifacts, download.",
    "mixer": "Stem mixer: gain, mute, solo and pan per stem, played in sync; Apply calls remix, Regenerate "
             "calls regenerate_stem.",
    "job": "Progress of a running job with live previews as they arrive, cancel, and its result artifacts.",
    "playlist": "A provider playlist or a recommendation list with reasons: drag to reorder, remove, "
                "snapshot and restore.",
    "provenance": "Lineage graph of an artifact and its licence decision (check_usage) at a glance.",
}

# No outside origin at all: the views are single files (scripts and styles inlined), and audio, artifacts
# and every other piece of data come through the host bridge. Empty lists say "none" explicitly, so a host
# applies its most restrictive policy (no connect-src, no external images, fonts, media or frames).
CSP = ResourceCsp(connect_domains=[], resource_domains=[], frame_domains=[], base_uri_domains=[])


def view_uri(view: str) -> str:
    """The ``ui://`` URI of a view; refuses a name that is not one of ``VIEWS`` (a typo in a ``ui=`` marker)."""
    if view not in VIEWS:
        raise ValueError(f"unknown view {view!r}; the views are {', '.join(VIEWS)}")
    return f"ui://echotune/{view}.html"


def view_path(view: str) -> Path:
    return UI_DIST / f"{view}.html"


class ViewResource(Resource):
    """One built view, read from the package's ``ui_dist`` folder on each ``resources/read``.

    Read lazily (a rebuild with ``make ui`` is served without a restart, and a missing build is an error
    at read time, not at start-up).
    """

    path: Path = Field(description="the built HTML file")

    async def read(self) -> str:
        try:
            return await anyio.to_thread.run_sync(lambda: self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ResourceError(f"{NOT_BUILT} ({self.path.name} is not in {self.path.parent}; `make ui` builds "
                                "the views with Node 22 into the package; the tools work without them)") from None


def view_resource(view: str) -> ViewResource:
    ui: dict[str, Any] = {"csp": CSP.model_dump(by_alias=True, exclude_none=True), "prefersBorder": True}
    return ViewResource(uri=view_uri(view), name=f"echotune-{view}", title=f"EchoTune {view}",
                        description=DESCRIPTIONS[view], mime_type=APP_MIME_TYPE, meta={"ui": ui},
                        path=view_path(view))


def ui_extension() -> Apps:
    """The SDK's Apps extension carrying our five views; passing it to ``MCPServer(extensions=[...])``
    registers them and advertises ``io.modelcontextprotocol/ui`` in the server's capabilities.

    Tools are linked to views by ``Toolset.tool(ui=...)`` (they are registered by their toolsets, so the
    read-only filter and the argument checks apply to them as to every tool), not through ``Apps.tool``.
    """
    apps = Apps()
    for view in VIEWS:
        apps.add_resource(view_resource(view))
    return apps


def built_views() -> dict[str, bool]:
    """Which views are built (for diagnostics and tests)."""
    return {view: view_path(view).is_file() for view in VIEWS}
