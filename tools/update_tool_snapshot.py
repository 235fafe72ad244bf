"""Regenerate tests/snapshots/tools.json after a deliberate change to a tool's surface.

The snapshot test fails on any change to a tool's name, description, input or output schema or
annotations, so that what agents see changes only on purpose (github-mcp-server does the same).
Usage: .venv/bin/python tools/update_tool_snapshot.py
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SNAPSHOT = REPO / "tests" / "snapshots" / "tools.json"


async def current_tools() -> list[dict]:
    from mcp import Client

    from echotune_mcp.app import App
    from echotune_mcp.config import Settings
    from echotune_mcp.server import build_server

    with tempfile.TemporaryDirectory() as tmp:
        app = App(Settings(data_dir=Path(tmp), allowed_roots=(Path(tmp),)))
        async with app, Client(build_server(app)) as client:
            tools = (await client.list_tools()).tools
    out = []
    for t in sorted(tools, key=lambda t: t.name):
        out.append({
            "name": t.name,
            "title": t.title,
            "description": t.description,
            "annotations": t.annotations.model_dump(mode="json", by_alias=True, exclude_none=True),
            "inputSchema": t.input_schema,
            "outputSchema": t.output_schema,
        })
    return out


def main() -> int:
    tools = asyncio.run(current_tools())
    SNAPSHOT.parent.mkdir(parents=True, exist_ok=True)
    SNAPSHOT.write_text(json.dumps(tools, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(tools)} tools to {SNAPSHOT.relative_to(REPO)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
