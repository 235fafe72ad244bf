/**
 * Layout of a provenance graph (get_provenance: nodes with a depth, edges child -> parent) as columns:
 * the artifact asked about on the left, its parents in the next column, and so on. Pure, so it is
 * tested without a browser; the view only draws what this returns.
 */
import type { ProvenanceGraph, ProvenanceNode } from "../types";

export interface LaidNode {
  id: string;
  node: ProvenanceNode;
  x: number;
  y: number;
  column: number;
  row: number;
}

export interface LaidEdge {
  child: string;
  parent: string;
  x1: number;
  y1: number;
  x2: number;
  y2: number;
}

export interface LineageLayout {
  width: number;
  height: number;
  nodeWidth: number;
  nodeHeight: number;
  nodes: LaidNode[];
  edges: LaidEdge[];
}

export interface LayoutOptions {
  nodeWidth?: number;
  nodeHeight?: number;
  columnGap?: number;
  rowGap?: number;
  margin?: number;
}

/**
 * Columns by depth (an edge's parent with no node of its own gets one, marked missing, one column
 * right of its child). Inside a column nodes are ordered by the mean row of their children so edges
 * cross less, then by kind and id for a stable picture. Edges run from the child's right side to the
 * parent's left side.
 */
export function layoutLineage(graph: Pick<ProvenanceGraph, "nodes" | "edges">, opts: LayoutOptions = {}): LineageLayout {
  const nodeWidth = opts.nodeWidth ?? 170;
  const nodeHeight = opts.nodeHeight ?? 44;
  const columnGap = opts.columnGap ?? 48;
  const rowGap = opts.rowGap ?? 14;
  const margin = opts.margin ?? 8;

  const byId = new Map<string, ProvenanceNode>();
  for (const n of graph.nodes) if (!byId.has(n.artifact_id)) byId.set(n.artifact_id, n);
  const edges = graph.edges.filter((e) => e.child !== e.parent);
  // Parents named only by an edge (beyond what the server expanded): show them, marked missing.
  let changed = true;
  while (changed) {
    changed = false;
    for (const e of edges) {
      const child = byId.get(e.child);
      if (!byId.has(e.parent)) {
        byId.set(e.parent, { artifact_id: e.parent, depth: (child?.depth ?? 0) + 1, missing: true });
        changed = true;
      }
      if (!child) {
        byId.set(e.child, { artifact_id: e.child, depth: Math.max(0, (byId.get(e.parent)!.depth ?? 1) - 1), missing: true });
        changed = true;
      }
    }
  }

  const columns = new Map<number, ProvenanceNode[]>();
  for (const n of byId.values()) {
    const d = Math.max(0, Math.floor(n.depth ?? 0));
    if (!columns.has(d)) columns.set(d, []);
    columns.get(d)!.push(n);
  }
  const depths = [...columns.keys()].sort((a, b) => a - b);
  const rowOf = new Map<string, number>();
  const childrenOf = new Map<string, string[]>();
  for (const e of edges) {
    if (!childrenOf.has(e.parent)) childrenOf.set(e.parent, []);
    childrenOf.get(e.parent)!.push(e.child);
  }
  const laid: LaidNode[] = [];
  depths.forEach((depth, column) => {
    const col = columns.get(depth)!;
    const score = (n: ProvenanceNode) => {
      const rows = (childrenOf.get(n.artifact_id) ?? []).map((c) => rowOf.get(c)).filter((r): r is number => r !== undefined);
      return rows.length ? rows.reduce((a, b) => a + b, 0) / rows.length : Number.POSITIVE_INFINITY;
    };
    col.sort((a, b) => score(a) - score(b) || (a.kind ?? "").localeCompare(b.kind ?? "") || a.artifact_id.localeCompare(b.artifact_id));
    col.forEach((n, row) => {
      rowOf.set(n.artifact_id, row);
      laid.push({
        id: n.artifact_id,
        node: n,
        column,
        row,
        x: margin + column * (nodeWidth + columnGap),
        y: margin + row * (nodeHeight + rowGap),
      });
    });
  });
  const pos = new Map(laid.map((n) => [n.id, n]));
  const laidEdges: LaidEdge[] = edges.map((e) => {
    const c = pos.get(e.child)!;
    const p = pos.get(e.parent)!;
    return {
      child: e.child,
      parent: e.parent,
      x1: c.x + nodeWidth,
      y1: c.y + nodeHeight / 2,
      x2: p.x,
      y2: p.y + nodeHeight / 2,
    };
  });
  const maxRows = Math.max(1, ...[...columns.values()].map((c) => c.length));
  return {
    width: margin * 2 + Math.max(1, depths.length) * nodeWidth + Math.max(0, depths.length - 1) * columnGap,
    height: margin * 2 + maxRows * nodeHeight + (maxRows - 1) * rowGap,
    nodeWidth,
    nodeHeight,
    nodes: laid,
    edges: laidEdges,
  };
}

/** "allowed", "allowed with conditions" or "not allowed": the words the card shows at a glance. */
export function decisionText(decision: string): string {
  switch (decision) {
    case "allowed":
      return "allowed";
    case "allowed_with_conditions":
      return "allowed with conditions";
    case "not_allowed":
      return "not allowed";
    default:
      return decision.replace(/_/g, " ");
  }
}

/** A node's one-line label: its kind and a short name. */
export function nodeLabel(n: ProvenanceNode): { title: string; subtitle: string } {
  const tool = n.provenance && typeof n.provenance["tool"] === "string" ? (n.provenance["tool"] as string) : null;
  const kind = n.missing ? "deleted" : (n.kind ?? "artifact");
  const name = n.name ?? n.artifact_id;
  return { title: short(tool ? `${kind} · ${tool}` : kind, 22), subtitle: short(name, 22) };
}

/** At most `max` characters, the cut marked with an ellipsis (SVG text does not wrap or clip by itself). */
export function short(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}
