/**
 * Playlist view logic, kept free of React so it can be unit-tested: which rows can move, what order a
 * drag produces, and the exact tool calls (reorder_playlist, remove_tracks, restore_playlist) for it.
 *
 * The server keeps episodes, local files and unavailable items where they are and only places real
 * tracks (providers/ordering.py `movable` and `arrange`); `applyMove` does the same so the list the
 * user sees after a drag is the list the provider will hold.
 */
import type { CurateResult, Playlist, RecommendResult, Track } from "../types";

export interface Row {
  /** the provider's track id (what reorder_playlist and remove_tracks take) */
  id: string;
  kind: string;
  title: string;
  artists: string[];
  album?: string | null;
  durationMs?: number | null;
  /** recommendation or curation reasons, shown in the row */
  reasons: string[];
}

export interface PlaylistRef {
  provider: string;
  playlistId: string;
  name: string;
}

export interface ToolCall<A = Record<string, unknown>> {
  name: string;
  arguments: A;
}

export function isMovable(row: Pick<Row, "id" | "kind">): boolean {
  return row.kind === "track" && row.id.length > 0;
}

export function rowOfTrack(t: Track, reasons: string[] = []): Row {
  return {
    id: t.id,
    kind: t.kind ?? "track",
    title: t.title,
    artists: t.artists ?? [],
    album: t.album,
    durationMs: t.duration_ms,
    reasons,
  };
}

/**
 * The rows after dragging the row at `from` to position `to`, as the server will arrange them: the
 * moved track takes its new place among the movable tracks, and items that cannot be moved stay at
 * their indices. Null when the drag changes nothing or is not allowed (an immovable row, a bad index).
 */
export function applyMove<R extends Pick<Row, "id" | "kind">>(rows: readonly R[], from: number, to: number): R[] | null {
  const n = rows.length;
  if (!Number.isInteger(from) || !Number.isInteger(to) || from < 0 || from >= n || to < 0 || to >= n) return null;
  if (from === to || !isMovable(rows[from]!)) return null;
  const visual = rows.slice();
  const [moved] = visual.splice(from, 1);
  visual.splice(to, 0, moved!);
  const movableOrder = visual.filter(isMovable);
  const out = rows.slice();
  let k = 0;
  for (let i = 0; i < n; i++) if (isMovable(rows[i]!)) out[i] = movableOrder[k++]!;
  return out.every((r, i) => r === rows[i]) ? null : out;
}

export interface ReorderArguments {
  provider: string;
  playlist_id: string;
  order: string[];
  idempotency_key: string;
  confirm: true;
}

/**
 * The reorder_playlist call for a drag from `from` to `to`: `order` lists exactly the movable tracks'
 * ids in the new order, each as often as it occurs (what the tool requires). The drag is the user's
 * explicit action, so `confirm: true` is passed. Null when nothing would change.
 */
export function reorderCall(
  ref: PlaylistRef,
  rows: readonly Row[],
  from: number,
  to: number,
  idempotencyKey: string,
): { call: ToolCall<ReorderArguments>; rows: Row[] } | null {
  const next = applyMove(rows, from, to);
  if (!next) return null;
  return {
    rows: next,
    call: {
      name: "reorder_playlist",
      arguments: {
        provider: ref.provider,
        playlist_id: ref.playlistId,
        order: next.filter(isMovable).map((r) => r.id),
        idempotency_key: checkKey(idempotencyKey),
        confirm: true,
      },
    },
  };
}

export interface RemoveArguments {
  provider: string;
  playlist_id: string;
  track_ids: string[];
  idempotency_key: string;
  confirm: true;
}

/**
 * The remove_tracks call for the row at `index`. remove_tracks removes every occurrence of a track id,
 * so `occurrences` says how many rows go (the confirm dialog tells the user). Sent after the in-app
 * confirmation, hence `confirm: true`.
 */
export function removeCall(
  ref: PlaylistRef,
  rows: readonly Row[],
  index: number,
  idempotencyKey: string,
): { call: ToolCall<RemoveArguments>; occurrences: number; rows: Row[] } | null {
  const row = rows[index];
  if (!row || !isMovable(row)) return null;
  return {
    occurrences: rows.filter((r) => r.id === row.id).length,
    rows: rows.filter((r) => r.id !== row.id),
    call: {
      name: "remove_tracks",
      arguments: {
        provider: ref.provider,
        playlist_id: ref.playlistId,
        track_ids: [row.id],
        idempotency_key: checkKey(idempotencyKey),
        confirm: true,
      },
    },
  };
}

