"""Shared fixtures: an isolated server per test (own data dir), in-memory MCP clients, paths to shared data."""

from __future__ import annotations

import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import pytest

from echotune_mcp.config import Settings

REPO = Path(__file__).resolve().parent.parent
SHARED = (REPO.parent / "shared").resolve()


def in_ci() -> bool:
    """``CI`` set (any non-empty value): a missing dependency or data set is a broken pipeline, not a skip."""
    return bool(os.environ.get("CI"))


def missing(what: str, command: str) -> NoReturn:
    """Skip on a developer machine, fail under CI; either way name the ``command`` that provides ``what``."""
    if in_ci():
        pytest.fail(f"{what} (CI is set, so this is an error, not a skip; `{command}` provides it)", pytrace=False)
    pytest.skip(f"{what}; run `{command}` to get it")


def shared_path(*parts: str) -> Path:
    """A path under ../shared; absent (a user's fresh clone) it skips, or fails under CI."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        missing(f"../shared/{'/'.join(parts)} is absent (the shared data and specs ship beside the project "
                "checkout)", "make test")
    return path


_IMPORT_SKIP = "could not import "
_IMPORT_FIX = "`make test` installs the Python extras (dev, ml) and FluidSynth"


def _unhide(report) -> None:
    """``pytest.importorskip`` skips: name the command that installs the module, and fail instead under CI."""
    if not report.skipped or not isinstance(report.longrepr, tuple) or len(report.longrepr) != 3:
        return
    path, line, reason = report.longrepr
    reason = str(reason).removeprefix("Skipped: ")
    if not reason.startswith(_IMPORT_SKIP):
        return
    if in_ci():
        report.outcome = "failed"
        report.longrepr = f"{path}:{line}: {reason} (CI is set, so a missing module is an error; {_IMPORT_FIX})"
    else:
        report.longrepr = (path, line, f"{reason}; {_IMPORT_FIX}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _unhide(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _unhide(outcome.get_result())


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


@contextmanager
def secantus_server() -> Iterator[str]:
    """A real MongoDB wire-protocol server (secantusdb, in memory) on a free loopback port, stopped after."""
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


@pytest.fixture(scope="session")
def mongo_uri():
    """One secantusdb for the session; each test uses its own database on it."""
    with secantus_server() as uri:
        yield uri


@contextmanager
def serve_until_healthy(cmd: list[str], env: dict[str, str], cwd: Path, log: Path, port: int,
                        start_s: float = 60.0) -> Iterator[subprocess.Popen]:
    """Run a server command with its output in ``log``, wait (bounded) until its /healthz answers, and stop it
    after: terminate, then kill if it does not exit within 10 s."""

    def tail() -> str:
        try:
            return log.read_text(errors="replace")[-4000:]
        except OSError:
            return "(no log)"

    with log.open("ab") as log_fh:  # appended: a server restarted on the same log keeps the first one's lines
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log_fh,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + start_s
        while True:
            if proc.poll() is not None:
                pytest.fail(f"`{' '.join(cmd)}` exited with {proc.returncode} before answering /healthz:\n{tail()}",
                            pytrace=False)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"`{' '.join(cmd)}` did not answer /healthz within {start_s:.0f} s:\n{tail()}",
                            pytrace=False)
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def stop_process(proc) -> None:
    """Terminate a helper server a fixture started; kill it if it ignores SIGTERM."""
    import subprocess

    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
