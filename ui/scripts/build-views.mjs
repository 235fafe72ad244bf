// Build the app once (vite + singlefile), then write one HTML file per view into the Python package
// (echotune_mcp/ui_dist/<view>.html). Every file holds the same bundle; a small inline script names the
// view it opens on, so a host that renders ui://echotune/mixer.html lands on the mixer, and the app can
// still move between views (job -> mixer -> player) without another resource read.
import { build } from "vite";
import { mkdirSync, readFileSync, writeFileSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const VIEWS = ["player", "mixer", "job", "playlist", "provenance"];

const here = dirname(fileURLToPath(import.meta.url));
const uiRoot = join(here, "..");
const outDir = join(uiRoot, "..", "echotune_mcp", "ui_dist");

await build({ configFile: join(uiRoot, "vite.config.ts"), logLevel: "warn" });
const html = readFileSync(join(uiRoot, "dist-app", "index.html"), "utf8");
if (/<script[^>]+src=|<link[^>]+href=/.test(html)) {
  throw new Error("the built HTML still references an external file; it must be self-contained");
}
mkdirSync(outDir, { recursive: true });
for (const view of VIEWS) {
  const tag = `<script>window.__ECHOTUNE_VIEW__=${JSON.stringify(view)};</script>`;
  const page = html
    .replace("<title>EchoTune</title>", `<title>EchoTune ${view}</title>${tag}`)
    .replace("<html lang=\"en\">", `<html lang="en" data-view="${view}">`);
  if (!page.includes(tag)) throw new Error("could not inject the view name; index.html changed?");
  const file = join(outDir, `${view}.html`);
  writeFileSync(file, page);
  console.log(`${view}.html ${(statSync(file).size / 1024).toFixed(1)} KiB`);
}
