/**
 * Stem mixer state, kept free of React and Web Audio so it can be unit-tested.
 *
 * What you hear in the browser and what `remix` renders on the server must agree, so both come from
 * here: `effectiveGains` drives the GainNodes, `remixArguments` builds the tool call from the same state.
 * The rules are remix's own (music/remix.py): any solo silences the stems not soloed, and mute wins
 * over solo.
 */
import type { ArtifactView, JobView } from "../types";

/** remix accepts -60..+24 dB per stem; the slider offers -60..+12 (above that only clips). */
export const GAIN_MIN_DB = -60;
export const GAIN_MAX_DB = 12;
export const REMIX_GAIN_MAX_DB = 24;
export const PAN_MIN = -1;
export const PAN_MAX = 1;
/** regenerate_stem's instruction is at most 300 characters. */
export const INSTRUCTION_MAX = 300;

export interface StemState {
  name: string;
  artifactId: string;
  gainDb: number;
  mute: boolean;
  solo: boolean;
  pan: number;
}

export class MixError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
    this.name = "MixError";
  }
}

export function newStem(name: string, artifactId: string): StemState {
  return { name, artifactId, gainDb: 0, mute: false, solo: false, pan: 0 };
}

const clamp = (v: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, v));
const round2 = (v: number) => Math.round(v * 100) / 100;

/** Linear amplitude for a dB value; the bottom of the range (-60 dB) is silence. */
export function dbToLinear(db: number): number {
  if (!Number.isFinite(db) || db <= GAIN_MIN_DB) return 0;
  return Math.pow(10, db / 20);
}

/**
 * Whether a stem is heard. A muted stem is silent even when soloed (mute wins, as in most DAWs);
 * when any stem is soloed, only soloed stems are heard.
 */
export function isAudible(stem: StemState, stems: readonly StemState[]): boolean {
  if (stem.mute) return false;
  const anySolo = stems.some((s) => s.solo);
  return !anySolo || stem.solo;
}

/** The linear gain each stem's GainNode should have right now (0 for silent stems). */
export function effectiveGains(stems: readonly StemState[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const s of stems) out[s.name] = isAudible(s, stems) ? dbToLinear(s.gainDb) : 0;
  return out;
}

export function audibleNames(stems: readonly StemState[]): string[] {
  return stems.filter((s) => isAudible(s, stems)).map((s) => s.name);
}

// -- reducers (return a new array; the input is not changed) ---------------------------------------------
function update(stems: readonly StemState[], name: string, f: (s: StemState) => StemState): StemState[] {
  if (!stems.some((s) => s.name === name)) throw new MixError("stem", `no stem named ${JSON.stringify(name)}`);
  return stems.map((s) => (s.name === name ? f(s) : s));
}

export const toggleMute = (stems: readonly StemState[], name: string) =>
  update(stems, name, (s) => ({ ...s, mute: !s.mute }));
export const toggleSolo = (stems: readonly StemState[], name: string) =>
  update(stems, name, (s) => ({ ...s, solo: !s.solo }));
export const setGain = (stems: readonly StemState[], name: string, db: number) =>
  update(stems, name, (s) => ({ ...s, gainDb: clamp(Number.isFinite(db) ? db : 0, GAIN_MIN_DB, GAIN_MAX_DB) }));
export const setPan = (stems: readonly StemState[], name: string, pan: number) =>
  update(stems, name, (s) => ({ ...s, pan: clamp(Number.isFinite(pan) ? pan : 0, PAN_MIN, PAN_MAX) }));

// -- tool arguments -----------------------------------------------------------------------------------
export interface RemixArguments {
  stems: Record<string, string>;
  gains_db?: Record<string, number>;
  mute?: string[];
  solo?: string[];
  pan?: Record<string, number>;
  wait_seconds: number;
}

/**
 * The `remix` call for the mixer as it sounds now: every stem by artifact id, the mute and solo buttons
 * as they are (remix applies the same rules, and its result says which stems were left out and why), and
 * the gains and pans of the audible stems that differ from the defaults (0 dB, centre). Refuses a mix in
 * which nothing is audible (remix would refuse it too).
 */
export function remixArguments(stems: readonly StemState[], waitSeconds = 20): RemixArguments {
  if (stems.length === 0) throw new MixError("stems", "there are no stems to mix");
  const names = new Set<string>();
  for (const s of stems) {
    if (names.has(s.name)) throw new MixError("stems", `stem ${JSON.stringify(s.name)} appears twice`);
    names.add(s.name);
  }
  const audible = audibleNames(stems);
  if (audible.length === 0) {
    throw new MixError("mute", "every stem is muted (or left out by solo): the mix would be silent");
  }
  const args: RemixArguments = {
    stems: Object.fromEntries(stems.map((s) => [s.name, s.artifactId])),
    wait_seconds: clamp(waitSeconds, 0, 25),
  };
  const gains: Record<string, number> = {};
  const pans: Record<string, number> = {};
  for (const s of stems) {
    if (!audible.includes(s.name)) continue; // muted: its gain and pan do not matter
    const g = round2(clamp(s.gainDb, GAIN_MIN_DB, REMIX_GAIN_MAX_DB));
    if (g !== 0) gains[s.name] = g;
    const p = round2(clamp(s.pan, PAN_MIN, PAN_MAX));
    if (p !== 0) pans[s.name] = p;
  }
  const muted = stems.filter((s) => s.mute).map((s) => s.name);
  const soloed = stems.filter((s) => s.solo).map((s) => s.name);
  if (Object.keys(gains).length) args.gains_db = gains;
  if (muted.length) args.mute = muted;
  if (soloed.length) args.solo = soloed;
  if (Object.keys(pans).length) args.pan = pans;
  return args;
}

