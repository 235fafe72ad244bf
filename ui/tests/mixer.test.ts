import { describe, expect, it } from "vitest";
import {
  dbToLinear,
  effectiveGains,
  isAudible,
  loopRegion,
  MixError,
  mixerSampleRate,
  newStem,
  positionAt,
  regenerateArguments,
  remixArguments,
  setGain,
  setPan,
  stemsFromArtifact,
  stemsFromJob,
  toggleMute,
  toggleSolo,
  type StemState,
} from "../src/logic/mixer";
import type { JobView } from "../src/types";

const base = (): StemState[] => [newStem("drums", "a_drums"), newStem("bass", "a_bass"), newStem("lead", "a_lead")];

describe("gain law", () => {
  it("maps dB to linear amplitude and the bottom of the range to silence", () => {
    expect(dbToLinear(0)).toBe(1);
    expect(dbToLinear(-6)).toBeCloseTo(0.501, 3);
    expect(dbToLinear(6)).toBeCloseTo(1.995, 3);
    expect(dbToLinear(-60)).toBe(0);
    expect(dbToLinear(Number.NaN)).toBe(0);
  });
});

describe("mute and solo", () => {
  it("mutes one stem and leaves the others at their gain", () => {
    const s = setGain(toggleMute(base(), "drums"), "bass", -6);
    const g = effectiveGains(s);
    expect(g).toEqual({ drums: 0, bass: dbToLinear(-6), lead: 1 });
  });

  it("a solo silences every stem that is not soloed; two solos are both heard", () => {
    let s = toggleSolo(base(), "bass");
    expect(effectiveGains(s)).toEqual({ drums: 0, bass: 1, lead: 0 });
    s = toggleSolo(s, "lead");
    expect(effectiveGains(s)).toEqual({ drums: 0, bass: 1, lead: 1 });
    s = toggleSolo(toggleSolo(s, "bass"), "lead");
    expect(effectiveGains(s)).toEqual({ drums: 1, bass: 1, lead: 1 });
  });

  it("mute wins over solo (as remix does)", () => {
    const s = toggleMute(toggleSolo(base(), "bass"), "bass");
    expect(isAudible(s[1]!, s)).toBe(false);
    expect(effectiveGains(s)).toEqual({ drums: 0, bass: 0, lead: 0 });
  });

  it("reducers do not change their input and refuse unknown stems", () => {
    const s = base();
    toggleMute(s, "drums");
    expect(s[0]!.mute).toBe(false);
    expect(() => toggleMute(s, "vocals")).toThrow(MixError);
  });

  it("clamps gain and pan to the slider ranges", () => {
    const s = setPan(setGain(base(), "drums", 99), "bass", -5);
    expect(s[0]!.gainDb).toBe(12);
    expect(s[1]!.pan).toBe(-1);
  });
});

describe("remix arguments", () => {
  it("default mixer: every stem by artifact id, nothing else", () => {
    expect(remixArguments(base())).toEqual({
      stems: { drums: "a_drums", bass: "a_bass", lead: "a_lead" },
      wait_seconds: 20,
    });
  });

  it("mute drums, bass -3.5 dB panned left: exactly what remix takes", () => {
    const s = setPan(setGain(toggleMute(base(), "drums"), "bass", -3.5), "bass", -0.4);
    expect(remixArguments(s)).toEqual({
      stems: { drums: "a_drums", bass: "a_bass", lead: "a_lead" },
      mute: ["drums"],
      gains_db: { bass: -3.5 },
      pan: { bass: -0.4 },
      wait_seconds: 20,
    });
  });

  it("sends solo as the buttons are, and no gain/pan for stems a solo leaves out", () => {
    const s = setGain(toggleSolo(setGain(base(), "drums", 4), "lead"), "lead", -2);
    const a = remixArguments(s);
    expect(a.solo).toEqual(["lead"]);
    expect(a.mute).toBeUndefined();
    expect(a.gains_db).toEqual({ lead: -2 });
  });

  it("refuses a silent mix and names mute", () => {
    let s = base();
    for (const n of ["drums", "bass", "lead"]) s = toggleMute(s, n);
    expect(() => remixArguments(s)).toThrow(/silent/);
    try {
      remixArguments(s);
    } catch (e) {
      expect((e as MixError).field).toBe("mute");
    }
    // soloed but muted: also silent
    expect(() => remixArguments(toggleMute(toggleSolo(base(), "lead"), "lead"))).toThrow(MixError);
  });

  it("refuses no stems and duplicate stem names", () => {
    expect(() => remixArguments([])).toThrow(MixError);
    expect(() => remixArguments([newStem("a", "1"), newStem("a", "2")])).toThrow(/twice/);
  });

  it("keeps wait_seconds inside remix's 0..25", () => {
    expect(remixArguments(base(), 99).wait_seconds).toBe(25);
  });
});

