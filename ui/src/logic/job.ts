/**
 * Job view logic: reading a JobView and polling get_job in a bounded loop.
 *
 * Every wait is bounded: each get_job long-polls at most `waitSeconds` (the server returns early when
 * the job ends), the loop stops at a terminal status, when the view goes away (AbortSignal), after
 * `maxPolls` rounds, or after `maxErrors` failures in a row.
 */
import type { ArtifactView, JobStatus, JobView } from "../types";

export const TERMINAL: ReadonlySet<JobStatus> = new Set(["succeeded", "failed", "cancelled", "interrupted"]);

export function isTerminal(status: string): boolean {
  return TERMINAL.has(status as JobStatus);
}

export function isJobView(v: unknown): v is JobView {
  return (
    !!v &&
    typeof v === "object" &&
    typeof (v as JobView).job_id === "string" &&
    typeof (v as JobView).status === "string" &&
    Array.isArray((v as JobView).artifacts)
  );
}

const isAudio = (a: ArtifactView) => a.media_type.startsWith("audio/") && a.media_type !== "audio/midi";

/** Preview clips the job has produced so far (kind "preview"), oldest first. */
export function previewsOf(job: JobView): ArtifactView[] {
  return job.artifacts.filter((a) => a.kind === "preview" && isAudio(a));
}

/** The finished mix of a generation/remix job, if it has one. */
export function mixOf(job: JobView): string | null {
  const id = job.result?.["mix_artifact_id"];
  if (typeof id === "string") return id;
  const audio = job.artifacts.filter((a) => a.kind === "audio" && isAudio(a));
  return audio.length ? audio[audio.length - 1]!.artifact_id : null;
}

/** What a regenerate_stem / add_stem job derived from (the mix before), for an A/B comparison. */
export function derivedFrom(job: JobView): string | null {
  const id = job.result?.["derived_from"];
  return typeof id === "string" ? id : null;
}

/** Progress as a whole percentage 0..100 for the progressbar. */
export function percent(job: Pick<JobView, "progress" | "status">): number {
  if (job.status === "succeeded") return 100;
  const p = Number.isFinite(job.progress) ? job.progress : 0;
  return Math.round(Math.min(1, Math.max(0, p)) * 100);
}

export interface PollOptions {
  /** get_job's wait_seconds per round (the tool allows 0..25; the view uses <= 5 to stay responsive) */
  waitSeconds?: number;
  maxPolls?: number;
  maxErrors?: number;
  signal?: AbortSignal;
  onUpdate?: (job: JobView) => void;
  /** pause after a failed call before trying again (ms) */
  errorDelayMs?: number;
  sleep?: (ms: number) => Promise<void>;
}

export class PollStopped extends Error {
  constructor(
    message: string,
    readonly last: JobView | null,
  ) {
    super(message);
    this.name = "PollStopped";
  }
}

const defaultSleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Poll get_job until the job reaches a terminal status; returns the final JobView. `getJob` performs
 * the tools/call (through the host) and returns the JobView it answered.
 */
export async function pollJob(
  getJob: (args: { job_id: string; wait_seconds: number }) => Promise<JobView>,
  jobId: string,
  opts: PollOptions = {},
): Promise<JobView> {
  const wait = Math.min(5, Math.max(0, opts.waitSeconds ?? 5));
  const maxPolls = opts.maxPolls ?? 720; // 720 x 5 s = an hour of watching, then the user reopens
  const maxErrors = opts.maxErrors ?? 5;
  const sleep = opts.sleep ?? defaultSleep;
  let errors = 0;
  let last: JobView | null = null;
  for (let i = 0; i < maxPolls; i++) {
    if (opts.signal?.aborted) throw new PollStopped("stopped: the view was closed", last);
    try {
      last = await getJob({ job_id: jobId, wait_seconds: wait });
      errors = 0;
    } catch (err) {
      errors += 1;
      if (errors >= maxErrors) {
        throw new PollStopped(`get_job failed ${errors} times in a row: ${String((err as Error)?.message ?? err)}`, last);
      }
      await sleep(opts.errorDelayMs ?? 1000);
      continue;
    }
    if (opts.signal?.aborted) throw new PollStopped("stopped: the view was closed", last);
    opts.onUpdate?.(last);
    if (isTerminal(last.status)) return last;
    if (wait === 0) await sleep(1000); // no long-poll: do not spin
  }
  throw new PollStopped(`still ${last?.status ?? "unknown"} after ${maxPolls} polls; open the job again to keep watching`, last);
}
