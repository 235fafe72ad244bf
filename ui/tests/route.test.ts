import { describe, expect, it } from "vitest";
import { initialRoute, resolveView } from "../src/logic/route";
import { callConfirmed, outcomeOf, ToolError, type Host } from "../src/host";
import type { JobView } from "../src/types";

const art = (id: string, media = "audio/wav", meta: Record<string, unknown> = {}) => ({
  artifact_id: id, uri: `echotune://artifacts/${id}`, content_uri: `echotune://artifacts/${id}/content`,
  kind: "audio", media_type: media, name: `${id}.wav`, size: 1, parents: [], meta,
});
const job = (status: JobView["status"], result: Record<string, unknown> | null = null): JobView => ({
  job_id: "j", tool: "generate_music", status, progress: 1, message: "", artifacts: [], result,
});

describe("resolveView", () => {
  it("uses the injected name, then the file name, else player", () => {
    expect(resolveView("mixer", "/x/player.html")).toBe("mixer");
    expect(resolveView(undefined, "/ui/provenance.html")).toBe("provenance");
    expect(resolveView("bogus", "/index.html")).toBe("player");
  });
});

describe("initialRoute", () => {
  it("a running job opens on its progress whatever the view", () => {
    expect(initialRoute("player", job("running")).view).toBe("job");
  });
  it("a finished generation: the mixer view gets the stems, the player the mix (A/B with the mix before)", () => {
    const done = job("succeeded", { mix_artifact_id: "m", stems: { drums: "d" }, arrangement_artifact_id: "a", derived_from: "old" });
    expect(initialRoute("mixer", done)).toEqual({ view: "mixer", source: { stems: [["drums", "d"]], piece: "m", durationS: null } });
    const p = initialRoute("player", done);
    expect(p.view === "player" && p.sources.map((s) => s.artifactId)).toEqual(["m", "old"]);
    expect(initialRoute("job", done).view).toBe("job");
  });
  it("an audio artifact plays; a MIDI file does not", () => {
    expect(initialRoute("player", art("x")).view).toBe("player");
    expect(initialRoute("player", art("x", "audio/midi")).view).toBe("message");
  });
  it("playlists and provenance by shape", () => {
    expect(initialRoute("playlist", { provider: "spotify", id: "p", name: "n", tracks: [] }).view).toBe("playlist");
    const u = initialRoute("provenance", { artifact_id: "a", use: "personal", decision: "allowed", reasons: [] });
    expect(u).toMatchObject({ view: "provenance", artifactId: "a", use: "personal" });
    expect(initialRoute("provenance", { artifact_id: "a", depth: 3, nodes: [], edges: [], truncated: false }).view).toBe("provenance");
  });
  it("says plainly when there is nothing to show", () => {
    expect(initialRoute("mixer", { unrelated: 1 })).toMatchObject({ view: "message", initial: "mixer" });
  });
});

describe("host helpers", () => {
  it("reads structuredContent, or the JSON text block when a host drops it", () => {
    expect(outcomeOf({ structuredContent: { a: 1 }, content: [{ type: "text", text: "hi" }] })).toEqual({ structured: { a: 1 }, text: "hi" });
    expect(outcomeOf({ content: [{ type: "text", text: "job j running" }, { type: "text", text: '{"b": 2}' }] }).structured).toEqual({ b: 2 });
  });

  it("callConfirmed sends confirm: true, and again without it only when the server does not take it", async () => {
    const calls: Record<string, unknown>[] = [];
    const host = (refuse: string | null): Host => ({
      async callTool(name, args) {
        calls.push(args);
        if (refuse && "confirm" in args) throw new ToolError(name, refuse);
        return { structured: { ok: true }, text: "" };
      },
      readBlob: async () => { throw new Error("no"); },
      readText: async () => "",
      download: async () => false,
    });
    await callConfirmed(host(null), "remove_tracks", { track_ids: ["a"] });
    expect(calls).toEqual([{ track_ids: ["a"], confirm: true }]);
    calls.length = 0;
    await callConfirmed(
      host("1 validation error for remove_tracks: unknown argument(s) 'confirm'; remove_tracks takes playlist_id, provider"),
      "remove_tracks",
      { track_ids: ["a"], confirm: true },
    );
    expect(calls).toEqual([{ track_ids: ["a"], confirm: true }, { track_ids: ["a"] }]);
    calls.length = 0;
    await expect(callConfirmed(host("provider said no"), "remove_tracks", { track_ids: ["a"] })).rejects.toThrow("provider said no");
    expect(calls).toHaveLength(1);
  });
});
