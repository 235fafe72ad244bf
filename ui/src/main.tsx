/**
 * Entry point: connect to the MCP Apps host (ext-apps `App` over postMessage), follow its theme, and
 * render the view this HTML file was built for. Handlers are set before connect() so the tool input
 * and result the host sends right after the handshake are not missed.
 */
import { createRoot } from "react-dom/client";
import { App, applyDocumentTheme, applyHostStyleVariables, type McpUiHostContext } from "@modelcontextprotocol/ext-apps";
import { appHost, outcomeOf } from "./host";
import { closeAudio } from "./audio/engine";
import { resolveView } from "./logic/route";
import { createStore } from "./store";
import { Root } from "./Root";
import "./styles.css";

const view = resolveView(window.__ECHOTUNE_VIEW__, location.pathname);
const store = createStore();
const app = new App({ name: "EchoTune", version: "0.1.0" }, {}, { autoResize: true });

function applyTheme(ctx: McpUiHostContext | undefined) {
  if (!ctx) return;
  if (ctx.theme) applyDocumentTheme(ctx.theme);
  if (ctx.styles?.variables) applyHostStyleVariables(ctx.styles.variables);
}

// No host theme yet: follow the system preference until the host says otherwise.
applyDocumentTheme(window.matchMedia?.("(prefers-color-scheme: dark)").matches ? "dark" : "light");

app.ontoolinput = (params) => store.set({ input: (params.arguments ?? {}) as Record<string, unknown> });
app.ontoolresult = (params) => {
  const outcome = outcomeOf(params);
  store.set({ result: outcome.structured ?? null, text: outcome.text, isError: params.isError === true });
};
app.ontoolcancelled = () => store.set({ cancelled: true });
app.onhostcontextchanged = (ctx) => applyTheme(ctx);
app.onteardown = async () => {
  await closeAudio();
  return {};
};

app
  .connect()
  .then(() => applyTheme(app.getHostContext()))
  .catch((err: unknown) => store.set({ error: err instanceof Error ? err.message : String(err) }));

createRoot(document.getElementById("root")!).render(<Root host={appHost(app)} store={store} view={view} />);
