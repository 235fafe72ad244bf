/**
 * EchoTune test host: a minimal MCP Apps host for the browser tests (tests/browser/).
 *
 * Why it exists: the views must be checked the way a chat client runs them - in a sandboxed iframe with no
 * network, speaking the ext-apps protocol to a host that proxies their requests to a real MCP server. This page
 * is that host, and nothing more. The test (Playwright for Python):
 *   1. exposes `echotuneHostCall(method, paramsJson) -> Promise<resultJson>` (page.expose_function), backed by a
 *      real Python MCP client connected to a real `echotune-mcp serve --transport http`;
 *   2. reads a view's HTML with resources/read (ui://echotune/<view>.html) and calls
 *      `window.echotuneTestHost.mount({...})` with it and the tool input/result the view should show.
 * Every tools/call and resources/read the view makes goes through the AppBridge to `window.echotuneHost.call`,
 * so the test sees (and asserts on) exactly what the view asked the server for.
 *
 * The view gets the CSP a strict host derives from the resource's `_meta.ui.csp` (nothing declared -> no network
 * at all), injected as a <meta> tag in the srcdoc, and an iframe sandbox of `allow-scripts` only (opaque origin).
 */
import type {
  CallToolResult,
  ListResourcesResult,
  ListResourceTemplatesResult,
  ReadResourceResult,
} from "@modelcontextprotocol/client";
import {
  AppBridge,
  PostMessageTransport,
  type McpUiHostContext,
  type McpUiResourceCsp,
} from "@modelcontextprotocol/ext-apps/app-bridge";

type Theme = "light" | "dark";

/** What the test passes to mount(). */
export interface MountOptions {
  /** the view's HTML, as resources/read returned it */
  html: string;
  /** `_meta.ui` of the resource content (csp, permissions, prefersBorder...) */
  resourceMeta?: { csp?: McpUiResourceCsp } & Record<string, unknown>;
  /** the tool whose call the view renders (its definition goes into hostContext.toolInfo) */
  tool?: { name: string } & Record<string, unknown>;
  toolInput?: Record<string, unknown>;
  toolResult?: CallToolResult;
  theme?: Theme;
  /** iframe width in CSS pixels (the view sees it as containerDimensions.width) */
  width?: number;
  /** max wait for the view's ui/notifications/initialized */
  initTimeoutMs?: number;
}

/** One request the view made to the host, and how it ended (kept for the test's assertions and its error text). */
export interface HostEvent {
  kind: "request" | "notification";
  method: string;
  params: unknown;
  ok?: boolean;
  error?: string;
  at: number;
}

interface EchotuneHost {
  call(method: string, paramsJson: string): Promise<string>;
}

declare global {
  interface Window {
    /** exposed by the Playwright test (page.expose_function) */
    echotuneHostCall?: (method: string, paramsJson: string) => Promise<string>;
    echotuneHost: EchotuneHost;
    echotuneTestHost: TestHost;
  }
}

const DEFAULT_INIT_TIMEOUT_MS = 15_000;

/** The test wires `echotuneHostCall`; a page without it (opened by hand) answers every request with an error. */
if (!window.echotuneHost) {
  window.echotuneHost = {
    call(method, paramsJson) {
      const fn = window.echotuneHostCall;
      if (!fn) return Promise.reject(new Error(`no MCP server behind this test host (method ${method})`));
      return fn(method, paramsJson);
    },
  };
}

