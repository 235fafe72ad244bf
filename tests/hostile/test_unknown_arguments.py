"""A misspelt or invented argument is refused by name, never silently dropped (issue #13: say what was done)."""

from __future__ import annotations


async def test_unknown_argument_is_refused_naming_it(make_client):
    async with make_client() as (client, _app):
        result = await client.call_tool("list_jobs", {"limit": 5, "statuss": "running"})
        assert result.is_error
        text = result.content[0].text
        assert "'statuss'" in text and "status" in text and "limit" in text
        ok = await client.call_tool("list_jobs", {"limit": 5, "status": "running"})
        assert not ok.is_error


async def test_every_schema_says_no_other_arguments(make_client):
    async with make_client() as (client, _app):
        tools = (await client.list_tools()).tools
        assert tools and all(t.input_schema.get("additionalProperties") is False for t in tools)
