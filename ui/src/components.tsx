/** Small shared pieces: error notes, an in-app confirm dialog, formatting, and the player registry. */
import { useEffect, useRef, type ReactNode } from "react";

export interface PlayerHandle {
  currentTime(): number;
  playing(): boolean;
  artifactId(): string;
}

declare global {
  interface Window {
    __ECHOTUNE_VIEW__?: string;
    /** the player the user is listening to (tests read it; nothing in the app depends on it) */
    __echotunePlayer?: PlayerHandle;
  }
}

export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

export function ErrorNote({ error }: { error: string | null }) {
  if (!error) return null;
  return (
    <p className="error" role="alert" data-testid="error">
      {error}
    </p>
  );
}

export function formatTime(s: number): string {
  if (!Number.isFinite(s) || s < 0) s = 0;
  const m = Math.floor(s / 60);
  const sec = s - m * 60;
  return `${m}:${sec.toFixed(1).padStart(4, "0")}`;
}

/**
 * A modal confirmation inside the app (the native <dialog>: focus stays inside, Escape cancels).
 * Used before destructive playlist edits; the tool call then carries confirm: true.
 */
export function ConfirmDialog(props: {
  open: boolean;
  title: string;
  children: ReactNode;
  confirmLabel: string;
  onConfirm: () => void;
  onCancel: () => void;
}) {
  const ref = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = ref.current;
    if (!d) return;
    if (props.open && !d.open) {
      if (typeof d.showModal === "function") d.showModal();
      else d.setAttribute("open", "");
    } else if (!props.open && d.open) {
      d.close();
    }
  }, [props.open]);
  return (
    <dialog
      ref={ref}
      className="confirm"
      aria-labelledby="confirm-title"
      data-testid="confirm-dialog"
      onCancel={(e) => {
        e.preventDefault();
        props.onCancel();
      }}
    >
      <h2 id="confirm-title">{props.title}</h2>
      <div>{props.children}</div>
      <div className="row">
        <button type="button" data-testid="confirm-cancel" onClick={props.onCancel} autoFocus>
          Cancel
        </button>
        <button type="button" className="danger" data-testid="confirm-ok" onClick={props.onConfirm}>
          {props.confirmLabel}
        </button>
      </div>
    </dialog>
  );
}

export function newKey(): string {
  if (typeof crypto !== "undefined" && typeof crypto.randomUUID === "function") return `ui-${crypto.randomUUID()}`;
  return `ui-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}
