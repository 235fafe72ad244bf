/**
 * Provenance card: the lineage graph of an artifact (get_provenance) drawn as SVG, and the licence
 * decision for an intended use (check_usage) in words at a glance, with the reasons and what would
 * change them. Whichever of the two the host delivered, the other is fetched through the host.
 */
import { useEffect, useMemo, useState } from "react";
import type { Host } from "../host";
import { decisionText, layoutLineage, nodeLabel } from "../logic/lineage";
import type { ProvenanceGraph, ProvenanceNode, UsageCheck } from "../types";
import { ErrorNote, errorText } from "../components";

const FALLBACK_USES: Record<string, string> = {
  personal: "private listening, practice and experimentation",
  streaming_upload: "uploading to streaming or video platforms",
  commercial_release: "selling or distributing the track for money",
  sync_advertising: "synchronising with moving images for advertising",
  broadcast: "radio, TV or podcast broadcast",
  sample_in_other_work: "using the track as material inside another work",
};

function summary(n: ProvenanceNode): [string, string][] {
  const p = n.provenance ?? {};
  const out: [string, string][] = [["id", n.artifact_id]];
  for (const k of ["tool", "backend", "prompt", "seed", "license", "created_at"]) {
    const v = p[k];
    if (v === undefined || v === null || v === "") continue;
    if (k === "created_at" && typeof v === "number") out.push([k, new Date(v * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"]);
    else out.push([k, typeof v === "object" ? JSON.stringify(v) : String(v)]);
  }
  const model = p["model"];
  if (model && typeof model === "object") {
    const m = model as Record<string, unknown>;
    out.push(["model", [m["model_id"] ?? m["name"], m["weights_license"]].filter(Boolean).join(" · ")]);
  }
  if (n.missing) out.push(["state", "deleted: content cannot be checked"]);
  if (n.more_parents) out.push(["lineage", "has more ancestors beyond this depth"]);
  return out;
}

export function Provenance(props: { host: Host; artifactId: string; graph?: ProvenanceGraph; usage?: UsageCheck; use?: string }) {
  const { host, artifactId } = props;
  const [graph, setGraph] = useState<ProvenanceGraph | null>(props.graph ?? null);
  const [usage, setUsage] = useState<UsageCheck | null>(props.usage ?? null);
  const [use, setUse] = useState(props.use ?? props.usage?.use ?? "commercial_release");
  const [uses, setUses] = useState<Record<string, string>>(FALLBACK_USES);
  const [selected, setSelected] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [checking, setChecking] = useState(false);

  useEffect(() => {
    host
      .readText("echotune://licenses")
      .then((t) => {
        const u = JSON.parse(t)?.uses;
        if (u && typeof u === "object") setUses(u as Record<string, string>);
      })
      .catch(() => undefined); // the built-in list is the same policy's uses
  }, [host]);

  useEffect(() => {
    if (graph || !artifactId) return;
    host
      .callTool("get_provenance", { artifact: artifactId, depth: 5 })
      .then((r) => setGraph(r.structured as ProvenanceGraph))
      .catch((e) => setError(`get_provenance: ${errorText(e)}`));
  }, [host, artifactId, graph]);

  useEffect(() => {
    if (!artifactId || (usage && usage.use === use)) return;
    let live = true;
    setChecking(true);
    host
      .callTool("check_usage", { artifact: artifactId, use })
      .then((r) => live && setUsage(r.structured as UsageCheck))
      .catch((e) => live && setError(`check_usage: ${errorText(e)}`))
      .finally(() => live && setChecking(false));
    return () => {
      live = false;
    };
  }, [host, artifactId, use]); // eslint-disable-line react-hooks/exhaustive-deps

  const layout = useMemo(() => (graph ? layoutLineage(graph) : null), [graph]);
  const chosen = graph?.nodes.find((n) => n.artifact_id === (selected ?? artifactId)) ?? null;
  const decision = usage ? decisionText(usage.decision) : null;
  const blamed = new Set((usage?.reasons ?? []).filter((r) => r.effect !== "allowed").map((r) => r.artifact_id));

  return (
    <main data-testid="view-provenance" className="view">
      <h1>
        Provenance <span className="muted">{artifactId}</span>
      </h1>
      <div className="row">
        <label>
          Intended use{" "}
          <select data-testid="use-select" value={use} onChange={(e) => setUse(e.currentTarget.value)}>
            {Object.entries(uses).map(([k, v]) => (
              <option key={k} value={k} title={v}>
                {k.replace(/_/g, " ")}
              </option>
            ))}
          </select>
        </label>
        {checking ? <span className="muted" role="status">checking…</span> : null}
      </div>
      {usage ? (
        <section className={`decision decision-${usage.decision}`} aria-live="polite">
          <p data-testid="licence-decision" className="big">
            {usage.decision === "not_allowed" ? "✕" : usage.decision === "allowed" ? "✓" : "!"} {usage.use.replace(/_/g, " ")}:{" "}
            <strong>{decision}</strong>
          </p>
          <p className="muted">
            {usage.use_description}. Licence set: {usage.license ?? "none"}
            {usage.permitted_licenses.length ? ` · may be licensed as ${usage.permitted_licenses.join(", ")}` : ""}
          </p>
          {usage.reasons.length ? (
            <ul aria-label="Reasons">
              {usage.reasons.map((r, i) => (
                <li key={i}>
                  <strong>{r.license}</strong> ({r.factor}, from{" "}
                  <button type="button" className="link" onClick={() => setSelected(r.artifact_id)}>
                    {r.artifact_id}
                  </button>
                  ): {r.explanation}
                  {r.remedy ? <em> Remedy: {r.remedy}</em> : null}
                </li>
              ))}
            </ul>
          ) : null}
          {usage.guidance.length ? (
            <ul aria-label="Guidance">
              {usage.guidance.map((g, i) => (
                <li key={i}>{g}</li>
              ))}
            </ul>
          ) : null}
        </section>
      ) : null}
      {layout ? (
        <div className="graph-wrap">
          <svg
            data-testid="lineage-graph"
            role="group"
            aria-label={`Lineage of ${artifactId}: ${layout.nodes.length} artifacts, derived items on the left, their sources to the right`}
            width={layout.width}
            height={layout.height}
            viewBox={`0 0 ${layout.width} ${layout.height}`}
          >
            <defs>
              <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">
                <path d="M 0 0 L 10 5 L 0 10 z" className="edge-head" />
              </marker>
            </defs>
            {layout.edges.map((e) => (
              <path
                key={`${e.child}-${e.parent}`}
                className="edge"
                markerEnd="url(#arrow)"
                d={`M ${e.x1} ${e.y1} C ${(e.x1 + e.x2) / 2} ${e.y1}, ${(e.x1 + e.x2) / 2} ${e.y2}, ${e.x2} ${e.y2}`}
              />
            ))}
            {layout.nodes.map((n) => {
              const label = nodeLabel(n.node);
              const cls = ["node", n.id === artifactId ? "root" : "", n.node.missing ? "missing" : "", blamed.has(n.id) ? "blamed" : "", (selected ?? artifactId) === n.id ? "selected" : ""].join(" ");
              return (
                <g
                  key={n.id}
                  data-testid={`node-${n.id}`}
                  className={cls}
                  transform={`translate(${n.x},${n.y})`}
                  tabIndex={0}
                  role="button"
                  aria-label={`${label.title} ${label.subtitle}${blamed.has(n.id) ? ", restricts this use" : ""}`}
                  onClick={() => setSelected(n.id)}
                  onKeyDown={(e) => {
                    if (e.key === "Enter" || e.key === " ") {
                      e.preventDefault();
                      setSelected(n.id);
                    }
                  }}
                >
                  <rect width={layout.nodeWidth} height={layout.nodeHeight} rx={6} />
                  <text x={8} y={17} className="t1">
                    {label.title}
                  </text>
                  <text x={8} y={34} className="t2">
                    {label.subtitle}
                  </text>
                </g>
              );
            })}
          </svg>
        </div>
      ) : (
        <p className="muted" role="status">
          Loading lineage…
        </p>
      )}
      {graph?.truncated ? <p className="muted">The lineage was cut at depth {graph.depth}.</p> : null}
      {chosen ? (
        <dl className="details" aria-label="Selected artifact" data-testid="node-details">
          {summary(chosen).map(([k, v]) => (
            <div key={k}>
              <dt>{k}</dt>
              <dd>{v}</dd>
            </div>
          ))}
        </dl>
      ) : null}
      <ErrorNote error={error} />
    </main>
  );
}
