"""Server assembly: toolsets, read-only mode, instructions, prompts, refusing unsafe binds."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from echotune_mcp.config import ALL_TOOLSETS, Settings


async def test_read_only_mode_hides_every_mutating_tool(make_client):
    async with make_client() as (client, _):
        full = {t.name: t for t in (await client.list_tools()).tools}
    async with make_client(read_only=True) as (client, _):
        ro = {t.name: t for t in (await client.list_tools()).tools}
    assert ro and set(ro) < set(full)
    assert all(t.annotations.read_only_hint for t in ro.values())
    assert {n for n, t in full.items() if t.annotations.read_only_hint} == set(ro)
    assert "delete_artifact" in full and "delete_artifact" not in ro


async def test_toolsets_flag_limits_what_is_exposed(make_client):
    async with make_client(toolsets=("jobs",)) as (client, _):
        names = {t.name for t in (await client.list_tools()).tools}
    assert names == {"get_job", "list_jobs", "cancel_job"}


def test_unknown_toolset_is_refused():
    with pytest.raises(ValueError, match="valid toolsets"):
        Settings(toolsets=("jobs", "nope")).validate()
    assert "jobs" in ALL_TOOLSETS


# Arguments an agent sees with neither a description nor self-describing constraints. This list may only shrink:
# describe one (pydantic Field(description=...)) and remove it here.
UNDESCRIBED = {("create_playlist", "description"), ("curate_playlist", "name"),
               ("curate_playlist", "public"), ("reorder_playlist", "descending")}


def _self_describing(prop: dict) -> bool:
    """A description, or constraints that say everything: the allowed choices, or a closed numeric range."""
    if prop.get("description"):
        return True
    options = [prop, *prop.get("anyOf", [])]
    return any("enum" in o or ("minimum" in o and "maximum" in o) for o in options)


async def test_every_tool_is_typed_and_annotated(make_client):
    async with make_client() as (client, _):
        tools = (await client.list_tools()).tools
    undescribed = set()
    for tool in tools:
        assert tool.description and len(tool.description) > 40, tool.name
        out = tool.output_schema
        assert out and out.get("type") == "object" and out.get("properties"), f"{tool.name} has no typed output"
        a = tool.annotations
        assert a.title and isinstance(a.read_only_hint, bool) and isinstance(a.open_world_hint, bool), tool.name
        assert isinstance(a.destructive_hint, bool) and isinstance(a.idempotent_hint, bool), tool.name
        assert not (a.read_only_hint and a.destructive_hint), tool.name
        assert tool.input_schema.get("type") == "object", tool.name
        for name, prop in tool.input_schema.get("properties", {}).items():
            if not _self_describing(prop):
                undescribed.add((tool.name, name))
    assert undescribed == UNDESCRIBED


async def test_instructions_and_prompts(make_client):
    async with make_client() as (client, _):
        assert "get_job" in client.instructions and "echotune://artifacts" in client.instructions
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert {"track_brief", "iterate_stem"} <= set(prompts)
        got = await client.get_prompt("track_brief", {"idea": "rain on a tin roof"})
        text = got.messages[0].content.text
        assert "rain on a tin roof" in text and "generate_music" in text


def test_http_refuses_non_loopback_bind(tmp_path):
    """No bare switch opens it, only an issuer (ECHOTUNE_AUTH_ISSUER); tests/hostile/test_config.py covers the rest."""
    proc = subprocess.run([sys.executable, "-m", "echotune_mcp", "serve", "--transport", "http", "--host", "0.0.0.0",
                           "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ECHOTUNE_AUTH": "1"})
    assert proc.returncode == 2
    assert "refusing to bind 0.0.0.0" in proc.stderr and "no authorization" in proc.stderr


async def test_a_bad_prompt_request_is_invalid_params_naming_what_is_allowed(make_client):
    """An unknown prompt or a missing required argument is the caller's mistake (-32602), not an internal error."""
    from mcp.shared.exceptions import MCPError

    async with make_client() as (client, _):
        with pytest.raises(MCPError) as err:
            await client.get_prompt("no_such_prompt", {})
        assert err.value.error.code == -32602
        assert "no_such_prompt" in err.value.error.message and "track_brief" in err.value.error.message
        with pytest.raises(MCPError) as err:
            await client.get_prompt("track_brief", {})
        assert err.value.error.code == -32602 and "idea" in err.value.error.message
