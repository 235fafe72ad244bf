/**
 * Stem mixer: every stem of a piece (or of a separation) with gain, mute, solo and pan, played in sync
 * with Web Audio. "Apply" renders the same settings on the server with `remix` and plays the new mix;
 * "Regenerate" re-composes one stem with `regenerate_stem` and the typed instruction.
 */
import { useEffect, useMemo, useRef, useState } from "react";
import type { Host } from "../host";
import { audioContext, loadAudio, SyncPlayer } from "../audio/engine";
import {
  effectiveGains,
  GAIN_MAX_DB,
  GAIN_MIN_DB,
  INSTRUCTION_MAX,
  isAudible,
  loopRegion,
  MixError,
  mixerSampleRate,
  newStem,
  regenerateArguments,
  remixArguments,
  setGain,
  setPan,
  toggleMute,
  toggleSolo,
  type StemSource,
  type StemState,
} from "../logic/mixer";
import { isJobView, mixOf, pollJob } from "../logic/job";
import type { JobView } from "../types";
import { Player } from "./Player";
import { ErrorNote, errorText, formatTime } from "../components";
import type { Navigate } from "../nav";

async function runJob(host: Host, tool: string, args: Record<string, unknown>, signal: AbortSignal, onUpdate: (j: JobView) => void): Promise<JobView> {
  const first = await host.callTool(tool, args, 60_000);
  if (!isJobView(first.structured)) throw new Error(`${tool} returned no job`);
  onUpdate(first.structured);
  return pollJob(
    async (a) => {
      const r = await host.callTool("get_job", a, 30_000);
      if (!isJobView(r.structured)) throw new Error("get_job returned no job");
      return r.structured;
    },
    first.structured.job_id,
    { signal, onUpdate },
  );
}

/** What the remix applied, in words: the server's own report when it gives one, else what was sent. */
function mixSummary(report: unknown, args: ReturnType<typeof remixArguments>): string {
  const r = (report ?? {}) as { playing?: string[]; silenced?: Record<string, string>; ignored?: string[] };
  const gains = Object.entries(args.gains_db ?? {}).map(([k, v]) => `${k} ${v > 0 ? "+" : ""}${v} dB`);
  const pans = Object.entries(args.pan ?? {}).map(([k, v]) => `${k} ${v}`);
  const parts = [
    r.playing ? `playing ${r.playing.join(", ")}` : null,
    r.silenced && Object.keys(r.silenced).length
      ? `left out ${Object.entries(r.silenced).map(([k, why]) => `${k} (${why})`).join(", ")}`
      : args.mute?.length ? `muted ${args.mute.join(", ")}` : null,
    gains.length ? `gains ${gains.join(", ")}` : null,
    pans.length ? `pan ${pans.join(", ")}` : null,
    r.ignored?.length ? `ignored ${r.ignored.join(", ")}` : null,
  ].filter(Boolean);
  return parts.length ? `Applied: ${parts.join("; ")}.` : "Applied: all stems at 0 dB, centred.";
}

