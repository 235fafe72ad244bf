/**
 * The Web Audio engine against a recording stand-in for AudioContext (Node has no Web Audio): every
 * stem's source starts at the same context time and offset, gains/pans reach their nodes, the loop is
 * set on every source, and pause/seek keep the position.
 */
import { describe, expect, it } from "vitest";
import { peaks, SyncPlayer } from "../src/audio/engine";

interface FakeSource {
  buffer: { duration: number } | null;
  loop: boolean;
  loopStart: number;
  loopEnd: number;
  started: [number, number] | null;
  stopped: boolean;
  onended: (() => void) | null;
}

function fakeContext() {
  const sources: FakeSource[] = [];
  const param = (v: number) => ({ value: v, setTargetAtTime(x: number) { this.value = x; } });
  const node = <T extends object>(extra: T) => ({ ...extra, connect: (n: unknown) => n, disconnect() {} });
  const ctx = {
    currentTime: 10,
    state: "running",
    destination: {},
    resume: async () => undefined,
    createGain: () => node({ gain: param(1) }),
    createStereoPanner: () => node({ pan: param(0) }),
    createBufferSource() {
      const s: FakeSource = {
        buffer: null, loop: false, loopStart: 0, loopEnd: 0, started: null, stopped: false, onended: null,
      };
      const src = node({
        ...s,
        start(when: number, offset: number) { this.started = [when, offset]; },
        stop() { this.stopped = true; },
      });
      sources.push(src as unknown as FakeSource);
      return src;
    },
  };
  return { ctx, sources };
}

const buf = (duration: number) => ({ duration }) as unknown as AudioBuffer;

describe("SyncPlayer", () => {
  it("starts one source per stem at the same context time and offset", async () => {
    const { ctx, sources } = fakeContext();
    const p = new SyncPlayer(ctx as unknown as AudioContext);
    p.setTracks([{ name: "drums", buffer: buf(8) }, { name: "bass", buffer: buf(8) }, { name: "lead", buffer: buf(6) }]);
    await p.play(2);
    expect(sources).toHaveLength(3);
    const starts = sources.map((s) => s.started);
    expect(new Set(starts.map((s) => s![0])).size).toBe(1);
    expect(starts.every((s) => s![1] === 2)).toBe(true);
    expect(starts[0]![0]).toBeGreaterThan(ctx.currentTime); // scheduled a little ahead
    expect(p.playing).toBe(true);
    ctx.currentTime += 1.55; // 1.5 s after the scheduled start
    expect(p.currentTime()).toBeCloseTo(3.5, 5);
  });

  it("pause keeps the position and play resumes from it with fresh sources", async () => {
    const { ctx, sources } = fakeContext();
    const p = new SyncPlayer(ctx as unknown as AudioContext);
    p.setTracks([{ name: "mix", buffer: buf(10) }]);
    await p.play(0);
    ctx.currentTime += 2.05;
    p.pause();
    expect(p.playing).toBe(false);
    expect(sources[0]!.stopped).toBe(true);
    expect(p.currentTime()).toBeCloseTo(2, 5);
    await p.play();
    expect(sources[1]!.started![1]).toBeCloseTo(2, 5);
  });

  it("sets the loop on every source and starts inside it", async () => {
    const { ctx, sources } = fakeContext();
    const p = new SyncPlayer(ctx as unknown as AudioContext);
    p.setTracks([{ name: "a", buffer: buf(10) }, { name: "b", buffer: buf(10) }]);
    p.setLoop({ start: 4, end: 6 });
    await p.play(1); // outside the loop: starts at its start
    for (const s of sources) {
      expect([s.loop, s.loopStart, s.loopEnd]).toEqual([true, 4, 6]);
      expect(s.started![1]).toBe(4);
    }
    ctx.currentTime += 0.05 + 3; // 3 s later: wrapped once
    expect(p.currentTime()).toBeCloseTo(5, 5);
  });

  it("applies levels and ignores unknown stems", () => {
    const { ctx } = fakeContext();
    const p = new SyncPlayer(ctx as unknown as AudioContext);
    p.setTracks([{ name: "a", buffer: buf(1) }]);
    p.setLevels({ a: 0.25 }, { a: -0.5 });
    p.setGain("nope", 1);
    const track = (p as unknown as { tracks: Map<string, { gain: { gain: { value: number } }; pan: { pan: { value: number } } }> }).tracks.get("a")!;
    expect(track.gain.gain.value).toBe(0.25);
    expect(track.pan.pan.value).toBe(-0.5);
    p.setGain("a", 0);
    expect(track.gain.gain.value).toBe(0);
  });

  it("a natural end resets to the start; a stop does not report an end", async () => {
    const { ctx, sources } = fakeContext();
    const p = new SyncPlayer(ctx as unknown as AudioContext);
    let ended = 0;
    p.onEnded = () => ended++;
    p.setTracks([{ name: "a", buffer: buf(1) }]);
    await p.play(0);
    p.pause();
    expect(ended).toBe(0);
    await p.play(0.5);
    sources[1]!.onended!();
    expect(ended).toBe(1);
    expect(p.playing).toBe(false);
    expect(p.currentTime()).toBe(0);
  });
});

describe("one player at a time", () => {
  it("starting a player pauses the one playing and tells it", async () => {
    const { ctx } = fakeContext();
    const a = new SyncPlayer(ctx as unknown as AudioContext);
    const b = new SyncPlayer(ctx as unknown as AudioContext);
    let told = 0;
    a.onEnded = () => told++;
    a.setTracks([{ name: "x", buffer: buf(5) }]);
    b.setTracks([{ name: "y", buffer: buf(5) }]);
    await a.play(0);
    ctx.currentTime += 1.05;
    await b.play(0);
    expect(a.playing).toBe(false);
    expect(told).toBe(1);
    expect(a.currentTime()).toBeCloseTo(1, 5); // resumable where it was
    expect(b.playing).toBe(true);
  });
});

describe("peaks", () => {
  it("min/max per column over all channels", () => {
    const l = new Float32Array([0, 0.5, -0.25, 0.1, 0, 0, 0.9, -0.9]);
    const r = new Float32Array([0, -0.75, 0, 0, 0, 0.2, 0, 0]);
    const { min, max } = peaks([l, r], 2);
    expect(Array.from(min)).toEqual([-0.75, -0.9].map(Math.fround));
    expect(Array.from(max)).toEqual([0.5, 0.9].map(Math.fround));
  });
  it("no samples: flat", () => {
    expect(Array.from(peaks([new Float32Array(0)], 3).max)).toEqual([0, 0, 0]);
  });
});
