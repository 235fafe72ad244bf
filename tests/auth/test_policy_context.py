"""The caller a token stands for, and what every registered tool asks of it (scope, step-up, cost class)."""

from __future__ import annotations

import json

import pytest
from mcp.server.auth.middleware.auth_context import auth_context_var
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp_types import ToolAnnotations

from echotune_mcp.auth.context import LOCAL, Caller, VerifiedToken, current_caller, principal_for
from echotune_mcp.auth.policy import (
    ALWAYS_STEP_UP,
    GENERATE_TOOLS,
    JOB_TOOLS,
    PROVIDER_READS,
    SCOPE_PROVIDERS,
    SCOPE_READ,
    SCOPE_WRITE,
    TOOL_CLASSES,
    method_scope,
    tool_calls_in,
    tool_policy,
)
from echotune_mcp.principal import current_principal


def _token(**kw) -> VerifiedToken:
    base = dict(token="t", client_id="cli", scopes=["echotune:read"], subject="alice", issuer="https://idp.example")
    return VerifiedToken(**(base | kw))


def test_no_token_is_the_local_caller():
    caller = current_caller()
    assert caller == Caller(principal=LOCAL) and not caller.authenticated and not caller.stepped_up
    assert current_principal() == LOCAL


def test_a_verified_token_is_a_hashed_principal_with_its_scopes_and_amr():
    reset = auth_context_var.set(AuthenticatedUser(_token(amr=["pwd", "otp"])))
    try:
        caller = current_caller()
        assert caller.authenticated and caller.stepped_up
        assert caller.principal == principal_for("https://idp.example", "alice") == current_principal()
        assert caller.principal.startswith("user:") and len(caller.principal) == 5 + 32
        assert "alice" not in caller.principal and caller.scopes == {"echotune:read"}
        assert caller.issuer == "https://idp.example" and caller.subject == "alice" and caller.client_id == "cli"
    finally:
        auth_context_var.reset(reset)
    assert current_principal() == LOCAL


def test_principals_differ_by_issuer_and_do_not_collide_on_concatenation():
    assert principal_for("https://a.example", "bob") != principal_for("https://b.example", "bob")
    assert principal_for("ab", "c") != principal_for("a", "bc")


@pytest.mark.parametrize("amr,stepped", [([], False), (["pwd"], False), (["mfa"], True), (["pwd", "otp"], True)])
def test_stepped_up_needs_mfa_or_otp(amr, stepped):
    assert Caller(principal="user:x", amr=frozenset(amr)).stepped_up is stepped


async def test_every_registered_tool_has_a_policy_that_follows_its_annotations(make_client):
    async with make_client() as (client, app):
        tools = (await client.list_tools()).tools
    names = {t.name for t in tools}
    assert GENERATE_TOOLS <= names, "a generation tool named in the cost table is not registered"
    assert (JOB_TOOLS - ALWAYS_STEP_UP) <= names, "a job tool named in the cost table is not registered"
    for tool in tools:
        a = tool.annotations
        p = tool_policy(tool.name, a)
        assert p.cost_class in TOOL_CLASSES
        if a.read_only_hint:
            assert p.scope == SCOPE_READ and not p.step_up, tool.name
        elif a.open_world_hint:
            # every provider mutation steps up; a sync only reads the provider account
            assert p.scope == SCOPE_PROVIDERS and p.step_up == (tool.name not in PROVIDER_READS), tool.name
        else:
            assert p.scope == SCOPE_WRITE, tool.name
            assert p.step_up == (bool(a.destructive_hint) or tool.name in ALWAYS_STEP_UP), tool.name
    by_name = {t.name: tool_policy(t.name, t.annotations) for t in tools}
    assert by_name["list_artifacts"].scope == SCOPE_READ and by_name["list_artifacts"].cost_class == "read"
    assert by_name["delete_artifact"].step_up and by_name["delete_artifact"].scope == SCOPE_WRITE
    assert by_name["generate_music"].cost_class == "generate" and not by_name["generate_music"].step_up
    assert by_name["create_playlist"].scope == SCOPE_PROVIDERS and by_name["create_playlist"].step_up
    sync = by_name["sync_listening_history"]
    assert sync.scope == SCOPE_PROVIDERS and not sync.step_up and PROVIDER_READS <= names
    assert by_name["connect_provider"].step_up  # a new grant on the account is not undone by deleting a record
    assert by_name["search_tracks"].scope == SCOPE_READ and by_name["search_tracks"].cost_class == "provider"
    assert by_name["analyze_audio"].cost_class == "job" and by_name["import_audio"].cost_class == "write"
    for name in ALWAYS_STEP_UP:  # the privacy toolset's account-wide tools, as registered
        assert by_name[name].step_up and by_name[name].scope == SCOPE_WRITE and by_name[name].cost_class == "job"


def test_account_wide_operations_always_step_up_and_unannotated_tools_count_as_writes():
    ro = ToolAnnotations(read_only_hint=True)
    assert tool_policy("export_my_data", ro).step_up and tool_policy("delete_my_data", None).step_up
    p = tool_policy("mystery", None)
    assert p.scope == SCOPE_WRITE and p.cost_class == "write" and not p.step_up


def test_method_scopes():
    assert method_scope("resources/read") == SCOPE_READ and method_scope("prompts/get") == SCOPE_READ
    assert method_scope("tools/list") is None and method_scope("initialize") is None
    # a task is a job: reading one is a read, cancelling or updating one a write (as get_job / cancel_job)
    assert method_scope("tasks/get") == SCOPE_READ
    assert method_scope("tasks/cancel") == SCOPE_WRITE and method_scope("tasks/update") == SCOPE_WRITE


def test_tool_calls_in_single_batch_and_malformed():
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_jobs", "arguments": {}}}
    assert tool_calls_in(json.dumps(call).encode()) == [("tools/call", "list_jobs")]
    batch = [call, {"jsonrpc": "2.0", "method": "notifications/initialized"},
             {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": 7}}, {"jsonrpc": "2.0", "id": 3,
                                                                                       "result": {}}]
    assert tool_calls_in(json.dumps(batch).encode()) == [("tools/call", "list_jobs"),
                                                         ("notifications/initialized", None), ("tools/call", "")]
    assert tool_calls_in(b"{not json") == [] and tool_calls_in(b"\xff\xfe") == [] and tool_calls_in(b"42") == []
