/**
 * Web Audio playback shared by the player (one track) and the stem mixer (one track per stem).
 *
 * Each track has a persistent GainNode and StereoPannerNode; play() makes one AudioBufferSourceNode per
 * track and starts them all at the same AudioContext time, so stems stay sample-aligned. Audio comes
 * from the host (resources/read of the artifact's compressed preview), decoded with decodeAudioData.
 */
import type { Host } from "../host";
import { positionAt } from "../logic/mixer";

let sharedContext: AudioContext | null = null;

export function audioContext(): AudioContext {
  if (!sharedContext || sharedContext.state === "closed") sharedContext = new AudioContext();
  return sharedContext;
}

export async function closeAudio(): Promise<void> {
  const ctx = sharedContext;
  sharedContext = null;
  if (ctx && ctx.state !== "closed") await ctx.close().catch(() => undefined);
}

export interface LoadedAudio {
  artifactId: string;
  buffer: AudioBuffer;
  bytes: Uint8Array;
  mimeType: string;
  /** "preview": the compressed preview resource; "content": the original file (preview unavailable) */
  source: "preview" | "content";
}

const cache = new Map<string, Promise<LoadedAudio>>();
/** Decoded audio is large (a 3-minute stereo stem is ~70 MB of float samples): keep only the latest few. */
const CACHE_MAX = 12;

/**
 * An artifact's audio, decoded. Reads echotune://artifacts/{id}/preview (small, compressed); if the
 * server cannot give a preview, falls back to the original content. Cached per artifact.
 */
export function loadAudio(host: Host, artifactId: string, ctx: BaseAudioContext = audioContext()): Promise<LoadedAudio> {
  const key = `${ctx.sampleRate}:${artifactId}`; // decoded at the context's rate
  let p = cache.get(key);
  if (!p) {
    p = (async () => {
      let blob;
      let source: LoadedAudio["source"] = "preview";
      try {
        blob = await host.readBlob(`echotune://artifacts/${artifactId}/preview`);
      } catch (previewErr) {
        source = "content";
        try {
          blob = await host.readBlob(`echotune://artifacts/${artifactId}/content`);
        } catch {
          throw previewErr;
        }
      }
      // decodeAudioData detaches the buffer it is given: hand it a copy and keep the bytes for download.
      const copy = blob.bytes.slice().buffer;
      const buffer = await ctx.decodeAudioData(copy);
      return { artifactId, buffer, bytes: blob.bytes, mimeType: blob.mimeType, source };
    })();
    cache.set(key, p);
    p.catch(() => cache.delete(key)); // a failed read may be retried
    while (cache.size > CACHE_MAX) cache.delete(cache.keys().next().value!);
  } else {
    cache.delete(key); // most recently used goes last
    cache.set(key, p);
  }
  return p;
}

/** Min/max per pixel column over all channels, for drawing a waveform. */
export function peaks(channels: readonly Float32Array[], columns: number): { min: Float32Array; max: Float32Array } {
  const n = channels[0]?.length ?? 0;
  const min = new Float32Array(columns);
  const max = new Float32Array(columns);
  if (n === 0 || columns <= 0) return { min, max };
  for (let c = 0; c < columns; c++) {
    const a = Math.floor((c * n) / columns);
    const b = Math.max(a + 1, Math.floor(((c + 1) * n) / columns));
    let lo = 1;
    let hi = -1;
    for (const ch of channels) {
      for (let i = a; i < b && i < n; i++) {
        const v = ch[i]!;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
      }
    }
    min[c] = lo > hi ? 0 : lo;
    max[c] = lo > hi ? 0 : hi;
  }
  return { min, max };
}

interface Track {
  buffer: AudioBuffer;
  gain: GainNode;
  pan: StereoPannerNode;
  source: AudioBufferSourceNode | null;
}

/** The player heard now: starting another one pauses it, so two views never play over each other. */
let active: SyncPlayer | null = null;

/** Several buffers played in lock-step with per-track gain and pan, a loop region and seeking. */
export class SyncPlayer {
  private tracks = new Map<string, Track>();
  private startedAt = 0; // context time at which `offset` is heard
  private offset = 0;
  private _playing = false;
  private loop: { start: number; end: number } | null = null;
  private generation = 0;
  /** playback stopped by itself: the audio ended, or another player started */
  onEnded: (() => void) | null = null;

  constructor(private readonly ctx: AudioContext = audioContext()) {}