function sources(domains: string[] | undefined): string {
  return (domains ?? []).filter((d) => /^[a-z][a-z0-9+.-]*:\/\/[^\s;'"]+$/i.test(d)).join(" ");
}

/**
 * The Content-Security-Policy a strict host applies to a view: declared origins only, inline script/style
 * (single-file builds inline everything), data:/blob: for decoded media and images, and no connect-src
 * unless declared - so any network fetch the view tries fails in the test the way it would in a real host.
 */
export function cspFor(csp: McpUiResourceCsp | undefined): string {
  const res = sources(csp?.resourceDomains);
  const connect = sources(csp?.connectDomains) || "'none'";
  const frames = sources(csp?.frameDomains) || "'none'";
  const base = sources(csp?.baseUriDomains) || "'self'";
  return [
    "default-src 'none'",
    `script-src 'unsafe-inline' ${res}`.trim(),
    `style-src 'unsafe-inline' ${res}`.trim(),
    `img-src data: blob: ${res}`.trim(),
    `font-src data: ${res}`.trim(),
    `media-src data: blob: ${res}`.trim(),
    `connect-src ${connect}`,
    `frame-src ${frames}`,
    `base-uri ${base}`,
    "form-action 'none'",
  ].join("; ");
}

function escapeAttr(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/"/g, "&quot;").replace(/</g, "&lt;");
}

/** The view's HTML with the host's CSP as the first thing in <head> (before any script can run). */
export function withCsp(html: string, policy: string): string {
  const tag = `<meta http-equiv="Content-Security-Policy" content="${escapeAttr(policy)}">`;
  const head = /<head[^>]*>/i.exec(html);
  if (head) return html.slice(0, head.index + head[0].length) + tag + html.slice(head.index + head[0].length);
  return tag + html;
}

function hostContext(theme: Theme, width: number, tool?: MountOptions["tool"]): McpUiHostContext {
  return {
    theme,
    displayMode: "inline",
    availableDisplayModes: ["inline"],
    containerDimensions: { width, maxHeight: 2000 },
    locale: "en-GB",
    timeZone: "UTC",
    platform: "web",
    deviceCapabilities: { touch: false, hover: true },
    userAgent: "echotune-test-host",
    ...(tool ? { toolInfo: { tool: tool as never } } : {}),
  };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

class TestHost {
  readonly events: HostEvent[] = [];
  private bridge: AppBridge | null = null;
  private iframe: HTMLIFrameElement | null = null;
  private theme: Theme = "light";
  private width = 760;

  /** Forward one of the view's requests to the test's MCP client; record it either way. */
  private async forward<T>(method: string, params: unknown): Promise<T> {
    const ev: HostEvent = { kind: "request", method, params, at: Date.now() };
    this.events.push(ev);
    try {
      const out = JSON.parse(await window.echotuneHost.call(method, JSON.stringify(params ?? {}))) as T;
      ev.ok = true;
      return out;
    } catch (e) {
      ev.ok = false;
      ev.error = e instanceof Error ? e.message : String(e);
      throw e;
    }
  }

  private record(method: string, params: unknown): void {
    this.events.push({ kind: "notification", method, params, at: Date.now() });
  }

  private setStatus(text: string): void {
    const el = document.getElementById("status");
    if (el) el.textContent = text;
  }

  private applyTheme(theme: Theme): void {
    this.theme = theme;
    document.documentElement.dataset.theme = theme;
  }

  /** Embed a view, complete the ext-apps handshake, then send it the tool input and result. */
  async mount(opts: MountOptions): Promise<{ appInfo: unknown; appCapabilities: unknown }> {
    await this.unmount();
    this.applyTheme(opts.theme ?? "light");
    this.width = opts.width ?? 760;
    this.setStatus(`mounting ${opts.tool?.name ?? "view"}`);

    const iframe = document.createElement("iframe");
    iframe.id = "app";
    iframe.title = `EchoTune view${opts.tool ? ` for ${opts.tool.name}` : ""}`;
    iframe.setAttribute("sandbox", "allow-scripts");
    iframe.style.width = `${this.width}px`;
    this.iframe = iframe;

    const bridge = new AppBridge(
      null,
      { name: "echotune-test-host", version: "1.0.0" },
      { serverTools: {}, serverResources: {}, logging: {}, openLinks: {}, downloadFile: {}, message: { text: {} },
        updateModelContext: { text: {} } },
      { hostContext: hostContext(this.theme, this.width, opts.tool) },
    );
    this.bridge = bridge;
    bridge.oncalltool = (params) => this.forward<CallToolResult>("tools/call", params);
    bridge.onreadresource = (params) => this.forward<ReadResourceResult>("resources/read", params);
    bridge.onlistresources = (params) => this.forward<ListResourcesResult>("resources/list", params);
    bridge.onlistresourcetemplates = (params) =>
      this.forward<ListResourceTemplatesResult>("resources/templates/list", params);
    bridge.onopenlink = async (params) => {
      this.record("ui/open-link", params);
      return {};
    };
    bridge.ondownloadfile = async (params) => {
      this.record("ui/download-file", params);
      return {};
    };
    bridge.onmessage = async (params) => {
      this.record("ui/message", params);
      return {};
    };
    bridge.onupdatemodelcontext = async (params) => {
      this.record("ui/update-model-context", params);
      return {};
    };
    bridge.onrequestdisplaymode = async (params) => {
      this.record("ui/request-display-mode", params);
      return { mode: "inline" };
    };
    bridge.onloggingmessage = (params) => this.record("notifications/message", params);
    bridge.onsizechange = (params) => {
      this.record("ui/notifications/size-changed", params);
      if (typeof params.height === "number" && params.height > 0 && this.iframe) {
        this.iframe.style.height = `${Math.min(Math.ceil(params.height), 2000)}px`;
      }
    };

    const initialized = new Promise<void>((resolve) => {
      bridge.oninitialized = () => {
        this.record("ui/notifications/initialized", {});
        resolve();
      };
    });

    iframe.srcdoc = withCsp(opts.html, cspFor(opts.resourceMeta?.csp));
    document.getElementById("slot")!.replaceChildren(iframe);
    // the transport checks event.source against the iframe's window, which exists once it is in the document
    await bridge.connect(new PostMessageTransport(iframe.contentWindow!, iframe.contentWindow!));
    await withTimeout(initialized, opts.initTimeoutMs ?? DEFAULT_INIT_TIMEOUT_MS, "the view's ui/notifications/initialized");

    if (opts.toolInput !== undefined) await bridge.sendToolInput({ arguments: opts.toolInput });
    if (opts.toolResult !== undefined) await bridge.sendToolResult(opts.toolResult as never);
    this.setStatus(`mounted ${opts.tool?.name ?? "view"} (${this.theme})`);
    return { appInfo: bridge.getAppVersion() ?? null, appCapabilities: bridge.getAppCapabilities() ?? null };
  }

  /** Switch the host theme; the view hears it as ui/notifications/host-context-changed. */
  async setTheme(theme: Theme): Promise<void> {
    this.applyTheme(theme);
    if (this.bridge) await this.bridge.sendHostContextChange({ theme });
  }

  /** Tear the view down the polite way (ui/resource-teardown, bounded), then drop the iframe. */
  async unmount(timeoutMs = 3000): Promise<boolean> {
    const bridge = this.bridge;
    this.bridge = null;
    let polite = false;
    if (bridge) {
      try {
        await withTimeout(bridge.teardownResource({}), timeoutMs, "ui/resource-teardown");
        polite = true;
      } catch {
        polite = false;
      }
      await bridge.close().catch(() => undefined);
    }
    this.iframe?.remove();
    this.iframe = null;
    this.setStatus("no view mounted");
    return polite;
  }

  /** Requests and notifications so far, as plain JSON (page.evaluate returns it to the test). */
  log(): HostEvent[] {
    return JSON.parse(JSON.stringify(this.events)) as HostEvent[];
  }
}

window.echotuneTestHost = new TestHost();
document.documentElement.dataset.hostReady = "1";
