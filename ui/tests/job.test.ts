import { describe, expect, it } from "vitest";
import { derivedFrom, isTerminal, mixOf, percent, pollJob, PollStopped, previewsOf } from "../src/logic/job";
import type { JobStatus, JobView } from "../src/types";

const job = (status: JobStatus, progress = 0.5, extra: Partial<JobView> = {}): JobView => ({
  job_id: "job1",
  tool: "generate_music",
  status,
  progress,
  message: "",
  artifacts: [],
  ...extra,
});
const noSleep = async () => undefined;

describe("pollJob", () => {
  it("polls with wait_seconds <= 5 until a terminal status and reports every update", async () => {
    const answers = [job("queued", 0), job("running", 0.4), job("succeeded", 1)];
    const calls: unknown[] = [];
    const seen: string[] = [];
    const last = await pollJob(
      async (a) => {
        calls.push(a);
        return answers.shift()!;
      },
      "job1",
      { waitSeconds: 20, onUpdate: (j) => seen.push(j.status), sleep: noSleep },
    );
    expect(last.status).toBe("succeeded");
    expect(seen).toEqual(["queued", "running", "succeeded"]);
    expect(calls).toEqual([
      { job_id: "job1", wait_seconds: 5 },
      { job_id: "job1", wait_seconds: 5 },
      { job_id: "job1", wait_seconds: 5 },
    ]);
  });

  it("stops after maxPolls with the last state", async () => {
    let n = 0;
    await expect(
      pollJob(async () => (n++, job("running")), "job1", { maxPolls: 3, sleep: noSleep }),
    ).rejects.toThrow(/after 3 polls/);
    expect(n).toBe(3);
  });

  it("gives up after maxErrors failures in a row, but not after isolated ones", async () => {
    let n = 0;
    const flaky = async () => {
      n++;
      if (n % 2 === 1) throw new Error("host busy");
      return n >= 6 ? job("cancelled") : job("running");
    };
    expect((await pollJob(flaky, "job1", { maxErrors: 2, sleep: noSleep })).status).toBe("cancelled");
    const broken = async (): Promise<JobView> => {
      throw new Error("gone");
    };
    await expect(pollJob(broken, "job1", { maxErrors: 3, sleep: noSleep })).rejects.toThrow(/3 times in a row: gone/);
  });

  it("stops when the view is closed", async () => {
    const ctl = new AbortController();
    let n = 0;
    const p = pollJob(
      async () => {
        n++;
        if (n === 2) ctl.abort();
        return job("running");
      },
      "job1",
      { signal: ctl.signal, sleep: noSleep },
    );
    await expect(p).rejects.toBeInstanceOf(PollStopped);
    expect(n).toBe(2);
  });
});

describe("reading a JobView", () => {
  const a = (id: string, kind: string, media = "audio/ogg") => ({
    artifact_id: id, uri: "", content_uri: "", kind, media_type: media, name: id, size: 1, parents: [], meta: {},
  });
  it("finds previews, the mix, and what a regeneration derived from", () => {
    const j = job("succeeded", 1, {
      artifacts: [a("p1", "preview"), a("mid", "midi", "audio/midi"), a("m", "audio", "audio/wav"), a("p2", "preview")],
      result: { mix_artifact_id: "m", derived_from: "old" },
    });
    expect(previewsOf(j).map((x) => x.artifact_id)).toEqual(["p1", "p2"]);
    expect(mixOf(j)).toBe("m");
    expect(derivedFrom(j)).toBe("old");
    expect(mixOf(job("running"))).toBeNull();
  });
  it("terminal statuses and percent", () => {
    expect(["succeeded", "failed", "cancelled", "interrupted"].every(isTerminal)).toBe(true);
    expect(isTerminal("running") || isTerminal("queued")).toBe(false);
    expect(percent(job("running", 0.456))).toBe(46);
    expect(percent(job("succeeded", 0.97))).toBe(100);
    expect(percent(job("running", 7))).toBe(100);
  });
});
