"""Confirmations over real streamable HTTP (``echotune-mcp serve --transport http``), as a 2026-07-28 client sends
them: stateless JSON-RPC with the client's capabilities in ``_meta``.

These are the conformance suite's input-required checks that need its fixture tools, made on our own
``delete_artifact`` (an artifact another one was made from): resultType, a sealed requestState, tampering, a retry
without the answer, a client without elicitation, and a restart between question and answer (the state's key
comes from the server key in the data dir, not from the process).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest

from echotune_mcp.app import App
from echotune_mcp.auth.context import LOCAL
from echotune_mcp.config import Settings
from tests.conftest import free_port, serve_until_healthy
from tests.node.conftest import echotune_command, server_env

CAPS = {"elicitation": {}}
INFO = {"name": "confirm-test", "version": "1"}


@contextmanager
def serve(data_dir: Path, log: Path) -> Iterator[str]:
    """``echotune-mcp serve --transport http`` on ``data_dir``, up and answering; its MCP URL."""
    port = free_port()
    cmd = [*echotune_command(), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    with serve_until_healthy(cmd, server_env(data_dir), Path.cwd(), log, port):
        yield f"http://127.0.0.1:{port}/mcp"


def rpc(url: str, name: str, arguments: dict, caps: dict | None = CAPS, **extra) -> dict:
    """One stateless 2026-07-28 tools/call; the JSON-RPC response (result or error)."""
    params = {"name": name, "arguments": arguments, **extra,
              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientInfo": INFO,
                        "io.modelcontextprotocol/clientCapabilities": caps or {}}}
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": name}
    r = httpx.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params},
                   headers=headers, timeout=30)
    if r.headers.get("content-type", "").startswith("text/event-stream"):
        events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
        return next(e for e in events if e.get("id") == 1)
    return r.json()


@pytest.fixture
def family(tmp_path: Path) -> tuple[Path, str, str]:
    """A data dir holding the local user's artifact and one made from it."""
    data_dir = tmp_path / "data"

    async def seed() -> tuple[str, str]:
        async with App(Settings(data_dir=data_dir)) as app:
            parent = await app.artifacts.create(owner=LOCAL, data=b"{}", kind="json", media_type="application/json",
                                                name="take.json")
            child = await app.artifacts.create(owner=LOCAL, data=b"[]", kind="json", media_type="application/json",
                                               name="edit.json", parents=[parent.id])
            return parent.id, child.id

    parent, child = anyio.run(seed)
    return data_dir, parent, child


def exists(data_dir: Path, artifact_id: str) -> bool:
    async def get() -> bool:
        async with App(Settings(data_dir=data_dir)) as app:
            return await app.storage.artifacts.get(LOCAL, artifact_id) is not None

    return anyio.run(get)


def test_confirmation_round_trip_over_http(family, tmp_path: Path) -> None:
    data_dir, parent, child = family
    log = tmp_path / "server.log"
    args = {"artifact": parent}
    with serve(data_dir, log) as url:
        first = rpc(url, "delete_artifact", args)["result"]
        assert first["resultType"] == "input_required", first
        ((key, ask),) = first["inputRequests"].items()
        assert ask["method"] == "elicitation/create"
        assert child in ask["params"]["message"] and "edit.json" in ask["params"]["message"]
        state = first["requestState"]
        assert isinstance(state, str) and parent not in state  # sealed: not even readable
        yes = {key: {"action": "accept", "content": {"confirmed": True}}}

        # tampered, or spent on other arguments: refused as a JSON-RPC error, nothing deleted
        for bad_state, bad_args in ((state[:-3] + ("AAA" if not state.endswith("AAA") else "BBB"), args),
                                    (state, {"artifact": child})):
            err = rpc(url, "delete_artifact", bad_args, inputResponses=yes, requestState=bad_state)
            assert err.get("error", {}).get("code") == -32602, err
        # a retry without the answer is asked again, not failed
        again = rpc(url, "delete_artifact", args, inputResponses={"other": yes[key]}, requestState=state)["result"]
        assert again["resultType"] == "input_required" and key in again["inputRequests"]
        # a client that declared no elicitation is never sent one: it gets the dry run and `confirm`
        blind = rpc(url, "delete_artifact", args, caps={})["result"]
        assert blind.get("resultType") != "input_required" and blind["isError"] is True
        assert "confirm=true" in blind["content"][0]["text"] and child in blind["content"][0]["text"]
    assert exists(data_dir, parent)

    # the server restarts between the question and the answer: the state still opens (server key, not process key)
    with serve(data_dir, log) as url:
        done = rpc(url, "delete_artifact", args, inputResponses=yes, requestState=state)["result"]
        assert done.get("isError") is not True and done["structuredContent"]["artifact_id"] == parent, done
    assert not exists(data_dir, parent) and exists(data_dir, child)


def test_null_input_responses_is_a_protocol_error(family, tmp_path: Path) -> None:
    data_dir, parent, _ = family
    with serve(data_dir, tmp_path / "server.log") as url:
        err = rpc(url, "delete_artifact", {"artifact": parent}, inputResponses=None)
        assert err.get("error", {}).get("code") == -32602 and "inputResponses" in err["error"]["message"], err
    assert exists(data_dir, parent)
