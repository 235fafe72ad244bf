/** What the host has told the app so far (tool input, tool result, errors), as a tiny external store. */
import { useSyncExternalStore } from "react";

export interface HostState {
  input?: Record<string, unknown>;
  /** the tool result's structured content (undefined until it arrives) */
  result?: unknown;
  /** the tool result's text, shown when the result is not something a view can show */
  text?: string;
  /** the tool call itself failed (isError): its text says why */
  isError?: boolean;
  cancelled?: boolean;
  error?: string;
}

export interface Store {
  get(): HostState;
  set(patch: Partial<HostState>): void;
  subscribe(fn: () => void): () => void;
}

export function createStore(): Store {
  let state: HostState = {};
  const subs = new Set<() => void>();
  return {
    get: () => state,
    set(patch) {
      state = { ...state, ...patch };
      for (const f of subs) f();
    },
    subscribe(fn) {
      subs.add(fn);
      return () => subs.delete(fn);
    },
  };
}

export function useStore(store: Store): HostState {
  return useSyncExternalStore(store.subscribe, store.get, store.get);
}
