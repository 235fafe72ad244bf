/**
 * Which screen to show for a tool result. Every view file holds the whole app; the file name picks the
 * view the host asked for, and the result's shape picks what that view can show (a still-running
 * remix opens on its progress, then plays the mix; a finished generation can open the mixer).
 */
import type { ArtifactView, JobView, ProvenanceGraph, UsageCheck, ViewName } from "../types";
import { VIEW_NAMES } from "../types";
import { derivedFrom, isJobView, isTerminal, mixOf } from "./job";
import { stemsFromArtifact, stemsFromJob, type StemSource } from "./mixer";
import { modelFromResult, type PlaylistModel } from "./playlist";

export interface PlayerSource {
  artifactId: string;
  label: string;
  name?: string;
  contentUri?: string;
  mediaType?: string;
}

export type Route =
  | { view: "waiting"; initial: ViewName }
  | { view: "player"; sources: PlayerSource[]; initial?: number }
  | { view: "mixer"; source: StemSource }
  | { view: "job"; job: JobView }
  | { view: "playlist"; model: PlaylistModel }
  | { view: "provenance"; artifactId: string; graph?: ProvenanceGraph; usage?: UsageCheck; use?: string }
  | { view: "message"; initial: ViewName; title: string; text: string };

/** The view named by the file (window.__ECHOTUNE_VIEW__ injected at build time) or by its path. */
export function resolveView(injected: unknown, pathname: string): ViewName {
  if (typeof injected === "string" && (VIEW_NAMES as readonly string[]).includes(injected)) return injected as ViewName;
  const m = /([a-z]+)\.html$/.exec(pathname);
  if (m && (VIEW_NAMES as readonly string[]).includes(m[1]!)) return m[1] as ViewName;
  return "player";
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

export function isArtifactView(v: unknown): v is ArtifactView {
  return isObj(v) && typeof v["artifact_id"] === "string" && typeof v["content_uri"] === "string";
}

export const isAudioArtifact = (a: Pick<ArtifactView, "media_type">) =>
  a.media_type.startsWith("audio/") && a.media_type !== "audio/midi";

/** Player sources for a finished job: the new mix, and (after regenerate_stem/add_stem) the mix before it. */
export function playerSourcesOfJob(job: JobView): PlayerSource[] {
  const mix = mixOf(job);
  if (!mix) return [];
  const art = job.artifacts.find((a) => a.artifact_id === mix);
  const out: PlayerSource[] = [
    { artifactId: mix, label: "new", name: art?.name, contentUri: art?.content_uri, mediaType: art?.media_type },
  ];
  const before = derivedFrom(job);
  if (before && before !== mix) out.push({ artifactId: before, label: "before" });
  return out;
}

export function initialRoute(view: ViewName, structured: unknown, input: Record<string, unknown> = {}): Route {
  const none = (what: string): Route => ({
    view: "message",
    initial: view,
    title: `Nothing to show in the ${view} view`,
    text: `The tool result has no ${what}.`,
  });
  if (isObj(structured) && ("decision" in structured || ("nodes" in structured && "edges" in structured))) {
    const artifactId = String(structured["artifact_id"] ?? input["artifact"] ?? "");
    if ("decision" in structured) {
      const usage = structured as unknown as UsageCheck;
      return { view: "provenance", artifactId, usage, use: usage.use };
    }
    return { view: "provenance", artifactId, graph: structured as unknown as ProvenanceGraph };
  }
  const playlist = modelFromResult(structured);
  if (playlist) return { view: "playlist", model: playlist };

  if (isJobView(structured)) {
    const job = structured;
    if (view === "job" || !isTerminal(job.status)) return { view: "job", job };
    if (view === "mixer") {
      const source = stemsFromJob(job);
      return source ? { view: "mixer", source } : { view: "job", job };
    }
    const sources = playerSourcesOfJob(job);
    return sources.length ? { view: "player", sources } : { view: "job", job };
  }
  if (isArtifactView(structured)) {
    const art = structured;
    if (view === "mixer") {
      const source = stemsFromArtifact(art);
      if (source) return { view: "mixer", source };
    }
    if (!isAudioArtifact(art)) {
      return { view: "message", initial: view, title: art.name, text: `${art.artifact_id} is ${art.media_type}, not audio: nothing to play.` };
    }
    return {
      view: "player",
      sources: [{ artifactId: art.artifact_id, label: art.kind, name: art.name, contentUri: art.content_uri, mediaType: art.media_type }],
    };
  }
  return none(
    {
      player: "audio artifact",
      mixer: "stems",
      job: "job",
      playlist: "playlist or recommendations",
      provenance: "provenance or usage check",
    }[view],
  );
}
