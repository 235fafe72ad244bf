"""The MCP Inspector CLI (``mcp-inspector --cli``) lists and calls our tools over stdio and over HTTP."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from .conftest import OFFLINE_ENV, HttpServer, NodeTools, echotune_command

EXPECTED_TOOLS = {"get_job", "list_jobs", "list_artifacts"}


@pytest.fixture(params=["stdio", "http"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> list[str]:
    """Inspector arguments naming the server: a command to spawn (stdio) or the URL of a running server (HTTP).

    Options must come before the target: everything after a stdio command is passed to the server.
    """
    if request.param == "http":
        server: HttpServer = request.getfixturevalue("http_server")
        return ["--transport", "http", "--server-url", server.url]
    data_dir = tmp_path / "stdio-data"
    env = {**OFFLINE_ENV, "ECHOTUNE_DATA_DIR": str(data_dir)}
    env_args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    return [*env_args, "--transport", "stdio", "--", *echotune_command(), "serve"]


def inspect(node_tools: NodeTools, target: list[str], *method_args: str) -> tuple[int, dict, str]:
    """Run ``mcp-inspector --cli --format json <method args> <target>``; return (exit code, stdout JSON, stderr)."""
    split = target.index("--") if "--" in target else len(target)
    args = ["--cli", "--format", "json", "--connect-timeout", "60000", *target[:split], *method_args, *target[split:]]
    proc = node_tools.run(node_tools.inspector, *args, timeout=120)
    try:
        payload = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"inspector {' '.join(args)} exited {proc.returncode} without JSON on stdout:\n"
                    f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-4000:]}", pytrace=False)
    return proc.returncode, payload, proc.stderr


def test_tools_list(node_tools: NodeTools, target: list[str]) -> None:
    rc, payload, stderr = inspect(node_tools, target, "--method", "tools/list")
    assert rc == 0, stderr
    tools = payload["result"]["tools"]
    names = {tool["name"] for tool in tools}
    assert EXPECTED_TOOLS <= names, f"missing {EXPECTED_TOOLS - names} in {sorted(names)}"
    for tool in tools:
        assert tool["inputSchema"]["type"] == "object", tool["name"]
        assert tool.get("description"), tool["name"]


def test_call_list_jobs(node_tools: NodeTools, target: list[str]) -> None:
    rc, payload, stderr = inspect(node_tools, target, "--method", "tools/call", "--tool-name", "list_jobs",
                                  "--tool-arg", "limit=5")
    assert rc == 0, stderr
    result = payload["result"]
    assert result.get("isError") is False, result
    assert result["structuredContent"]["jobs"] == []  # a fresh data dir has no jobs
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]
    if "--" in target:  # the stdio server really got the ECHOTUNE_DATA_DIR we passed with -e
        data_dir = Path(_env_arg(target, "ECHOTUNE_DATA_DIR"))
        assert data_dir.is_dir() and any(data_dir.iterdir()), f"stdio server did not use {data_dir}"


def test_call_unknown_job_is_tool_error(node_tools: NodeTools, target: list[str]) -> None:
    rc, payload, stderr = inspect(node_tools, target, "--method", "tools/call", "--tool-name", "get_job",
                                  "--tool-arg", "job_id=nope")
    assert rc != 0, "a tool result with isError:true must make the CLI exit non-zero"
    result = payload["result"]
    assert result["isError"] is True, result
    text = " ".join(block.get("text", "") for block in result["content"])
    assert "not found" in text and "nope" in text, text
    assert "tool_is_error" in _error_codes(stderr), stderr  # the CLI's error envelope on stderr


def _error_codes(stderr: str) -> set[str]:
    codes = set()
    for line in stderr.splitlines():
        try:
            envelope = json.loads(line)
        except json.JSONDecodeError:
            continue  # a stdio server's own log lines
        if isinstance(envelope, dict) and isinstance(envelope.get("error"), dict):
            codes.add(str(envelope["error"].get("code")))
    return codes


def _env_arg(target: list[str], key: str) -> str:
    for flag, value in itertools.pairwise(target):
        if flag == "-e" and value.startswith(f"{key}="):
            return value.split("=", 1)[1]
    raise AssertionError(f"no -e {key}=... in {target}")
