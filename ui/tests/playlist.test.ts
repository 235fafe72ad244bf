import { describe, expect, it } from "vitest";
import {
  applyMove,
  carryReasons,
  dropIndex,
  isMovable,
  keyboardTarget,
  modelFromResult,
  removeCall,
  reorderCall,
  restoreCall,
  type PlaylistRef,
  type Row,
} from "../src/logic/playlist";

const ref: PlaylistRef = { provider: "spotify", playlistId: "pl1", name: "Mix" };
const row = (id: string, kind = "track"): Row => ({ id, kind, title: id.toUpperCase(), artists: ["X"], reasons: [] });
const ids = (rows: Row[] | null) => rows?.map((r) => r.id);
const KEY = "ui-key-0001";

describe("applyMove", () => {
  const rows = [row("a"), row("b"), row("c"), row("d")];
  it("moves down and up", () => {
    expect(ids(applyMove(rows, 0, 2))).toEqual(["b", "c", "a", "d"]);
    expect(ids(applyMove(rows, 3, 0))).toEqual(["d", "a", "b", "c"]);
  });
  it("is null for a no-op or a bad index", () => {
    expect(applyMove(rows, 1, 1)).toBeNull();
    expect(applyMove(rows, -1, 1)).toBeNull();
    expect(applyMove(rows, 0, 4)).toBeNull();
    expect(applyMove(rows, 0.5, 1)).toBeNull();
  });
  it("keeps episodes and local files where they are, as the server does", () => {
    const mixed = [row("a"), row("ep", "episode"), row("b"), row("c")];
    // drag c to the top: the episode stays at index 1
    expect(ids(applyMove(mixed, 3, 0))).toEqual(["c", "ep", "a", "b"]);
    // an immovable row cannot be dragged
    expect(applyMove(mixed, 1, 3)).toBeNull();
    // dropping next to the episode only changes the tracks' relative order
    expect(applyMove(mixed, 0, 1)).toBeNull(); // a stays first among the tracks: nothing changes
    expect(ids(applyMove(mixed, 0, 2))).toEqual(["b", "ep", "a", "c"]);
  });
  it("an item without an id is not movable", () => {
    expect(isMovable({ id: "", kind: "track" })).toBe(false);
  });
});

describe("reorderCall", () => {
  it("lists exactly the movable track ids in the new order, with confirm and a key", () => {
    const rows = [row("a"), row("loc", "local"), row("b"), row("c")];
    const plan = reorderCall(ref, rows, 3, 0, KEY)!;
    expect(plan.call).toEqual({
      name: "reorder_playlist",
      arguments: { provider: "spotify", playlist_id: "pl1", order: ["c", "a", "b"], idempotency_key: KEY, confirm: true },
    });
    expect(ids(plan.rows)).toEqual(["c", "loc", "a", "b"]);
  });
  it("keeps duplicates as often as they occur", () => {
    const rows = [row("a"), row("b"), row("a")];
    expect(reorderCall(ref, rows, 2, 1, KEY)!.call.arguments.order).toEqual(["a", "a", "b"]);
  });
  it("is null when nothing changes, and refuses a short key", () => {
    expect(reorderCall(ref, [row("a"), row("b")], 0, 0, KEY)).toBeNull();
    expect(() => reorderCall(ref, [row("a"), row("b")], 0, 1, "short")).toThrow(/8-128/);
  });
});

describe("removeCall", () => {
  it("removes every occurrence of the track and says how many", () => {
    const rows = [row("a"), row("b"), row("a")];
    const plan = removeCall(ref, rows, 2, KEY)!;
    expect(plan.call).toEqual({
      name: "remove_tracks",
      arguments: { provider: "spotify", playlist_id: "pl1", track_ids: ["a"], idempotency_key: KEY, confirm: true },
    });
    expect(plan.occurrences).toBe(2);
    expect(ids(plan.rows)).toEqual(["b"]);
  });
  it("is null for an episode or a missing row", () => {
    expect(removeCall(ref, [row("e", "episode")], 0, KEY)).toBeNull();
    expect(removeCall(ref, [row("a")], 3, KEY)).toBeNull();
  });
});

