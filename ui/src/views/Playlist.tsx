/**
 * Playlist view: a provider playlist (get_playlist, curate_playlist) or a recommendation list with its
 * reasons. Rows reorder by drag and drop or Alt+ArrowUp/Down (reorder_playlist), remove after an
 * in-app confirmation (remove_tracks), and the snapshot every edit returns can be restored
 * (restore_playlist). After each edit the playlist is read again, so what is shown is what the
 * provider holds.
 */
import { useEffect, useRef, useState } from "react";
import { callConfirmed, type Host } from "../host";
import {
  carryReasons,
  dropIndex,
  isMovable,
  keyboardTarget,
  modelFromResult,
  removeCall,
  reorderCall,
  restoreCall,
  type PlaylistModel,
  type Row,
} from "../logic/playlist";
import type { EditResult } from "../types";
import { ConfirmDialog, ErrorNote, errorText, newKey } from "../components";

function duration(ms: number | null | undefined): string {
  if (!ms) return "";
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

export function PlaylistView(props: { host: Host; model: PlaylistModel }) {
  const { host } = props;
  const ref = props.model.ref;
  const editable = !!ref && !props.model.partial;
  const [rows, setRows] = useState<Row[]>(props.model.rows);
  const [snapshot, setSnapshot] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [status, setStatus] = useState<string>(props.model.message ?? "");
  const [error, setError] = useState<string | null>(null);
  const [dragFrom, setDragFrom] = useState<number | null>(null);
  const [dropAt, setDropAt] = useState<{ over: number; lower: boolean } | null>(null);
  const [pendingRemove, setPendingRemove] = useState<number | null>(null);
  const list = useRef<HTMLOListElement>(null);
  // After a keyboard move the row is re-placed in the DOM (and loses focus): focus it at its new index.
  const [focusAt, setFocusAt] = useState<number | null>(null);
  useEffect(() => {
    if (focusAt === null) return;
    list.current?.querySelector<HTMLElement>(`[data-index="${focusAt}"]`)?.focus();
    setFocusAt(null);
  }, [focusAt, rows]);
  // Stable row keys (track id + occurrence), so React moves rows instead of re-creating them.
  const keys = (() => {
    const seen = new Map<string, number>();
    return rows.map((r) => {
      const n = (seen.get(r.id) ?? 0) + 1;
      seen.set(r.id, n);
      return `${r.id}#${n}`;
    });
  })();

  const refresh = async (before: Row[]) => {
    if (!ref) return;
    const r = await host.callTool("get_playlist", { provider: ref.provider, playlist_id: ref.playlistId, max_tracks: 2000 });
    const m = modelFromResult(r.structured);
    if (m) setRows(carryReasons(m.rows, before));
  };

  const edit = async (optimistic: Row[] | null, run: () => Promise<EditResult>) => {
    const before = rows;
    setBusy(true);
    setError(null);
    if (optimistic) setRows(optimistic);
    try {
      const res = await run();
      if (res.snapshot) setSnapshot(res.snapshot);
      setStatus(res.message);
      await refresh(optimistic ?? before);
    } catch (e) {
      setRows(before);
      setError(errorText(e));
    } finally {
      setBusy(false);
    }
  };

  const move = (from: number, to: number) => {
    if (!ref || busy) return;
    const plan = reorderCall(ref, rows, from, to, newKey());
    if (!plan) return;
    setFocusAt(to);
    void edit(plan.rows, async () => (await callConfirmed(host, plan.call.name, { ...plan.call.arguments })).structured as EditResult);
  };

  const remove = (index: number) => {
    if (!ref) return;
    const plan = removeCall(ref, rows, index, newKey());
    setPendingRemove(null);
    if (!plan) return;
    void edit(plan.rows, async () => (await callConfirmed(host, plan.call.name, { ...plan.call.arguments })).structured as EditResult);
  };

  const restore = () => {
    if (!ref || !snapshot) return;
    const call = restoreCall(ref, snapshot, newKey());
    void edit(null, async () => (await host.callTool(call.name, call.arguments)).structured as EditResult);
  };

  const pending = pendingRemove !== null ? rows[pendingRemove] : undefined;
  const occurrences = pending ? rows.filter((r) => r.id === pending.id).length : 0;

  return (
    <main data-testid="view-playlist" className="view" aria-busy={busy}>
      <h1>{props.model.title}</h1>
      {ref ? (
        <p className="muted">
          {ref.provider} playlist {ref.playlistId} · {rows.length} items
          {editable ? " · drag rows, or focus one and press Alt+↑/Alt+↓, to reorder" : ""}
        </p>
      ) : (
        <p className="muted">A recommendation list: not a playlist yet, so it cannot be reordered here.</p>
      )}
      {props.model.partial ? (
        <p className="muted">Only part of this playlist was read; editing is off so no order is sent incomplete.</p>
      ) : null}
      {ref ? (
        <div className="row">
          <span>
            Snapshot: <code data-testid="snapshot-id">{snapshot ?? "none yet"}</code>
          </span>
          <button type="button" data-testid="restore-snapshot" disabled={!snapshot || busy} onClick={restore}>
            Restore snapshot
          </button>
        </div>
      ) : null}
      <ol ref={list} className="playlist" aria-label="Playlist items">
        {rows.map((r, i) => {
          const canMove = editable && isMovable(r);
          const cls = ["item", dragFrom === i ? "dragging" : "", dropAt?.over === i ? (dropAt.lower ? "drop-below" : "drop-above") : ""].join(" ");
          return (
            <li
              key={keys[i]}
              data-testid={`playlist-item-${i}`}
              data-index={i}
              data-track-id={r.id}
              className={cls}
              tabIndex={0}
              draggable={canMove && !busy}
              aria-label={`${i + 1}. ${r.title} by ${r.artists.join(", ") || "unknown"}${r.kind !== "track" && r.kind !== "recommendation" ? ` (${r.kind}, stays in place)` : ""}`}
              onKeyDown={(e) => {
                if (!canMove) return;
                const to = keyboardTarget(i, e.key, e.altKey, rows.length);
                if (to !== null) {
                  e.preventDefault();
                  move(i, to);
                }
              }}
              onDragStart={(e) => {
                setDragFrom(i);
                e.dataTransfer.effectAllowed = "move";
                e.dataTransfer.setData("text/plain", String(i));
              }}
              onDragOver={(e) => {
                if (dragFrom === null) return;
                e.preventDefault();
                e.dataTransfer.dropEffect = "move";
                const box = e.currentTarget.getBoundingClientRect();
                setDropAt({ over: i, lower: e.clientY > box.top + box.height / 2 });
              }}
              onDragLeave={() => setDropAt((d) => (d?.over === i ? null : d))}
              onDrop={(e) => {
                e.preventDefault();
                const from = dragFrom ?? Number(e.dataTransfer.getData("text/plain"));
                const box = e.currentTarget.getBoundingClientRect();
                setDragFrom(null);
                setDropAt(null);
                if (Number.isInteger(from)) move(from, dropIndex(from, i, e.clientY > box.top + box.height / 2));
              }}
              onDragEnd={() => {
                setDragFrom(null);
                setDropAt(null);
              }}
            >
              <span className="handle" aria-hidden="true">
                {canMove ? "⠿" : "·"}
              </span>
              <span className="pos">{i + 1}</span>
              <span className="grow">
                <strong>{r.title}</strong> <span className="muted">{r.artists.join(", ")}</span>
                {r.kind !== "track" && r.kind !== "recommendation" ? <em className="muted"> ({r.kind})</em> : null}
                {r.reasons.length ? (
                  <span className="reasons" data-testid={`reasons-${i}`}>
                    {r.reasons.join(" · ")}
                  </span>
                ) : null}
              </span>
              <span className="muted">{duration(r.durationMs)}</span>
              {canMove ? (
                <button type="button" data-testid={`remove-${i}`} aria-label={`Remove ${r.title}`} disabled={busy} onClick={() => setPendingRemove(i)}>
                  ✕
                </button>
              ) : null}
            </li>
          );
        })}
      </ol>
      {status ? (
        <p role="status" data-testid="playlist-status">
          {status}
        </p>
      ) : null}
      <ErrorNote error={error} />
      <ConfirmDialog
        open={pending !== undefined}
        title="Remove from playlist?"
        confirmLabel="Remove"
        onCancel={() => setPendingRemove(null)}
        onConfirm={() => pendingRemove !== null && remove(pendingRemove)}
      >
        {pending ? (
          <p>
            Remove “{pending.title}” from {ref?.name ?? "the playlist"}?
            {occurrences > 1 ? ` It appears ${occurrences} times; every occurrence is removed.` : ""} The order before is saved as a
            snapshot you can restore.
          </p>
        ) : null}
      </ConfirmDialog>
    </main>
  );
}
