// Builds the browser tests' host page (index.html + main.ts) into ONE self-contained file,
// ui/dist-test/host.html, that the Playwright tests serve with page.route (no dev server, no network).
// Run from ui/: `npm run build:host`.
import { renameSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { defineConfig, type Plugin } from "vite";
import { viteSingleFile } from "vite-plugin-singlefile";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, "../dist-test");

/** Vite names an HTML output after its input (index.html); the tests look for host.html. */
function renameToHost(): Plugin {
  return {
    name: "echotune-test-host-name",
    apply: "build",
    closeBundle() {
      renameSync(resolve(outDir, "index.html"), resolve(outDir, "host.html"));
    },
  };
}

export default defineConfig({
  root: here,
  base: "./",
  logLevel: "warn",
  plugins: [viteSingleFile(), renameToHost()],
  build: {
    outDir,
    emptyOutDir: true,
    target: "es2022",
    // one file: the host page has nothing to lazy-load
    assetsInlineLimit: 100_000_000,
    chunkSizeWarningLimit: 4096,
  },
});
