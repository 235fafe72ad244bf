"""The browser test harness itself, independent of the EchoTune views: a probe app speaking the MCP Apps protocol
by hand (plain postMessage JSON-RPC, no SDK) is embedded by the test host page, and its requests reach the real
server through the host bridge and the Python MCP client. Also: the strict CSP stops a view's network fetch, and
the host answers teardown. If this fails, the view tests below it cannot be trusted either way."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import missing

from .conftest import HOST_SRC, UI, _node

PROBE = """<!doctype html><html><head><meta charset="utf-8"><title>probe</title></head>
<body><div data-testid="view-probe"><pre id="out">starting</pre></div>
<script>
const out = document.getElementById("out");
const pending = new Map();
const seen = [];
let next = 0;
function request(method, params) {
  const id = ++next;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    window.parent.postMessage({ jsonrpc: "2.0", id, method, params }, "*");
  });
}
function notify(method, params) { window.parent.postMessage({ jsonrpc: "2.0", method, params }, "*"); }
window.addEventListener("message", (e) => {
  const m = e.data;
  if (!m || m.jsonrpc !== "2.0") return;
  if (m.id !== undefined && pending.has(m.id) && !m.method) {
    const p = pending.get(m.id); pending.delete(m.id);
    m.error ? p.reject(m.error) : p.resolve(m.result);
  } else if (m.method) {
    seen.push(m.method);
    if (m.id !== undefined) window.parent.postMessage({ jsonrpc: "2.0", id: m.id, result: {} }, "*");
  }
});
(async () => {
  const report = {};
  const init = await request("ui/initialize", { appInfo: { name: "probe", version: "1" }, appCapabilities: {},
                                                protocolVersion: "2026-01-26" });
  report.theme = init.hostContext && init.hostContext.theme;
  report.serverTools = !!(init.hostCapabilities && init.hostCapabilities.serverTools);
  notify("ui/notifications/initialized", {});
  const status = await request("tools/call", { name: "providers_status", arguments: {} });
  report.providers = (status.structuredContent.providers || []).map((p) => p.provider).sort();
  const licences = await request("resources/read", { uri: "echotune://licenses" });
  report.licencesMime = licences.contents[0].mimeType || null;
  try { const r = await request("tools/call", { name: "no_such_tool", arguments: {} });
        report.unknown = r.isError ? "tool-error" : "ok"; }
  catch (e) { report.unknown = "rpc-error"; }
  try { await fetch("https://example.com/probe"); report.fetch = "reached"; }
  catch (e) { report.fetch = "blocked"; }
  await new Promise((r) => setTimeout(r, 300));
  report.notifications = seen;
  out.textContent = JSON.stringify(report);
  out.dataset.done = "1";
})().catch((e) => { out.textContent = "failed: " + (e && (e.message || JSON.stringify(e))); out.dataset.done = "1"; });
</script></body></html>"""


async def test_probe_app_reaches_the_server_through_the_host(open_host):
    async with open_host() as host:
        frame = await host.mount(PROBE, tool="providers_status", arguments={},
                                 result={"content": [{"type": "text", "text": "hello"}]}, theme="dark")
        out = frame.locator("#out[data-done='1']")
        await out.wait_for(timeout=20_000)
        report = json.loads(await out.text_content())
        assert report["theme"] == "dark" and report["serverTools"] is True
        assert "spotify" in report["providers"]                        # a real answer of the real server
        assert report["unknown"] in ("tool-error", "rpc-error")           # errors reach the view as errors
        assert report["fetch"] == "blocked"                             # the host's CSP: no connect-src
        assert "ui/notifications/tool-input" in report["notifications"]
        assert "ui/notifications/tool-result" in report["notifications"]
        calls = [(c.method, c.tool or c.params.get("uri")) for c in host.calls]
        assert ("tools/call", "providers_status") in calls and ("resources/read", "echotune://licenses") in calls
        status = host.tool_calls("providers_status")[0]
        assert status.error is None and status.structured["providers"]
        await host.screenshot("probe")
        assert (host.out_dir / "probe.png").stat().st_size > 1000
        log = await host.host_log()
        assert any(e["method"] == "ui/notifications/initialized" for e in log)
        assert await host.unmount() is True                              # ui/resource-teardown answered


def test_host_page_typechecks():
    """The host page's TypeScript against ext-apps' own types (vite builds it without checking types)."""
    node = _node()
    tsc = UI / "node_modules" / "typescript" / "bin" / "tsc"
    if not tsc.is_file():
        missing("ui/node_modules is not installed (TypeScript checks the test host page)", "make ui")
    env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    done = subprocess.run([str(node), str(tsc), "--noEmit", "-p", str(HOST_SRC / "tsconfig.json")], cwd=UI, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