export interface RegenerateArguments {
  artifact: string;
  stem: string;
  instruction?: string;
  wait_seconds: number;
}

/** The `regenerate_stem` call: the piece's mix artifact, the stem, and the typed instruction (if any). */
export function regenerateArguments(
  piece: string | null | undefined,
  stems: readonly StemState[],
  stem: string,
  instruction: string,
  waitSeconds = 20,
): RegenerateArguments {
  if (!piece) {
    throw new MixError("artifact", "only a generated piece (generate_music) can have a stem regenerated");
  }
  if (!stems.some((s) => s.name === stem)) throw new MixError("stem", `no stem named ${JSON.stringify(stem)}`);
  const text = instruction.trim();
  if (text.length > INSTRUCTION_MAX) {
    throw new MixError("instruction", `the instruction is ${text.length} characters; at most ${INSTRUCTION_MAX}`);
  }
  const args: RegenerateArguments = { artifact: piece, stem, wait_seconds: clamp(waitSeconds, 0, 25) };
  if (text) args.instruction = text;
  return args;
}

// -- where the stems come from ------------------------------------------------------------------------------
export interface StemSource {
  /** stem name -> artifact id, in display order */
  stems: [string, string][];
  /** the generated mix (for regenerate_stem and A/B); null for a separation */
  piece: string | null;
  /** the longest stem in seconds, when the result says (sizes the decoding) */
  durationS?: number | null;
}

function stemMap(value: unknown): [string, string][] {
  if (!value || typeof value !== "object" || Array.isArray(value)) return [];
  return Object.entries(value as Record<string, unknown>).filter(
    (e): e is [string, string] => typeof e[1] === "string" && e[1].length > 0,
  );
}

/**
 * Stems of a finished job (generate_music, regenerate_stem, add_stem, separate_stems) or of a mix
 * artifact whose meta lists them. Null when there are none.
 */
export function stemsFromJob(job: JobView | null | undefined): StemSource | null {
  if (!job) return null;
  const result = job.result ?? {};
  let stems = stemMap(result["stems"]);
  if (stems.length === 0) {
    stems = job.artifacts
      .filter((a) => a.kind === "stem" && typeof a.meta?.["stem"] === "string")
      .map((a): [string, string] => [a.meta["stem"] as string, a.artifact_id]);
  }
  if (stems.length === 0) return null;
  const mix = result["mix_artifact_id"];
  // A composer piece (has an arrangement) can regenerate stems; a separation or MusicGen mix cannot.
  const piece = typeof mix === "string" && result["arrangement_artifact_id"] ? mix : null;
  const durations = [result["duration_s"], ...job.artifacts.filter((a) => a.kind === "stem").map((a) => a.meta?.["duration_s"])];
  const known = durations.filter((d): d is number => typeof d === "number" && d > 0);
  return { stems, piece, durationS: known.length ? Math.max(...known) : null };
}

export function stemsFromArtifact(art: ArtifactView | null | undefined): StemSource | null {
  if (!art) return null;
  const stems = stemMap(art.meta?.["stems"]);
  if (stems.length === 0) return null;
  const d = art.meta?.["duration_s"];
  return { stems, piece: art.meta?.["arrangement_id"] ? art.artifact_id : null, durationS: typeof d === "number" && d > 0 ? d : null };
}

// -- decoding budget ----------------------------------------------------------------------------------------
/**
 * Decoded audio is float32 per channel: a 3-minute stereo stem at 48 kHz is ~66 MB, and a long piece with
 * many stems would exhaust a chat host's iframe. The mixer decodes at the highest of these rates that keeps
 * all stems under the budget (the server's remix still renders at full quality).
 */
export const DECODE_BUDGET_BYTES = 512 * 1024 * 1024;
const RATES = [48000, 44100, 32000, 24000, 22050, 16000];

/** Sample rate to decode `stems` stems of `durationS` seconds at; null when even 16 kHz does not fit. */
export function mixerSampleRate(stems: number, durationS: number | null | undefined, budget = DECODE_BUDGET_BYTES): number | null {
  if (!durationS || durationS <= 0 || stems <= 0) return RATES[0]!;
  for (const rate of RATES) if (stems * durationS * rate * 2 * 4 <= budget) return rate;
  return null;
}

// -- loop region --------------------------------------------------------------------------------------------
/** A usable loop region inside [0, duration], or null (loop off) when the inputs do not make one. */
export function loopRegion(start: number, end: number, duration: number): { start: number; end: number } | null {
  if (!Number.isFinite(start) || !Number.isFinite(end) || !(duration > 0)) return null;
  const s = clamp(start, 0, duration);
  const e = clamp(end, 0, duration);
  if (e - s < 0.05) return null; // shorter than 50 ms: not a loop anyone can hear
  return { start: s, end: e };
}

/** Playback position after `elapsed` seconds from `offset`, wrapping inside a loop region. */
export function positionAt(
  offset: number,
  elapsed: number,
  duration: number,
  loop: { start: number; end: number } | null,
): number {
  const pos = offset + Math.max(0, elapsed);
  if (loop && offset < loop.end && pos >= loop.end) {
    const len = loop.end - loop.start;
    return loop.start + ((pos - loop.start) % len);
  }
  return Math.min(pos, duration);
}
