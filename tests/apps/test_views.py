"""The in-chat views (MCP Apps): ui:// resources, the extension capability, and the tools' links to them.

These run without a UI build: a missing view must fail its read with a clear message while every tool keeps
working, and a built one (a stand-in file here; tests/apps/test_wheel.py serves the real build) is served
with the MCP Apps mime type and its CSP.
"""

from __future__ import annotations

import pytest
from mcp.shared.exceptions import MCPError

from echotune_mcp import ui_views
from echotune_mcp.ui_views import APP_MIME_TYPE, VIEWS

# SPEC16.md: which view each tool opens.
LINKS = {
    "generate_music": "job", "regenerate_stem": "job", "add_stem": "job", "separate_stems": "job",
    "remix": "player", "get_artifact": "player", "import_audio": "player",
    "get_job": "job",
    "get_playlist": "playlist", "recommend_tracks": "playlist", "curate_playlist": "playlist",
    "get_provenance": "provenance", "check_usage": "provenance",
}
TOOLSETS = ("jobs", "artifacts", "compose", "audio", "licensing", "curation", "recommend")


@pytest.fixture
def dist(tmp_path, monkeypatch):
    """Point the views at an empty folder: a checkout where `make ui` has not run."""
    folder = tmp_path / "ui_dist"
    folder.mkdir()
    monkeypatch.setattr(ui_views, "UI_DIST", folder)
    return folder


async def test_tools_link_their_views(make_client, dist):
    async with make_client(toolsets=TOOLSETS) as (client, _app):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        for name, view in LINKS.items():
            assert tools[name].meta == {"ui": {"resourceUri": f"ui://echotune/{view}.html"}}, name
        unlinked = [n for n, t in tools.items() if n not in LINKS]
        assert unlinked and all(not (tools[n].meta or {}).get("ui") for n in unlinked)
        caps = client.server_capabilities
        assert caps.extensions is not None and "io.modelcontextprotocol/ui" in caps.extensions


async def test_read_only_mode_keeps_the_links_of_the_tools_it_serves(make_client, dist):
    async with make_client(toolsets=TOOLSETS, read_only=True) as (client, _app):
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert "generate_music" not in tools
        assert tools["get_job"].meta["ui"]["resourceUri"] == "ui://echotune/job.html"
        assert tools["check_usage"].meta["ui"]["resourceUri"] == "ui://echotune/provenance.html"


async def test_views_listed_with_mime_and_strict_csp(make_client, dist):
    async with make_client(toolsets=("jobs",)) as (client, _app):
        resources = {str(r.uri): r for r in (await client.list_resources()).resources}
    for view in VIEWS:
        r = resources[f"ui://echotune/{view}.html"]
        assert r.mime_type == APP_MIME_TYPE == "text/html;profile=mcp-app"
        csp = r.meta["ui"]["csp"]
        assert csp == {"connectDomains": [], "resourceDomains": [], "frameDomains": [], "baseUriDomains": []}
        assert r.meta["ui"]["prefersBorder"] is True
        assert r.description


async def test_unbuilt_view_fails_clearly_and_tools_still_work(make_client, dist):
    async with make_client(toolsets=("jobs", "artifacts")) as (client, _app):
        with pytest.raises(MCPError) as err:
            await client.read_resource("ui://echotune/mixer.html")
        assert "EchoTune UI not built: run `make ui`" in str(err.value)
        listed = await client.call_tool("list_artifacts", {})
        assert not listed.is_error


async def test_built_view_is_read_lazily_with_its_meta(make_client, dist):
    async with make_client(toolsets=("jobs",)) as (client, _app):
        # Built after the server started: served without a restart.
        (dist / "player.html").write_text("<!doctype html><script>window.__ECHOTUNE_VIEW__='player'</script>")
        result = await client.read_resource("ui://echotune/player.html")
    [content] = result.contents
    assert content.mime_type == APP_MIME_TYPE
    assert "__ECHOTUNE_VIEW__='player'" in content.text
    assert content.meta["ui"]["csp"]["connectDomains"] == []


def test_ui_marker_names_a_view():
    from echotune_mcp.toolsets.base import Toolset

    ts = Toolset("t", "test")
    with pytest.raises(ValueError, match="unknown view 'plyer'"):
        ts.tool(title="x", read_only=True, ui="plyer")  # type: ignore[arg-type]