export function Mixer(props: { host: Host; source: StemSource; navigate: Navigate }) {
  const { host, navigate } = props;
  const [source, setSource] = useState(props.source);
  const [stems, setStems] = useState<StemState[]>(() => props.source.stems.map(([n, id]) => newStem(n, id)));
  const [loaded, setLoaded] = useState(0);
  const [ready, setReady] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [playing, setPlaying] = useState(false);
  const [time, setTime] = useState(0);
  const [duration, setDuration] = useState(0);
  const [loopOn, setLoopOn] = useState(false);
  const [loopStart, setLoopStart] = useState("0");
  const [loopEnd, setLoopEnd] = useState("");
  const [busy, setBusy] = useState<string | null>(null);
  const [mix, setMix] = useState<{ id: string; summary: string } | null>(null);
  const [instruction, setInstruction] = useState("");
  const [regenerated, setRegenerated] = useState<{ stem: string; before: string; after: string; message: string } | null>(null);
  // Long pieces with many stems are decoded at a lower rate so they fit in memory (null: they cannot).
  const rate = mixerSampleRate(props.source.stems.length, props.source.durationS);
  const ctx = useMemo(() => {
    if (rate === null) return null;
    const shared = audioContext();
    return rate >= shared.sampleRate ? shared : new AudioContext({ sampleRate: rate });
  }, [rate]);
  const engine = useMemo(() => (ctx ? new SyncPlayer(ctx) : null), [ctx]);
  const abort = useRef(new AbortController());

  useEffect(() => {
    if (!engine) return;
    engine.onEnded = () => setPlaying(false);
    const ctl = abort.current;
    return () => {
      ctl.abort();
      engine.dispose();
      if (ctx && ctx !== audioContext()) void ctx.close().catch(() => undefined);
    };
  }, [engine, ctx]);

  // Decode every stem (in parallel), then hand them to the engine together so they start aligned.
  const ids = stems.map((s) => `${s.name}=${s.artifactId}`).join("&");
  useEffect(() => {
    if (!engine || !ctx) return;
    let live = true;
    setReady(false);
    setLoaded(0);
    Promise.all(
      stems.map((s) =>
        loadAudio(host, s.artifactId, ctx).then((a) => {
          if (live) setLoaded((n) => n + 1);
          return { name: s.name, buffer: a.buffer };
        }),
      ),
    )
      .then((tracks) => {
        if (!live) return;
        engine.setTracks(tracks);
        engine.setLevels(effectiveGains(stems), Object.fromEntries(stems.map((s) => [s.name, s.pan])));
        setDuration(engine.duration);
        setLoopEnd((v) => (v === "" ? engine.duration.toFixed(2) : v));
        setReady(true);
      })
      .catch((e) => live && setError(`could not load the stems: ${errorText(e)}`));
    return () => {
      live = false;
    };
  }, [ids, host, engine, ctx]); // eslint-disable-line react-hooks/exhaustive-deps

  // Live levels: what the GainNodes play is what Apply will send.
  useEffect(() => {
    if (!engine) return;
    const gains = effectiveGains(stems);
    for (const s of stems) {
      engine.setGain(s.name, gains[s.name]!);
      engine.setPan(s.name, s.pan);
    }
  }, [stems, engine]);

  const region = loopOn ? loopRegion(Number(loopStart), Number(loopEnd), duration) : null;
  useEffect(() => engine?.setLoop(region), [engine, region?.start, region?.end]); // eslint-disable-line react-hooks/exhaustive-deps

  useEffect(() => {
    if (!playing || !engine) return;
    const id = window.setInterval(() => setTime(engine.currentTime()), 100);
    return () => window.clearInterval(id);
  }, [playing, engine]);

  const toggle = async () => {
    if (!engine) return;
    if (engine.playing) engine.pause();
    else await engine.play();
    setPlaying(engine.playing);
    setTime(engine.currentTime());
  };

  const apply = async () => {
    setError(null);
    let args;
    try {
      args = remixArguments(stems);
    } catch (e) {
      setError(e instanceof MixError ? `${e.field}: ${e.message}` : errorText(e));
      return;
    }
    setBusy("remixing…");
    setMix(null);
    try {
      const job = await runJob(host, "remix", { ...args }, abort.current.signal, (j) => setBusy(`remix ${j.status}: ${j.message || ""} ${Math.round(j.progress * 100)}%`));
      if (job.status !== "succeeded") throw new Error(`remix ${job.status}${job.error ? `: ${job.error}` : ""}`);
      const id = mixOf(job);
      if (!id) throw new Error("remix finished without a mix artifact");
      engine?.pause();
      setPlaying(false);
      setMix({ id, summary: mixSummary(job.result?.["mix"], args) });
    } catch (e) {
      setError(`Apply failed: ${errorText(e)}`);
    } finally {
      setBusy(null);
    }
  };

  const regenerate = async (stem: string) => {
    setError(null);
    let args;
    try {
      args = regenerateArguments(source.piece, stems, stem, instruction);
    } catch (e) {
      setError(e instanceof MixError ? `${e.field}: ${e.message}` : errorText(e));
      return;
    }
    setBusy(`regenerating ${stem}…`);
    try {
      const job = await runJob(host, "regenerate_stem", { ...args }, abort.current.signal, (j) =>
        setBusy(`regenerate ${stem} ${j.status}: ${j.message || ""} ${Math.round(j.progress * 100)}%`),
      );
      if (job.status !== "succeeded") throw new Error(`regenerate_stem ${job.status}${job.error ? `: ${job.error}` : ""}`);
      const newStems = (job.result?.["stems"] ?? {}) as Record<string, string>;
      const newMix = mixOf(job);
      const before = stems.find((s) => s.name === stem)!.artifactId;
      const after = newStems[stem] ?? before;
      const instr = job.result?.["instruction"] as { understood?: unknown[]; ignored?: unknown[] } | undefined;
      const ignored = (instr?.ignored ?? []).map((x) => (typeof x === "string" ? x : JSON.stringify(x)));
      setStems((cur) => cur.map((s) => (newStems[s.name] ? { ...s, artifactId: newStems[s.name]! } : s)));
      setSource((cur) => ({ ...cur, stems: Object.entries(newStems), piece: newMix ?? cur.piece }));
      setRegenerated({ stem, before, after, message: ignored.length ? `Ignored: ${ignored.join("; ")}` : "" });
    } catch (e) {
      setError(`Regenerate failed: ${errorText(e)}`);
    } finally {
      setBusy(null);
    }
  };

  return (
    <main data-testid="view-mixer" className="view" aria-busy={!ready || !!busy}>
      <h1>Stem mixer</h1>
      {rate === null ? (
        <p role="status" data-testid="mixer-too-long">
          {stems.length} stems of {Math.round(props.source.durationS ?? 0)} s are too long to play in the browser; set gains,
          mutes and pans and Apply: the server renders the mix.
        </p>
      ) : !ready ? (
        <p role="status" className="muted">
          Loading stems {loaded}/{stems.length}…
        </p>
      ) : ctx && ctx.sampleRate < 44100 ? (
        <p className="muted">Playing at {ctx.sampleRate / 1000} kHz to fit in memory; Apply renders at full quality.</p>
      ) : null}
      <div className="row transport">
        <button type="button" data-testid="mixer-play" aria-pressed={playing} aria-label={playing ? "Pause stems" : "Play stems"} disabled={!ready} onClick={() => void toggle()}>
          {playing ? "❚❚ Pause" : "▶ Play"}
        </button>
        <input
          type="range"
          data-testid="mixer-seek"
          aria-label="Position (seconds)"
          min={0}
          max={duration || 0}
          step={0.01}
          value={Math.min(time, duration)}
          disabled={!ready}
          onChange={(e) => {
            engine?.seek(Number(e.currentTarget.value));
            setTime(engine?.currentTime() ?? 0);
          }}
        />
        <span className="time">
          {formatTime(time)} / {formatTime(duration)}
        </span>
        <button type="button" data-testid="mixer-loop-toggle" aria-pressed={loopOn} onClick={() => setLoopOn((v) => !v)}>
          Loop {loopOn ? "on" : "off"}
        </button>
        <label>
          from
          <input type="number" data-testid="mixer-loop-start" aria-label="Loop start (seconds)" step={0.1} min={0} value={loopStart} onChange={(e) => setLoopStart(e.currentTarget.value)} />
        </label>
        <label>
          to
          <input type="number" data-testid="mixer-loop-end" aria-label="Loop end (seconds)" step={0.1} min={0} value={loopEnd} onChange={(e) => setLoopEnd(e.currentTarget.value)} />
        </label>
      </div>
      <ul className="stems" aria-label="Stems">
        {stems.map((s) => {
          const audible = isAudible(s, stems);
          return (
            <li key={s.name} data-testid={`stem-${s.name}`} className={audible ? "stem" : "stem silent"} role="group" aria-label={`${s.name} stem`}>
              <span className="stem-name">{s.name}</span>
              <label>
                gain
                <input
                  type="range"
                  data-testid={`gain-${s.name}`}
                  aria-label={`${s.name} gain (dB)`}
                  min={GAIN_MIN_DB}
                  max={GAIN_MAX_DB}
                  step={0.5}
                  value={s.gainDb}
                  aria-valuetext={s.gainDb <= GAIN_MIN_DB ? "silent" : `${s.gainDb} dB`}
                  onChange={(e) => setStems((cur) => setGain(cur, s.name, Number(e.currentTarget.value)))}
                />
                <output>{s.gainDb <= GAIN_MIN_DB ? "-∞" : `${s.gainDb > 0 ? "+" : ""}${s.gainDb}`} dB</output>
              </label>
              <span className="ms">
              <button type="button" data-testid={`mute-${s.name}`} aria-pressed={s.mute} aria-label={`Mute ${s.name}`} onClick={() => setStems((cur) => toggleMute(cur, s.name))}>
                M
              </button>
              <button type="button" data-testid={`solo-${s.name}`} aria-pressed={s.solo} aria-label={`Solo ${s.name}`} onClick={() => setStems((cur) => toggleSolo(cur, s.name))}>
                S
              </button>
              </span>
              <label>
                pan
                <input
                  type="range"
                  data-testid={`pan-${s.name}`}
                  aria-label={`${s.name} pan (left -1 to right +1)`}
                  min={-1}
                  max={1}
                  step={0.05}
                  value={s.pan}
                  onChange={(e) => setStems((cur) => setPan(cur, s.name, Number(e.currentTarget.value)))}
                />
              </label>
              {source.piece ? (
                <button type="button" data-testid={`regenerate-${s.name}`} disabled={!!busy} onClick={() => void regenerate(s.name)} aria-label={`Regenerate ${s.name} with the instruction`}>
                  ↻ Regenerate
                </button>
              ) : null}
            </li>
          );
        })}
      </ul>
      <div className="row">
        {source.piece ? (
          <label className="grow">
            Instruction for Regenerate
            <input
              type="text"
              data-testid="regenerate-text"
              maxLength={INSTRUCTION_MAX}
              placeholder="e.g. busier drums, bass an octave lower"
              value={instruction}
              onChange={(e) => setInstruction(e.currentTarget.value)}
            />
          </label>
        ) : (
          <span className="muted">Separated stems: regenerate works on generated pieces only.</span>
        )}
        <button type="button" className="primary" data-testid="apply-mix" disabled={(!ready && rate !== null) || !!busy} onClick={() => void apply()}>
          Apply (remix)
        </button>
      </div>
      {busy ? (
        <p role="status" data-testid="mixer-busy">
          {busy}
        </p>
      ) : null}
      <ErrorNote error={error} />
      {regenerated ? (
        <p role="status" data-testid="regenerate-result">
          New {regenerated.stem} stem {regenerated.after}. {regenerated.message}{" "}
          <button
            type="button"
            data-testid="compare-stem"
            onClick={() =>
              navigate({
                view: "player",
                sources: [
                  { artifactId: regenerated.before, label: `${regenerated.stem} before` },
                  { artifactId: regenerated.after, label: `${regenerated.stem} after` },
                ],
                initial: 1,
              })
            }
          >
            Compare before/after
          </button>
        </p>
      ) : null}
      {mix ? (
        <section data-testid="mix-result" aria-label="New mix">
          <p>{mix.summary}</p>
          <Player
            key={mix.id}
            host={host}
            title="New mix"
            sources={[
              { artifactId: mix.id, label: "remix", name: `remix-${mix.id}` },
              ...(source.piece ? [{ artifactId: source.piece, label: "original" }] : []),
            ]}
          />
        </section>
      ) : null}
    </main>
  );
}