const SNAPSHOT_RE = /^psnap_[A-Za-z0-9_-]+$/;

/** restore_playlist for a snapshot id a reorder/remove/restore result returned (psnap_..., 8-64 chars). */
export function restoreCall(ref: PlaylistRef, snapshot: string, idempotencyKey: string): ToolCall {
  if (!SNAPSHOT_RE.test(snapshot) || snapshot.length < 8 || snapshot.length > 64) {
    throw new Error(`not a snapshot id: ${JSON.stringify(snapshot)} (expected psnap_...)`);
  }
  return {
    name: "restore_playlist",
    arguments: {
      provider: ref.provider,
      playlist_id: ref.playlistId,
      snapshot,
      idempotency_key: checkKey(idempotencyKey),
    },
  };
}

/** idempotency_key: 8-128 characters (curation.py IdemKey). */
function checkKey(key: string): string {
  if (key.length < 8 || key.length > 128) throw new Error("idempotency_key must be 8-128 characters");
  return key;
}

/** Alt+ArrowUp / Alt+ArrowDown on a focused row: the index to move it to, or null for any other key. */
export function keyboardTarget(index: number, key: string, altKey: boolean, length: number): number | null {
  if (!altKey) return null;
  const to = key === "ArrowUp" ? index - 1 : key === "ArrowDown" ? index + 1 : null;
  if (to === null || to < 0 || to >= length) return null;
  return to;
}

/**
 * When a drag ends over row `over`, where does the dragged row go? Dropping on the upper half of a row
 * puts it before that row, on the lower half after it (indices as in the list before the move).
 */
export function dropIndex(from: number, over: number, lowerHalf: boolean): number {
  let to = lowerHalf ? over + 1 : over;
  if (to > from) to -= 1;
  return to;
}

// -- what the view shows ----------------------------------------------------------------------------------
export interface PlaylistModel {
  /** the provider playlist the rows live in; null for a plain recommendation list (read-only) */
  ref: PlaylistRef | null;
  title: string;
  rows: Row[];
  message?: string;
  /** the playlist has more items than were read: editing would send an incomplete order, so it is off */
  partial?: boolean;
}

function isObj(v: unknown): v is Record<string, unknown> {
  return !!v && typeof v === "object" && !Array.isArray(v);
}

/**
 * Rows from a get_playlist, curate_playlist or recommend_tracks result. A recommendation list has no
 * playlist behind it, so it is shown with its reasons but cannot be reordered or edited.
 */
export function modelFromResult(data: unknown): PlaylistModel | null {
  if (!isObj(data)) return null;
  if (Array.isArray(data["items"]) && isObj(data["model"])) {
    const r = data as unknown as RecommendResult;
    return {
      ref: null,
      title: "Recommendations",
      message: r.message,
      rows: r.items.map((it) => ({
        id: it.provider_track?.id ?? it.spotify_id ?? it.item_id,
        kind: "recommendation",
        title: it.title ?? it.artists.join(", "),
        artists: it.kind === "artist" ? [] : it.artists,
        reasons: it.reasons ?? [],
      })),
    };
  }
  if (Array.isArray(data["tracks"]) && typeof data["provider"] === "string" && "playlist" in data) {
    const c = data as unknown as CurateResult;
    const rows = c.tracks.map((t) => rowOfTrack(t.track, [t.why, ...(t.reasons ?? [])].filter(Boolean)));
    return {
      ref: c.playlist ? { provider: c.playlist.provider, playlistId: c.playlist.id, name: c.playlist.name } : null,
      title: c.playlist?.name ?? "Proposed playlist",
      rows,
      message: c.message,
    };
  }
  if (typeof data["id"] === "string" && typeof data["provider"] === "string" && typeof data["name"] === "string") {
    const p = data as unknown as Playlist;
    return {
      ref: { provider: p.provider, playlistId: p.id, name: p.name },
      title: p.name,
      rows: (p.tracks ?? []).map((t) => rowOfTrack(t)),
      partial: typeof p.track_count === "number" && p.track_count > (p.tracks ?? []).length,
    };
  }
  return null;
}

/** Keep reasons shown after a refresh from get_playlist (which carries none): match rows by id. */
export function carryReasons(fresh: readonly Row[], before: readonly Row[]): Row[] {
  const byId = new Map(before.filter((r) => r.reasons.length).map((r) => [r.id, r.reasons]));
  return fresh.map((r) => (r.reasons.length || !byId.has(r.id) ? r : { ...r, reasons: byId.get(r.id)! }));
}
