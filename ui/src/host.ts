/**
 * The app's only way out: tool calls and resource reads proxied by the MCP Apps host (ext-apps `App`).
 * There are no network fetches anywhere in the app; the views get every byte through here.
 */
import type { App } from "@modelcontextprotocol/ext-apps";

export interface ToolOutcome {
  structured: unknown;
  text: string;
}

export interface ResourceBlob {
  bytes: Uint8Array;
  mimeType: string;
  uri: string;
}

export interface Host {
  callTool(name: string, args: Record<string, unknown>, timeoutMs?: number): Promise<ToolOutcome>;
  readBlob(uri: string, timeoutMs?: number): Promise<ResourceBlob>;
  readText(uri: string, timeoutMs?: number): Promise<string>;
  /** ask the host to save a file (ui/download-file), when it supports that; false otherwise */
  download(uri: string, name: string, mimeType: string): Promise<boolean>;
}

/** A tool answered with isError: the message is the tool's own (it names the field and what is allowed). */
export class ToolError extends Error {
  constructor(
    readonly tool: string,
    message: string,
  ) {
    super(message);
    this.name = "ToolError";
  }
}

export function base64ToBytes(b64: string): Uint8Array {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

function textOf(content: unknown): string {
  if (!Array.isArray(content)) return "";
  return content
    .filter((c): c is { type: "text"; text: string } => !!c && c.type === "text" && typeof c.text === "string")
    .map((c) => c.text)
    .join("\n");
}

/** The structured result of a tool result as the host delivered it (ontoolresult or callServerTool). */
export function outcomeOf(result: { structuredContent?: unknown; content?: unknown }): ToolOutcome {
  const text = textOf(result.content);
  let structured = result.structuredContent;
  if (structured === undefined) {
    // A host that drops structuredContent: our tools also put the same JSON in a text block.
    for (const block of Array.isArray(result.content) ? result.content : []) {
      if (block?.type === "text" && typeof block.text === "string" && block.text.trimStart().startsWith("{")) {
        try {
          structured = JSON.parse(block.text);
          break;
        } catch {
          /* not JSON: keep looking */
        }
      }
    }
  }
  return { structured, text };
}

const UNKNOWN_CONFIRM = /unknown argument\(s\)[^;]*'confirm'/;

/**
 * Call a tool with `confirm: true` (a direct user action in the UI); a server that does not take
 * `confirm` on that tool (it refuses unknown arguments) is asked again without it.
 */
export async function callConfirmed(host: Host, name: string, args: Record<string, unknown>): Promise<ToolOutcome> {
  try {
    return await host.callTool(name, { ...args, confirm: true });
  } catch (err) {
    if (err instanceof ToolError && UNKNOWN_CONFIRM.test(err.message)) {
      const { confirm: _drop, ...rest } = args;
      void _drop;
      return host.callTool(name, rest);
    }
    throw err;
  }
}

export function appHost(app: App): Host {
  return {
    async callTool(name, args, timeoutMs = 60_000) {
      const result = await app.callServerTool({ name, arguments: args }, { timeout: timeoutMs });
      const outcome = outcomeOf(result);
      if (result.isError) throw new ToolError(name, outcome.text || `${name} failed`);
      return outcome;
    },
    async readBlob(uri, timeoutMs = 60_000) {
      const res = await app.readServerResource({ uri }, { timeout: timeoutMs });
      for (const c of res.contents) {
        if ("blob" in c && typeof c.blob === "string") {
          return { bytes: base64ToBytes(c.blob), mimeType: c.mimeType ?? "application/octet-stream", uri: c.uri };
        }
      }
      throw new Error(`${uri} returned no binary content`);
    },
    async readText(uri, timeoutMs = 30_000) {
      const res = await app.readServerResource({ uri }, { timeout: timeoutMs });
      for (const c of res.contents) if ("text" in c && typeof c.text === "string") return c.text;
      throw new Error(`${uri} returned no text content`);
    },
    async download(uri, name, mimeType) {
      if (!app.getHostCapabilities()?.downloadFile) return false;
      const res = await app.downloadFile({ contents: [{ type: "resource_link", uri, name, mimeType }] });
      return !res.isError;
    },
  };
}
