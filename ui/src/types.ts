/**
 * The server's output models as the app reads them (structuredContent of tool results).
 * Mirrors echotune_mcp/views.py (ArtifactView, JobView), providers/base.py (Track, Playlist),
 * toolsets/curation.py (EditResult and friends, CurateResult), recommend/service.py (RecommendResult)
 * and toolsets/licensing.py (ProvenanceGraph, UsageCheck). Optional where the server may omit a field.
 */

export type JobStatus = "queued" | "running" | "succeeded" | "failed" | "cancelled" | "interrupted";

export interface ArtifactView {
  artifact_id: string;
  uri: string;
  content_uri: string;
  waveform_uri?: string | null;
  kind: string;
  media_type: string;
  name: string;
  size: number;
  sha256?: string;
  parents: string[];
  job_id?: string | null;
  created_at?: number;
  license?: string | null;
  meta: Record<string, unknown>;
}

export interface JobView {
  job_id: string;
  tool: string;
  status: JobStatus;
  progress: number;
  message: string;
  error?: string | null;
  resource_uri?: string;
  created_at?: number;
  updated_at?: number;
  finished_at?: number | null;
  artifacts: ArtifactView[];
  result?: Record<string, unknown> | null;
  next_step?: string;
}

export type ItemKind = "track" | "episode" | "local" | "unavailable";

export interface Track {
  provider: string;
  id: string;
  uri?: string | null;
  title: string;
  artists: string[];
  album?: string | null;
  duration_ms?: number | null;
  kind?: ItemKind;
}

export interface Playlist {
  provider: string;
  id: string;
  name: string;
  description?: string | null;
  track_count?: number | null;
  snapshot_id?: string | null;
  tracks?: Track[] | null;
}

export interface EditResult {
  provider: string;
  playlist_id: string;
  changed: number;
  snapshot?: string | null;
  message: string;
}

export interface CuratedTrack {
  position: number;
  track: Track;
  why: string;
  reasons: string[];
}

export interface CurateResult {
  provider: string;
  playlist: Playlist | null;
  tracks: CuratedTrack[];
  message: string;
}

export interface RecommendedItem {
  item_id: string;
  kind: "track" | "artist";
  title: string | null;
  artists: string[];
  spotify_id?: string | null;
  reasons: string[];
  provider_track?: Track | null;
}

export interface RecommendResult {
  items: RecommendedItem[];
  model: Record<string, unknown>;
  message: string;
}

export interface ProvenanceNode {
  artifact_id: string;
  depth: number;
  kind?: string | null;
  name?: string | null;
  missing?: boolean;
  more_parents?: boolean;
  provenance?: Record<string, unknown> | null;
}

export interface ProvenanceGraph {
  artifact_id: string;
  depth: number;
  nodes: ProvenanceNode[];
  edges: { child: string; parent: string }[];
  truncated: boolean;
}

export interface ReasonView {
  rule: string;
  factor: string;
  license: string;
  artifact_id: string;
  effect: string;
  explanation: string;
  condition?: string | null;
  remedy?: string | null;
}

export interface UsageCheck {
  artifact_id: string;
  use: string;
  use_description: string;
  decision: "allowed" | "allowed_with_conditions" | "not_allowed";
  reasons: ReasonView[];
  guidance: string[];
  license: string | null;
  permitted_licenses: string[];
}

export type ViewName = "player" | "mixer" | "job" | "playlist" | "provenance";
export const VIEW_NAMES: readonly ViewName[] = ["player", "mixer", "job", "playlist", "provenance"];