  setTracks(entries: { name: string; buffer: AudioBuffer }[]): void {
    const wasPlaying = this._playing;
    const at = this.currentTime();
    this.stopSources();
    for (const t of this.tracks.values()) {
      t.gain.disconnect();
      t.pan.disconnect();
    }
    this.tracks.clear();
    for (const { name, buffer } of entries) {
      const gain = this.ctx.createGain();
      const pan = this.ctx.createStereoPanner();
      gain.connect(pan).connect(this.ctx.destination);
      this.tracks.set(name, { buffer, gain, pan, source: null });
    }
    this.offset = Math.min(at, this.duration);
    if (wasPlaying) void this.play();
  }

  get duration(): number {
    let d = 0;
    for (const t of this.tracks.values()) d = Math.max(d, t.buffer.duration);
    return d;
  }

  get playing(): boolean {
    return this._playing;
  }

  currentTime(): number {
    if (!this._playing) return this.offset;
    return positionAt(this.offset, this.ctx.currentTime - this.startedAt, this.duration, this.loop);
  }

  setGain(name: string, linear: number): void {
    const t = this.tracks.get(name);
    if (t) t.gain.gain.setTargetAtTime(linear, this.ctx.currentTime, 0.01);
  }

  setPan(name: string, pan: number): void {
    const t = this.tracks.get(name);
    if (t) t.pan.pan.setTargetAtTime(pan, this.ctx.currentTime, 0.01);
  }

  /** Set instantly (before playing): no ramp from the previous value. */
  setLevels(gains: Record<string, number>, pans: Record<string, number> = {}): void {
    for (const [name, t] of this.tracks) {
      t.gain.gain.value = gains[name] ?? 1;
      t.pan.pan.value = pans[name] ?? 0;
    }
  }

  setLoop(loop: { start: number; end: number } | null): void {
    const at = this.currentTime();
    this.loop = loop;
    if (this._playing) {
      this.offset = at;
      void this.play();
    }
  }

  async play(from?: number): Promise<void> {
    if (active && active !== this && active.playing) {
      active.pause();
      active.onEnded?.();
    }
    active = this;
    if (this.ctx.state === "suspended") await this.ctx.resume();
    const start = from ?? this.currentTime();
    this.stopSources();
    const dur = this.duration;
    if (dur <= 0) return;
    let offset = Math.min(Math.max(0, start), dur);
    if (this.loop && (offset < this.loop.start || offset >= this.loop.end)) offset = this.loop.start;
    if (!this.loop && offset >= dur - 0.01) offset = 0; // at the end: play again from the start
    const when = this.ctx.currentTime + 0.05; // a little ahead so every source starts on the same frame
    const gen = ++this.generation;
    let longest: AudioBufferSourceNode | null = null;
    let longestDur = -1;
    for (const t of this.tracks.values()) {
      const src = this.ctx.createBufferSource();
      src.buffer = t.buffer;
      if (this.loop) {
        src.loop = true;
        src.loopStart = this.loop.start;
        src.loopEnd = Math.min(this.loop.end, t.buffer.duration);
      }
      src.connect(t.gain);
      if (offset < t.buffer.duration || this.loop) src.start(when, Math.min(offset, t.buffer.duration));
      t.source = src;
      if (t.buffer.duration > longestDur) {
        longest = src;
        longestDur = t.buffer.duration;
      }
    }
    if (longest) {
      longest.onended = () => {
        if (gen !== this.generation || !this._playing) return; // stopped or restarted on purpose
        this._playing = false;
        this.offset = 0;
        this.onEnded?.();
      };
    }
    this.offset = offset;
    this.startedAt = when;
    this._playing = true;
  }

  pause(): void {
    if (!this._playing) return;
    this.offset = this.currentTime();
    this._playing = false;
    this.stopSources();
  }

  seek(time: number): void {
    const t = Math.min(Math.max(0, time), this.duration);
    if (this._playing) void this.play(t);
    else this.offset = t;
  }

  dispose(): void {
    if (active === this) active = null;
    this._playing = false;
    this.stopSources();
    for (const t of this.tracks.values()) {
      t.gain.disconnect();
      t.pan.disconnect();
    }
    this.tracks.clear();
  }

  private stopSources(): void {
    this.generation++;
    for (const t of this.tracks.values()) {
      if (t.source) {
        t.source.onended = null;
        try {
          t.source.stop();
        } catch {
          /* never started (offset past its end) */
        }
        t.source.disconnect();
        t.source = null;
      }
    }
  }
}
