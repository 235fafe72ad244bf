/**
 * The app's root: shows the view for the current route. The first route comes from the tool result the
 * host delivers (ontoolresult); after that the views navigate in-app (job -> mixer -> player).
 */
import { useEffect, useState } from "react";
import type { Host } from "./host";
import { initialRoute, type Route } from "./logic/route";
import type { ViewName } from "./types";
import type { Store } from "./store";
import { useStore } from "./store";
import { Player } from "./views/Player";
import { Mixer } from "./views/Mixer";
import { JobView } from "./views/Job";
import { PlaylistView } from "./views/Playlist";
import { Provenance } from "./views/Provenance";

export function Root(props: { host: Host; store: Store; view: ViewName }) {
  const state = useStore(props.store);
  const [route, setRoute] = useState<Route>({ view: "waiting", initial: props.view });
  const [seq, setSeq] = useState(0);

  // A new tool result (the host may send one again, e.g. on a re-run) replaces what is shown.
  useEffect(() => {
    if (state.result === undefined) return;
    setRoute(
      state.isError
        ? { view: "message", initial: props.view, title: "The tool call failed", text: "What the server said:" }
        : initialRoute(props.view, state.result, state.input ?? {}),
    );
    setSeq((n) => n + 1);
  }, [state.result, state.input, state.isError, props.view]);

  const navigate = (r: Route) => {
    setRoute(r);
    setSeq((n) => n + 1);
  };
  const host = props.host;

  switch (route.view) {
    case "waiting":
      return (
        <main data-testid={`view-${route.initial}`} className="view" aria-busy="true">
          <p className="muted" role="status">
            {state.error
              ? `Could not connect to the host: ${state.error}`
              : state.cancelled
                ? "The tool call was cancelled."
                : "Waiting for the tool result…"}
          </p>
        </main>
      );
    case "message":
      return (
        <main data-testid={`view-${route.initial}`} className="view">
          <h1>{route.title}</h1>
          <p>{route.text}</p>
          {state.text ? <pre className="raw">{state.text}</pre> : null}
        </main>
      );
    case "player":
      return (
        <main data-testid="view-player" className="view">
          <Player key={seq} host={host} sources={route.sources} initial={route.initial} />
        </main>
      );
    case "mixer":
      return <Mixer key={seq} host={host} source={route.source} navigate={navigate} />;
    case "job":
      return <JobView key={seq} host={host} job={route.job} navigate={navigate} />;
    case "playlist":
      return <PlaylistView key={seq} host={host} model={route.model} />;
    case "provenance":
      return <Provenance key={seq} host={host} artifactId={route.artifactId} graph={route.graph} usage={route.usage} use={route.use} />;
  }
}
