"""Shared fixtures: an isolated server per test (own data dir), in-memory MCP clients, paths to shared data."""

from __future__ import annotations

from pathlib import Path

import pytest

from echotune_mcp.config import Settings

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO.parent / "shared").resolve()


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or skip the test with the reason when it is absent (a user's fresh clone)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"../shared/{'/'.join(parts)} is absent (it ships beside the project checkout in CI only)")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    roots = (tmp_path / "allowed",)
    roots[0].mkdir()
    return Settings(data_dir=tmp_path / "data", allowed_roots=roots, max_audio_seconds=120.0,
                    max_generation_seconds=120.0)


@pytest.fixture
def make_client(settings: Settings):
    """Factory: ``async with make_client(**overrides) as (client, app)`` over the in-memory transport."""
    from contextlib import asynccontextmanager
    from dataclasses import replace

    from mcp import Client

    from echotune_mcp.app import App
    from echotune_mcp.server import build_server

    @asynccontextmanager
    async def factory(**overrides):
        app = App(replace(settings, **overrides) if overrides else settings)
        server = build_server(app)
        async with app, Client(server, raise_exceptions=True) as client:
            yield client, app

    return factory


@pytest.fixture(autouse=True)
def _no_network_env(monkeypatch):
    # Tests never talk to real services: make accidental use of real endpoints fail fast.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    monkeypatch.delenv("ECHOTUNE_MONGODB_URI", raising=False)
    yield




def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    import socket
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")


@pytest.fixture(scope="session")
def mongo_uri():
    """A real MongoDB wire-protocol server (secantusdb, in memory) on a free loopback port."""
    import shutil
    import subprocess
    import sys

    exe = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
    if not Path(exe).exists():
        pytest.fail("secantusd-py is not installed; run `make test` (it installs the dev extra)")
    port = free_port()
    proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(port), "--storage-path", ":memory:"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        stop_process(proc)


def stop_process(proc) -> None:
    """Terminate a helper server a fixture started; kill it if it ignores SIGTERM."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
