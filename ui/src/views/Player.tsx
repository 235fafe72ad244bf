/**
 * Player: any audio artifact, played with Web Audio from the host-read preview. Play/pause, seek,
 * a loop region, a waveform drawn from the decoded samples, an A/B switch between two artifacts
 * (position kept, so the same bar is compared), and download.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import type { Host } from "../host";
import { loadAudio, peaks, SyncPlayer, type LoadedAudio } from "../audio/engine";
import { loopRegion } from "../logic/mixer";
import type { PlayerSource } from "../logic/route";
import { ErrorNote, errorText, formatTime, type PlayerHandle } from "../components";

const EXT: Record<string, string> = { "audio/ogg": "ogg", "audio/opus": "opus", "audio/mpeg": "mp3", "audio/wav": "wav", "audio/x-wav": "wav", "audio/flac": "flac" };

function downloadName(src: PlayerSource, mime: string): string {
  const base = (src.name ?? src.artifactId).replace(/\.[A-Za-z0-9]+$/, "");
  const ext = EXT[mime.split(";")[0]!.trim()] ?? "bin";
  return `${base}.${ext}`;
}

export function Player(props: {
  host: Host;
  sources: PlayerSource[];
  initial?: number;
  autoPlay?: boolean;
  /** the root element's test id; the standalone view uses view-player */
  testId?: string;
  title?: string;
}) {
  const { host, sources } = props;
  const [which, setWhich] = useState(Math.min(props.initial ?? 0, Math.max(0, sources.length - 1)));
  const [audio, setAudio] = useState<LoadedAudio | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [playing, setPlaying] = useState(false);
  const [time, setTime] = useState(0);
  const [loopOn, setLoopOn] = useState(false);
  const [loopStart, setLoopStart] = useState("0");
  const [loopEnd, setLoopEnd] = useState("");
  const [box, setBox] = useState({ w: 600, h: 90 }); // the canvas's pixel size
  const engine = useMemo(() => new SyncPlayer(), []);
  const canvas = useRef<HTMLCanvasElement>(null);
  const current = sources[which]!;
  const currentId = useRef(current.artifactId);
  currentId.current = current.artifactId;
  const autoPlayed = useRef(false);

  const handle: PlayerHandle = useMemo(
    () => ({ currentTime: () => engine.currentTime(), playing: () => engine.playing, artifactId: () => currentId.current }),
    [engine],
  );
  const expose = useCallback(() => {
    window.__echotunePlayer = handle;
  }, [handle]);

  useEffect(() => {
    expose();
    engine.onEnded = () => setPlaying(false);
    return () => {
      engine.dispose();
      if (window.__echotunePlayer === handle) delete window.__echotunePlayer;
    };
  }, [engine, expose, handle]);

  // Load the selected artifact; keep the playing state and position across an A/B switch.
  useEffect(() => {
    let live = true;
    setLoading(true);
    setError(null);
    loadAudio(host, current.artifactId)
      .then((a) => {
        if (!live) return;
        engine.setTracks([{ name: "main", buffer: a.buffer }]);
        setAudio(a);
        setLoading(false);
        setLoopEnd((v) => (v === "" ? a.buffer.duration.toFixed(2) : v));
        if (props.autoPlay && !autoPlayed.current) {
          autoPlayed.current = true;
          expose();
          void engine.play(0).then(() => setPlaying(engine.playing));
        }
      })
      .catch((e) => {
        if (!live) return;
        setLoading(false);
        setError(`could not load ${current.artifactId}: ${errorText(e)}`);
      });
    return () => {
      live = false;
    };
  }, [host, current.artifactId, engine, expose, props.autoPlay]);

  const duration = audio?.buffer.duration ?? 0;
  const region = loopOn ? loopRegion(Number(loopStart), Number(loopEnd), duration) : null;
  useEffect(() => engine.setLoop(region), [engine, region?.start, region?.end]); // eslint-disable-line react-hooks/exhaustive-deps

  // Time display and playhead: a bounded ticker only while playing.
  useEffect(() => {
    if (!playing) {
      setTime(engine.currentTime());
      return;
    }
    const id = window.setInterval(() => setTime(engine.currentTime()), 100);
    return () => window.clearInterval(id);
  }, [playing, engine]);

  const wave = useMemo(() => {
    if (!audio) return null;
    const chans: Float32Array[] = [];
    for (let c = 0; c < audio.buffer.numberOfChannels; c++) chans.push(audio.buffer.getChannelData(c));
    return peaks(chans, Math.min(2000, box.w));
  }, [audio, box.w]);

  // Draw at the canvas's displayed size (times devicePixelRatio), so the waveform stays sharp at any width.
  useEffect(() => {
    const cv = canvas.current;
    if (!cv || typeof ResizeObserver === "undefined") return;
    const ro = new ResizeObserver(() => {
      const dpr = window.devicePixelRatio || 1;
      const w = Math.max(100, Math.round(cv.clientWidth * dpr));
      const h = Math.max(30, Math.round(cv.clientHeight * dpr));
      setBox((b) => (b.w === w && b.h === h ? b : { w, h }));
    });
    ro.observe(cv);
    return () => ro.disconnect();
  }, []);

  useEffect(() => {
    const cv = canvas.current;
    const g = cv?.getContext("2d");
    if (!cv || !g) return;
    const w = cv.width;
    const h = cv.height;
    const css = getComputedStyle(cv);
    g.clearRect(0, 0, w, h);
    if (region && duration > 0) {
      g.fillStyle = css.getPropertyValue("--loop-fill") || "rgba(90,140,255,0.18)";
      g.fillRect((region.start / duration) * w, 0, ((region.end - region.start) / duration) * w, h);
    }
    if (wave) {
      g.fillStyle = css.getPropertyValue("--wave") || "#5a8cff";
      const n = wave.min.length;
      for (let i = 0; i < n; i++) {
        const x = (i / n) * w;
        const y1 = ((1 - wave.max[i]!) / 2) * h;
        const y2 = ((1 - wave.min[i]!) / 2) * h;
        g.fillRect(x, y1, Math.max(1, w / n), Math.max(1, y2 - y1));
      }
    }
    if (duration > 0) {
      g.fillStyle = css.getPropertyValue("--playhead") || "#e5484d";
      g.fillRect((time / duration) * w - 1, 0, 2, h);
    }
  }, [wave, time, duration, region?.start, region?.end, box]); // eslint-disable-line react-hooks/exhaustive-deps

  const toggle = async () => {
    expose();
    if (engine.playing) engine.pause();
    else await engine.play();
    setPlaying(engine.playing);
    setTime(engine.currentTime());
  };

  const seek = (t: number) => {
    engine.seek(t);
    setTime(engine.currentTime());
  };

  const blobUrl = useMemo(() => (audio ? URL.createObjectURL(new Blob([audio.bytes.slice()], { type: audio.mimeType })) : null), [audio]);
  useEffect(() => () => {
    if (blobUrl) URL.revokeObjectURL(blobUrl);
  }, [blobUrl]);

  const hostDownload = async (e: React.MouseEvent) => {
    // Prefer the host's download (the original file, and sandboxed iframes may not save blob links).
    if (!current.contentUri) return;
    e.preventDefault();
    try {
      const ok = await host.download(current.contentUri, current.name ?? current.artifactId, current.mediaType ?? "application/octet-stream");
      if (!ok && blobUrl) {
        const a = document.createElement("a");
        a.href = blobUrl;
        a.download = downloadName(current, audio?.mimeType ?? "");
        a.click();
      }
    } catch (err) {
      setError(`download failed: ${errorText(err)}`);
    }
  };

  return (
    <section className="player" data-testid={props.testId} aria-label={props.title ?? "Player"} data-artifact-id={current.artifactId}>
      <header className="row">
        <h2>{props.title ?? current.name ?? current.artifactId}</h2>
        <span className="muted">{current.artifactId}</span>
        {audio && audio.source === "content" ? <span className="muted">(original file; no preview)</span> : null}
      </header>
      <canvas
        ref={canvas}
        data-testid="waveform"
        className="waveform"
        width={box.w}
        height={box.h}
        role="img"
        aria-label={`waveform of ${current.name ?? current.artifactId}`}
        onClick={(e) => {
          const r = e.currentTarget.getBoundingClientRect();
          if (duration > 0) seek(((e.clientX - r.left) / r.width) * duration);
        }}
      />
      <div className="row transport">
        <button
          type="button"
          data-testid="play-toggle"
          aria-pressed={playing}
          aria-label={playing ? "Pause" : "Play"}
          disabled={!audio}
          onClick={() => void toggle()}
        >
          {playing ? "❚❚ Pause" : "▶ Play"}
        </button>
        <input
          type="range"
          data-testid="seek"
          aria-label="Position (seconds)"
          min={0}
          max={duration || 0}
          step={0.01}
          value={Math.min(time, duration || 0)}
          disabled={!audio}
          onChange={(e) => seek(Number(e.currentTarget.value))}
        />
        <span className="time" aria-live="off">
          {formatTime(time)} / {formatTime(duration)}
        </span>
      </div>
      <div className="row">
        <button type="button" data-testid="loop-toggle" aria-pressed={loopOn} onClick={() => setLoopOn((v) => !v)} disabled={!audio}>
          Loop {loopOn ? "on" : "off"}
        </button>
        <label>
          from
          <input type="number" data-testid="loop-start" aria-label="Loop start (seconds)" min={0} max={duration} step={0.1} value={loopStart} onChange={(e) => setLoopStart(e.currentTarget.value)} />
        </label>
        <label>
          to
          <input type="number" data-testid="loop-end" aria-label="Loop end (seconds)" min={0} max={duration} step={0.1} value={loopEnd} onChange={(e) => setLoopEnd(e.currentTarget.value)} />
        </label>
        {loopOn && !region ? <span className="muted">set an end after the start to loop</span> : null}
        {sources.length > 1 ? (
          <button
            type="button"
            data-testid="ab-toggle"
            aria-pressed={which === 1}
            aria-label={`A/B: now ${which === 0 ? "A" : "B"} (${current.label}); switch to ${which === 0 ? "B" : "A"} (${sources[1 - which]!.label})`}
            onClick={() => {
              expose();
              setWhich((w) => 1 - w);
            }}
          >
            A/B: {which === 0 ? "A" : "B"} · {current.label}
          </button>
        ) : null}
        {blobUrl ? (
          <a
            data-testid="download"
            className="button"
            href={blobUrl}
            download={downloadName(current, audio?.mimeType ?? "")}
            onClick={(e) => void hostDownload(e)}
          >
            ⤓ Download
          </a>
        ) : null}
      </div>
      {loading ? <p className="muted" role="status">Loading audio…</p> : null}
      <ErrorNote error={error} />
    </section>
  );
}
