"""server.json, the package's entry for the official MCP registry (schema 2025-12-11), stays true to the package.

Checked offline against the schema's rules that matter for this entry (required fields, name shape, the
100-character description, exact versions, a transport on the package) and against the package itself: the
versions equal the package version, the PyPI name is the project name, the command it describes runs, and
the README carries the ``mcp-name`` marker the registry uses to verify ownership of a PyPI package.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from echotune_mcp import __version__

REPO = Path(__file__).resolve().parents[2]
SCHEMA = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json"


def load() -> dict:
    return json.loads((REPO / "server.json").read_text(encoding="utf-8"))


def test_required_fields_and_shapes():
    doc = load()
    assert doc["$schema"] == SCHEMA
    for key in ("name", "description", "version"):
        assert isinstance(doc.get(key), str) and doc[key].strip(), key
    name = doc["name"]
    assert name.count("/") == 1
    namespace, server = name.split("/")
    assert re.fullmatch(r"io\.github\.[A-Za-z0-9-]+", namespace), "GitHub-authenticated namespace io.github.<owner>"
    assert server == "echotune-mcp"
    assert len(doc["description"]) <= 100
    assert re.fullmatch(r"\d+\.\d+\.\d+", doc["version"]), "an exact release, not a range or 'latest'"
    [pkg] = doc["packages"]
    for key in ("registryType", "identifier", "version", "transport"):
        assert key in pkg, key
    assert pkg["registryType"] == "pypi" and pkg["transport"] == {"type": "stdio"}
    for arg in pkg.get("packageArguments", []):
        assert arg["type"] in ("positional", "named")
        assert arg["type"] == "named" and arg.get("name") or arg.get("value") or arg.get("valueHint")
    for env in pkg.get("environmentVariables", []):
        assert env["name"].startswith("ECHOTUNE_")


def test_versions_and_name_match_the_package():
    doc = load()
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    [pkg] = doc["packages"]
    assert doc["version"] == pkg["version"] == project["version"] == __version__
    assert pkg["identifier"] == project["name"]
    assert "echotune-mcp" in project["scripts"]  # what `uvx echotune-mcp serve` runs
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert f"mcp-name: {doc['name']}" in readme


def test_the_described_command_exists():
    [pkg] = load()["packages"]
    args = [a["value"] for a in pkg["packageArguments"]]
    assert args == ["serve"]
    out = subprocess.run([sys.executable, "-m", "echotune_mcp", *args, "--help"], capture_output=True, text=True,
                         timeout=120, check=False, stdin=subprocess.DEVNULL)
    assert out.returncode == 0 and "--transport" in out.stdout, out.stderr