describe("regenerate arguments", () => {
  it("passes the piece, the stem and the trimmed instruction", () => {
    expect(regenerateArguments("mix1", base(), "bass", "  an octave lower ")).toEqual({
      artifact: "mix1",
      stem: "bass",
      instruction: "an octave lower",
      wait_seconds: 20,
    });
  });
  it("omits an empty instruction", () => {
    expect(regenerateArguments("mix1", base(), "bass", "   ")).not.toHaveProperty("instruction");
  });
  it("refuses a separation (no piece), an unknown stem, and a too-long instruction", () => {
    expect(() => regenerateArguments(null, base(), "bass", "x")).toThrow(/generated piece/);
    expect(() => regenerateArguments("m", base(), "vocals", "x")).toThrow(MixError);
    expect(() => regenerateArguments("m", base(), "bass", "x".repeat(301))).toThrow(/300/);
  });
});

const art = (id: string, kind: string, meta: Record<string, unknown> = {}, media = "audio/wav") => ({
  artifact_id: id,
  uri: `echotune://artifacts/${id}`,
  content_uri: `echotune://artifacts/${id}/content`,
  kind,
  media_type: media,
  name: `${id}.wav`,
  size: 1,
  parents: [],
  meta,
});

describe("stems of a result", () => {
  it("a composer piece: stems from the result, the mix is regenerable", () => {
    const job: JobView = {
      job_id: "j",
      tool: "generate_music",
      status: "succeeded",
      progress: 1,
      message: "",
      artifacts: [],
      result: { stems: { drums: "s1", bass: "s2" }, mix_artifact_id: "m", arrangement_artifact_id: "arr", duration_s: 30.5 },
    };
    expect(stemsFromJob(job)).toEqual({ stems: [["drums", "s1"], ["bass", "s2"]], piece: "m", durationS: 30.5 });
  });

  it("a separation: stems from the result, nothing to regenerate", () => {
    const job: JobView = {
      job_id: "j",
      tool: "separate_stems",
      status: "succeeded",
      progress: 1,
      message: "",
      artifacts: [],
      result: { stems: { vocals: "v", rest: "r" }, stem_set_artifact_id: "set" },
    };
    expect(stemsFromJob(job)).toEqual({ stems: [["vocals", "v"], ["rest", "r"]], piece: null, durationS: null });
  });

  it("falls back to the job's stem artifacts, and is null with none", () => {
    const job: JobView = {
      job_id: "j",
      tool: "x",
      status: "succeeded",
      progress: 1,
      message: "",
      artifacts: [art("s1", "stem", { stem: "drums", duration_s: 12 }), art("p", "preview", {}, "audio/ogg")],
    };
    expect(stemsFromJob(job)!.stems).toEqual([["drums", "s1"]]);
    expect(stemsFromJob(job)!.durationS).toBe(12);
    expect(stemsFromJob({ ...job, artifacts: [] })).toBeNull();
  });

  it("a mix artifact lists its stems in meta", () => {
    expect(stemsFromArtifact(art("m", "audio", { stems: { a: "1" }, arrangement_id: "arr", duration_s: 9 }))).toEqual({
      stems: [["a", "1"]],
      piece: "m",
      durationS: 9,
    });
    expect(stemsFromArtifact(art("m", "audio"))).toBeNull();
  });
});

describe("loop region and position", () => {
  it("clamps to the audio and refuses empty regions", () => {
    expect(loopRegion(2, 4, 10)).toEqual({ start: 2, end: 4 });
    expect(loopRegion(-1, 99, 10)).toEqual({ start: 0, end: 10 });
    expect(loopRegion(4, 2, 10)).toBeNull();
    expect(loopRegion(3, 3.01, 10)).toBeNull();
    expect(loopRegion(Number.NaN, 2, 10)).toBeNull();
  });

  it("wraps inside the loop and stops at the end without one", () => {
    expect(positionAt(2, 1.5, 10, { start: 2, end: 4 })).toBeCloseTo(3.5);
    expect(positionAt(2, 2.5, 10, { start: 2, end: 4 })).toBeCloseTo(2.5);
    expect(positionAt(2, 6.25, 10, { start: 2, end: 4 })).toBeCloseTo(2.25);
    expect(positionAt(8, 5, 10, null)).toBe(10);
    expect(positionAt(1, -0.05, 10, null)).toBe(1); // before the scheduled start
  });
});

describe("decoding budget", () => {
  const MiB = 1024 * 1024;
  it("full rate when the stems fit, lower rates as they grow, null when nothing fits", () => {
    expect(mixerSampleRate(4, 30)).toBe(48000); // 4 x 30 s x 48 kHz x 2 ch x 4 B = 44 MiB
    expect(mixerSampleRate(6, 240)).toBe(44100); // 527 MiB at 48 kHz: over 512
    expect(mixerSampleRate(9, 300)).toBe(24000);
    expect(mixerSampleRate(9, 3600)).toBeNull();
    for (const [n, d] of [[6, 240], [9, 300]] as const) {
      expect(n * d * mixerSampleRate(n, d)! * 8).toBeLessThanOrEqual(512 * MiB);
    }
  });
  it("unknown duration: full rate", () => {
    expect(mixerSampleRate(4, null)).toBe(48000);
  });
});
