import { describe, expect, it } from "vitest";
import { decisionText, layoutLineage, nodeLabel } from "../src/logic/lineage";

const graph = {
  nodes: [
    { artifact_id: "mix2", depth: 0, kind: "audio" },
    { artifact_id: "stemB", depth: 1, kind: "stem" },
    { artifact_id: "stemA", depth: 1, kind: "stem" },
    { artifact_id: "arr", depth: 2, kind: "arrangement" },
  ],
  edges: [
    { child: "mix2", parent: "stemA" },
    { child: "mix2", parent: "stemB" },
    { child: "stemA", parent: "arr" },
    { child: "stemB", parent: "arr" },
  ],
};

describe("layoutLineage", () => {
  const opts = { nodeWidth: 100, nodeHeight: 40, columnGap: 20, rowGap: 10, margin: 5 };
  it("puts each generation in its own column, left to right", () => {
    const l = layoutLineage(graph, opts);
    const col = Object.fromEntries(l.nodes.map((n) => [n.id, n.column]));
    expect(col).toEqual({ mix2: 0, stemA: 1, stemB: 1, arr: 2 });
    const x = Object.fromEntries(l.nodes.map((n) => [n.id, n.x]));
    expect(x).toEqual({ mix2: 5, stemA: 125, stemB: 125, arr: 245 });
    expect(l.width).toBe(5 * 2 + 3 * 100 + 2 * 20);
    expect(l.height).toBe(5 * 2 + 2 * 40 + 10);
  });
  it("never overlaps two nodes", () => {
    const l = layoutLineage(graph, opts);
    const seen = new Set(l.nodes.map((n) => `${n.x},${n.y}`));
    expect(seen.size).toBe(l.nodes.length);
  });
  it("draws each edge from the child's right side to the parent's left side", () => {
    const l = layoutLineage(graph, opts);
    const e = l.edges.find((x) => x.child === "stemA" && x.parent === "arr")!;
    const a = l.nodes.find((n) => n.id === "stemA")!;
    const p = l.nodes.find((n) => n.id === "arr")!;
    expect([e.x1, e.y1, e.x2, e.y2]).toEqual([a.x + 100, a.y + 20, p.x, p.y + 20]);
    expect(l.edges).toHaveLength(4);
  });
  it("adds a node for a parent only an edge names, marked missing", () => {
    const l = layoutLineage({ nodes: [{ artifact_id: "x", depth: 0 }], edges: [{ child: "x", parent: "gone" }] });
    const gone = l.nodes.find((n) => n.id === "gone")!;
    expect(gone.node.missing).toBe(true);
    expect(gone.column).toBe(1);
  });
  it("an empty graph still has a size", () => {
    const l = layoutLineage({ nodes: [], edges: [] });
    expect(l.nodes).toEqual([]);
    expect(l.width).toBeGreaterThan(0);
  });
  it("orders a column by its children's rows so edges cross less", () => {
    const g = {
      nodes: [
        { artifact_id: "c1", depth: 0 },
        { artifact_id: "c2", depth: 0 },
        { artifact_id: "p_of_c2", depth: 1 },
        { artifact_id: "p_of_c1", depth: 1 },
      ],
      edges: [
        { child: "c1", parent: "p_of_c1" },
        { child: "c2", parent: "p_of_c2" },
      ],
    };
    const rows = Object.fromEntries(layoutLineage(g).nodes.map((n) => [n.id, n.row]));
    expect(rows["p_of_c1"]).toBe(rows["c1"]);
    expect(rows["p_of_c2"]).toBe(rows["c2"]);
  });
});

describe("words", () => {
  it("says allowed / not allowed plainly", () => {
    expect(decisionText("allowed")).toBe("allowed");
    expect(decisionText("not_allowed")).toBe("not allowed");
    expect(decisionText("allowed_with_conditions")).toBe("allowed with conditions");
  });
  it("labels a node with its kind, tool and a short name", () => {
    expect(nodeLabel({ artifact_id: "a1", depth: 0, kind: "stem", name: "stem-drums.wav", provenance: { tool: "remix" } })).toEqual({
      title: "stem · remix",
      subtitle: "stem-drums.wav",
    });
    expect(nodeLabel({ artifact_id: "a2", depth: 1, missing: true }).title).toBe("deleted");
    expect(nodeLabel({ artifact_id: "a3", depth: 0, name: "x".repeat(40) }).subtitle).toHaveLength(22);
    // a long kind + tool is cut too, so it stays inside the node's box
    expect(nodeLabel({ artifact_id: "a4", depth: 0, kind: "arrangement", provenance: { tool: "generate_music" } }).title).toBe("arrangement · generat…");
  });
});
