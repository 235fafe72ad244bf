/**
 * Builds the one EchoTune app bundle as a single self-contained HTML file (JS and CSS inlined by
 * vite-plugin-singlefile), because MCP Apps hosts render a ui:// resource's HTML in a sandboxed iframe
 * whose CSP allows no network fetches. scripts/build-views.mjs copies it once per view.
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";
import { viteSingleFile } from "vite-plugin-singlefile";

export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  plugins: [react(), viteSingleFile()],
  build: {
    outDir: "dist-app",
    emptyOutDir: true,
    target: "es2022",
    // Everything is inlined anyway: one chunk, no asset files.
    assetsInlineLimit: 100_000_000,
    chunkSizeWarningLimit: 2_000,
    // The modulepreload polyfill calls fetch(); there is nothing to preload in a single file.
    modulePreload: { polyfill: false },
  },
  test: {
    include: ["tests/**/*.test.ts"],
    environment: "node",
  },
});
