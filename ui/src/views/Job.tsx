/**
 * Job view: progress of a running generation, separation or remix, with its preview clips playable as
 * they arrive, a Cancel button, and, once it succeeded, the result (the mix in a player, "Open mixer"
 * when the job made stems). Polls get_job with a bounded long-poll while it runs and the view is open.
 */
import { useEffect, useMemo, useState } from "react";
import type { Host } from "../host";
import { isJobView, isTerminal, percent, pollJob, PollStopped, previewsOf } from "../logic/job";
import { stemsFromJob } from "../logic/mixer";
import { playerSourcesOfJob } from "../logic/route";
import { loadAudio, SyncPlayer } from "../audio/engine";
import type { JobView as Job } from "../types";
import { Player } from "./Player";
import { ErrorNote, errorText } from "../components";
import type { Navigate } from "../nav";

export function JobView(props: { host: Host; job: Job; navigate: Navigate }) {
  const { host, navigate } = props;
  const [job, setJob] = useState(props.job);
  const [error, setError] = useState<string | null>(null);
  const [cancelling, setCancelling] = useState(false);
  const [previewPlaying, setPreviewPlaying] = useState<string | null>(null);
  const previewEngine = useMemo(() => new SyncPlayer(), []);

  useEffect(() => {
    previewEngine.onEnded = () => setPreviewPlaying(null);
    return () => previewEngine.dispose();
  }, [previewEngine]);

  const terminal = isTerminal(job.status);
  useEffect(() => {
    if (isTerminal(props.job.status)) return;
    const ctl = new AbortController();
    pollJob(
      async (args) => {
        const r = await host.callTool("get_job", args, 30_000);
        if (!isJobView(r.structured)) throw new Error("get_job returned no job");
        return r.structured;
      },
      props.job.job_id,
      { signal: ctl.signal, onUpdate: setJob },
    ).catch((e) => {
      if (!(e instanceof PollStopped && ctl.signal.aborted)) setError(errorText(e));
    });
    return () => ctl.abort();
  }, [host, props.job.job_id, props.job.status]);

  const cancel = async () => {
    setCancelling(true);
    setError(null);
    try {
      const r = await host.callTool("cancel_job", { job_id: job.job_id }, 30_000);
      if (isJobView(r.structured)) setJob(r.structured);
    } catch (e) {
      setError(`Cancel failed: ${errorText(e)}`);
    } finally {
      setCancelling(false);
    }
  };

  const playPreview = async (id: string) => {
    setError(null);
    if (previewPlaying === id) {
      previewEngine.pause();
      setPreviewPlaying(null);
      return;
    }
    try {
      const a = await loadAudio(host, id);
      previewEngine.setTracks([{ name: "preview", buffer: a.buffer }]);
      await previewEngine.play(0);
      setPreviewPlaying(id);
    } catch (e) {
      setError(`could not play preview ${id}: ${errorText(e)}`);
    }
  };

  const previews = previewsOf(job);
  const stems = job.status === "succeeded" ? stemsFromJob(job) : null;
  const sources = job.status === "succeeded" ? playerSourcesOfJob(job) : [];
  const pct = percent(job);

  return (
    <main data-testid="view-job" className="view">
      <h1>
        {job.tool} <span className="muted">{job.job_id}</span>
      </h1>
      <p>
        Status: <strong data-testid="job-status" className={`status-${job.status}`}>{job.status}</strong>
      </p>
      <div
        className="progress"
        role="progressbar"
        data-testid="job-progress"
        aria-label={`${job.tool} progress`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={pct}
      >
        <div className="bar" style={{ width: `${pct}%` }} />
      </div>
      <p className="muted" aria-live="polite">
        {pct}% {job.message}
      </p>
      {job.error ? <p className="error">{job.error}</p> : null}
      <div className="row">
        <button type="button" data-testid="cancel-job" disabled={terminal || cancelling} onClick={() => void cancel()}>
          {cancelling ? "Cancelling…" : "Cancel job"}
        </button>
        {stems ? (
          <button type="button" className="primary" data-testid="open-mixer" onClick={() => navigate({ view: "mixer", source: stems })}>
            Open mixer ({stems.stems.length} stems)
          </button>
        ) : null}
        {sources.length ? (
          <button type="button" data-testid="open-player" onClick={() => navigate({ view: "player", sources })}>
            Open player
          </button>
        ) : null}
      </div>
      <h2>Previews</h2>
      <ul data-testid="job-previews" aria-label="Previews" className="previews">
        {previews.length === 0 ? <li className="muted">{terminal ? "none" : "none yet"}</li> : null}
        {previews.map((p, i) => (
          <li key={p.artifact_id} data-testid={`preview-${i}`}>
            <button type="button" aria-pressed={previewPlaying === p.artifact_id} onClick={() => void playPreview(p.artifact_id)}>
              {previewPlaying === p.artifact_id ? "❚❚" : "▶"} {p.name}
            </button>{" "}
            <span className="muted">{typeof p.meta["seconds"] === "number" ? `${p.meta["seconds"]} s` : ""}</span>
          </li>
        ))}
      </ul>
      <ErrorNote error={error} />
      {sources.length ? <Player host={host} sources={sources} title="Result" /> : null}
    </main>
  );
}
