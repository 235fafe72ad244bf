"""Tools are plain module-level functions on their module's toolset, so a test (or a script) can call them.

Every toolset module has a ``toolset`` whose tools and resources are attributes of the module itself (no
closures over an App). A direct call reaches the app through ``using_app``; one made without an app bound
fails with a clear message instead of touching some other server's data.
"""

from __future__ import annotations

import importlib

import pytest

from echotune_mcp.app import App
from echotune_mcp.config import ALL_TOOLSETS
from echotune_mcp.toolsets.base import Toolset, current_app, using_app


@pytest.mark.parametrize("name", ALL_TOOLSETS)
def test_every_tool_and_resource_is_a_module_level_function(name):
    module = importlib.import_module(f"echotune_mcp.toolsets.{name}")
    assert not hasattr(module, "build"), f"toolsets/{name}.py still builds its tools inside build(app)"
    toolset = module.toolset
    assert isinstance(toolset, Toolset) and toolset.name == name
    assert toolset.tools, f"toolsets/{name}.py declares no tools"
    for tool in toolset.tools:
        assert getattr(module, tool.name) is tool.fn, f"{name}.{tool.name} is not the module's own function"
        assert tool.fn.__qualname__ == tool.name, f"{name}.{tool.name} is nested ({tool.fn.__qualname__})"
    for resource in toolset.resources:
        assert "<locals>" not in resource.fn.__qualname__, f"{name}: resource {resource.uri} is a closure"


async def test_a_tool_called_directly_uses_the_bound_app(settings):
    from echotune_mcp.toolsets import jobs

    async with App(settings) as app:
        with using_app(app):
            assert current_app() is app
            listed = await jobs.list_jobs()
        assert listed.jobs == [] and listed.next_cursor is None
    with pytest.raises(RuntimeError, match="no EchoTune app is bound"):
        await jobs.list_jobs()
