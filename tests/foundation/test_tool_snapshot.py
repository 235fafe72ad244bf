"""Every tool's surface (name, description, schemas, annotations) matches the reviewed snapshot.

A failure here means an agent-visible change: if it is deliberate, run
``.venv/bin/python tools/update_tool_snapshot.py`` and commit the new snapshot with the change.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))

from update_tool_snapshot import SNAPSHOT, current_tools  # noqa: E402


async def test_tool_surface_matches_snapshot():
    current = json.loads(json.dumps(await current_tools(), sort_keys=True))
    expected = json.loads(SNAPSHOT.read_text())
    assert [t["name"] for t in current] == [t["name"] for t in expected], "tools were added or removed"
    for cur, exp in zip(current, expected, strict=True):
        assert cur == exp, f"tool {cur['name']} changed; if deliberate run tools/update_tool_snapshot.py"


def test_mcp_json_is_a_working_client_config():
    config = json.loads((REPO / "mcp.json").read_text())
    stdio = config["servers"]["echotune"]
    assert stdio["type"] == "stdio" and stdio["args"] == ["serve"]
    assert stdio["command"].replace("${workspaceFolder}", str(REPO)) == str(REPO / ".venv/bin/echotune-mcp")
    assert config["servers"]["echotune-http"]["url"].endswith("/mcp")


async def test_mcp_json_server_starts_over_stdio(tmp_path):
    from mcp import Client, StdioServerParameters

    config = json.loads((REPO / "mcp.json").read_text())["servers"]["echotune"]
    command = config["command"].replace("${workspaceFolder}", str(REPO))
    if not Path(command).exists():
        command = sys.executable
        args = ["-m", "echotune_mcp", *config["args"]]
    else:
        args = config["args"]
    env = {k: v.replace("${workspaceFolder}", str(REPO)) for k, v in config.get("env", {}).items()}
    env["ECHOTUNE_DATA_DIR"] = str(tmp_path)
    import os

    params = StdioServerParameters(command=command, args=args, env={**os.environ, **env})
    async with Client(params) as client:
        names = {t.name for t in (await client.list_tools()).tools}
    assert {"get_job", "list_artifacts"} <= names