describe("restoreCall", () => {
  it("takes a psnap_ id", () => {
    expect(restoreCall(ref, "psnap_abc123", KEY)).toEqual({
      name: "restore_playlist",
      arguments: { provider: "spotify", playlist_id: "pl1", snapshot: "psnap_abc123", idempotency_key: KEY },
    });
    expect(() => restoreCall(ref, "spotify-snapshot", KEY)).toThrow(/psnap_/);
  });
});

describe("keyboard and drop position", () => {
  it("Alt+ArrowUp/Down move by one inside the list", () => {
    expect(keyboardTarget(2, "ArrowUp", true, 5)).toBe(1);
    expect(keyboardTarget(2, "ArrowDown", true, 5)).toBe(3);
    expect(keyboardTarget(0, "ArrowUp", true, 5)).toBeNull();
    expect(keyboardTarget(4, "ArrowDown", true, 5)).toBeNull();
    expect(keyboardTarget(2, "ArrowDown", false, 5)).toBeNull();
    expect(keyboardTarget(2, "Enter", true, 5)).toBeNull();
  });
  it("dropping on the upper/lower half puts the row before/after the target", () => {
    // list a b c d; drag a (0) onto c (2)
    expect(dropIndex(0, 2, false)).toBe(1); // before c -> b a c d
    expect(dropIndex(0, 2, true)).toBe(2); // after c -> b c a d
    expect(dropIndex(3, 0, false)).toBe(0);
    expect(dropIndex(3, 0, true)).toBe(1);
    const rows = [row("a"), row("b"), row("c"), row("d")];
    expect(ids(applyMove(rows, 0, dropIndex(0, 2, true)))).toEqual(["b", "c", "a", "d"]);
    expect(ids(applyMove(rows, 0, dropIndex(0, 2, false)))).toEqual(["b", "a", "c", "d"]);
  });
});

describe("modelFromResult", () => {
  const track = (id: string, kind = "track") => ({ provider: "spotify", id, title: `T${id}`, artists: ["A"], kind });
  it("a get_playlist result is editable unless only part of it was read", () => {
    const p = { provider: "spotify", id: "pl1", name: "Mix", track_count: 2, tracks: [track("1"), track("2", "episode")] };
    const m = modelFromResult(p)!;
    expect(m.ref).toEqual({ provider: "spotify", playlistId: "pl1", name: "Mix" });
    expect(m.rows.map((r) => r.kind)).toEqual(["track", "episode"]);
    expect(m.partial).toBe(false);
    expect(modelFromResult({ ...p, track_count: 500 })!.partial).toBe(true);
  });
  it("a recommendation list is read-only and shows reasons", () => {
    const m = modelFromResult({
      items: [{ item_id: "spotify:track:x", kind: "track", title: "Song", artists: ["B"], spotify_id: "x", reasons: ["you played B 40 times"] }],
      model: { corpus: "c" },
      message: "1 track",
    })!;
    expect(m.ref).toBeNull();
    expect(m.rows[0]).toMatchObject({ id: "x", title: "Song", reasons: ["you played B 40 times"] });
  });
  it("a curate_playlist result: the created playlist, rows with why + reasons", () => {
    const m = modelFromResult({
      provider: "spotify",
      playlist: { provider: "spotify", id: "new", name: "Run" },
      tracks: [{ position: 1, track: track("1"), why: "opens low", reasons: ["similar to seed"] }],
      message: "ok",
    })!;
    expect(m.ref?.playlistId).toBe("new");
    expect(m.rows[0]!.reasons).toEqual(["opens low", "similar to seed"]);
    expect(modelFromResult({ provider: "spotify", playlist: null, tracks: [], message: "" })!.ref).toBeNull();
  });
  it("anything else is null", () => {
    expect(modelFromResult({ job_id: "j" })).toBeNull();
    expect(modelFromResult(null)).toBeNull();
  });
  it("reasons survive a refresh from get_playlist", () => {
    const before = [{ ...row("a"), reasons: ["r"] }, row("b")];
    expect(carryReasons([row("b"), row("a")], before).map((r) => r.reasons)).toEqual([[], ["r"]]);
  });
});
