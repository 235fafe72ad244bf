"""Measure transcribe_to_midi's engine: note F1 (mir_eval) against the composer's own MIDI, and checks on real stems.

(a) Composer pieces: each piece is composed, every part rendered alone through FluidSynth (the same render
    generate_music uses), transcribed, and compared with the notes the composer wrote for that part:
    pitched parts with ``mir_eval.transcription`` (onset-only F1: onset within 50 ms and same pitch; with
    offsets: also the offset within 20 % of the note or 50 ms), drums per class (kick / snare / hi-hat, onset
    within 50 ms) after mapping the composer's GM notes onto the three classes the transcriber writes.
(b) The dev songs (../shared/data/separation/dev, CC0): they ship no MIDI, so there is no note ground truth.
    Their bass stems are checked against an independent monophonic pitch tracker (librosa pYIN): the share of
    pYIN's voiced frames where the transcription's lowest sounding note is the same pitch class (raw pitch
    agreement, mir_eval.melody, chroma). It is agreement between two methods, not accuracy. Drum stems report
    hits per class and per second. And the path a user takes from a mix (separate_stems' DSP fallback, then
    transcribe) is scored with note F1 against transcribing the true stem. The hold-out folder is never read.

Prints a table, then exactly one JSON line:
{"bench": "transcription", "composer": {...per part...}, "dev": {...}, "seconds": ...}
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from echotune_mcp.music import transcribe as tr  # noqa: E402

DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "separation" / "dev"
PROMPTS = ("funk groove in E minor", "lofi hip hop in A minor", "rock anthem in E major", "jazz trio ballad",
           "techno in G minor")
# composer GM drum notes -> the transcriber's three classes; toms and hand percussion are left out
DRUM_EVAL = {"kick": {35, 36}, "snare": {37, 38, 39, 40}, "hihat": {42, 44, 46, 49, 51, 52, 55, 57, 59}}
PITCHED_ROLES = ("bass", "lead", "chords", "pad", "arpeggio", "counter")


def note_f1(ref: list[tuple[float, float, int, int]], est: list[tuple[float, float, int, int]]) -> dict[str, float]:
    """mir_eval note F1, onset-only and with offsets (standard tolerances: 50 ms onset, 20 %/50 ms offset)."""
    import mir_eval

    def arr(notes):
        notes = [n for n in notes if n[1] > n[0]]
        iv = np.array([[n[0], n[1]] for n in notes], float).reshape(-1, 2)
        hz = np.array([440.0 * 2 ** ((n[2] - 69) / 12) for n in notes], float)
        return iv, hz

    (ri, rp), (ei, ep) = arr(ref), arr(est)
    if len(rp) == 0 or len(ep) == 0:
        return {"f1_onset": 0.0, "f1_offset": 0.0, "precision": 0.0, "recall": 0.0, "ref": len(rp), "est": len(ep)}
    p, r, f, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep, offset_ratio=None)
    _, _, f_off, _ = mir_eval.transcription.precision_recall_f1_overlap(ri, rp, ei, ep)
    return {"f1_onset": round(f, 3), "f1_offset": round(f_off, 3), "precision": round(p, 3), "recall": round(r, 3),
            "ref": len(rp), "est": len(ep)}


def drum_f1(ref: list[tuple[float, float, int, int]], est: list[tuple[float, float, int, int]]) -> dict[str, Any]:
    """Per-class onset F1 (50 ms window) and their sum over classes (micro F1)."""
    import mir_eval

    out: dict[str, Any] = {}
    tp = n_ref = n_est = 0
    for name, notes in DRUM_EVAL.items():
        r = np.array(sorted({round(n[0], 3) for n in ref if n[2] in notes}))
        e = np.array(sorted({round(n[0], 3) for n in est if n[2] == tr.DRUM_CLASSES[name]}))
        if r.size and e.size:
            f, p, rc = mir_eval.onset.f_measure(r, e, window=0.05)
            hits = int(round(rc * r.size))
        else:
            f = p = rc = 0.0
            hits = 0
        out[name] = {"f1": round(f, 3), "ref": int(r.size), "est": int(e.size)}
        tp, n_ref, n_est = tp + hits, n_ref + r.size, n_est + e.size
    out["f1_micro"] = round(2 * tp / (n_ref + n_est), 3) if n_ref + n_est else 0.0
    return out


def composer_case(prompt: str, seconds: float, seed: int, sr: int = 44100,
                  soundfont: Path | None = None) -> tuple[Any, dict[str, np.ndarray]]:
    """A composed piece and every part rendered alone (with ``soundfont``, else the composer's default)."""
    from echotune_mcp.music.composer import compose
    from echotune_mcp.music.params import resolve_params
    from echotune_mcp.music.render import render_stems

    arr = compose(resolve_params(prompt, duration_s=seconds, seed=seed))
    return arr, render_stems(arr, sr, soundfont=soundfont)


def eval_composer(prompts: tuple[str, ...], seconds: float, seed: int, threads: int,
                  soundfont: Path | None = None) -> dict[str, Any]:
    per_part: dict[str, list[dict[str, Any]]] = {}
    rows = []
    for prompt in prompts:
        arr, stems = composer_case(prompt, seconds, seed, soundfont=soundfont)
        for track in arr.tracks:
            audio = stems[track.name]
            t0 = time.perf_counter()
            if track.is_drum:
                est = tr.transcribe(audio, 44100, drums=True, opts=tr.Options(bpm=arr.bpm), stem="drums")
                score = drum_f1(track.notes, est.notes)
                key = "drums"
            else:
                lo, hi, _, _ = tr.stem_defaults(track.role if track.role == "bass" else None)
                est = tr.transcribe(audio, 44100, drums=False, opts=tr.Options(bpm=arr.bpm, min_pitch=lo, max_pitch=hi),
                                    stem=track.role, threads=threads)
                score = note_f1(track.notes, est.notes)
                key = track.role if track.role in PITCHED_ROLES else "other"
            dt = time.perf_counter() - t0
            score = {**score, "prompt": prompt, "part": track.name, "program": track.program,
                     "rtf": round(seconds / dt, 1)}
            per_part.setdefault(key, []).append(score)
            rows.append(score)
    summary: dict[str, Any] = {}
    for key, scores in per_part.items():
        if key == "drums":
            summary[key] = {"f1_micro": round(float(np.mean([s["f1_micro"] for s in scores])), 3),
                            **{c: round(float(np.mean([s[c]["f1"] for s in scores])), 3) for c in DRUM_EVAL},
                            "n": len(scores), "x_real_time": round(float(np.median([s["rtf"] for s in scores])), 1)}
        else:
            summary[key] = {"f1_onset": round(float(np.mean([s["f1_onset"] for s in scores])), 3),
                            "f1_offset": round(float(np.mean([s["f1_offset"] for s in scores])), 3),
                            "n": len(scores), "x_real_time": round(float(np.median([s["rtf"] for s in scores])), 1)}
    return {"summary": summary, "rows": rows}


def bass_agreement(samples: np.ndarray, sr: int, notes: list[tuple[float, float, int, int]]) -> dict[str, float]:
    """pYIN f0 of a bass stem vs the transcription's lowest sounding note per frame (pitch-class agreement)."""
    import librosa
    import mir_eval

    y = librosa.to_mono(samples.T) if samples.ndim == 2 else samples
    y = librosa.resample(y, orig_sr=sr, target_sr=22050)
    f0, voiced, _ = librosa.pyin(y, fmin=30, fmax=400, sr=22050, frame_length=2048, hop_length=512)
    times = librosa.times_like(f0, sr=22050, hop_length=512)
    ref = np.where(voiced, np.nan_to_num(f0), 0.0)
    est = np.zeros_like(ref)
    for i, t in enumerate(times):
        sounding = [n[2] for n in notes if n[0] <= t < n[1]]
        if sounding:
            est[i] = 440.0 * 2 ** ((min(sounding) - 69) / 12)
    rc, rv = mir_eval.melody.freq_to_voicing(ref)
    ec, ev = mir_eval.melody.freq_to_voicing(est)
    rcent, ecent = mir_eval.melody.hz2cents(rc), mir_eval.melody.hz2cents(ec)
    return {"raw_chroma_agreement": round(float(mir_eval.melody.raw_chroma_accuracy(rv, rcent, ev, ecent)), 3),
            "raw_pitch_agreement": round(float(mir_eval.melody.raw_pitch_accuracy(rv, rcent, ev, ecent)), 3),
            "voiced_frames": int(rv.sum())}


def separated_vs_true(song: str, threads: int) -> dict[str, Any]:
    """The mix -> separate_stems (dsp) -> transcribe path, scored against transcribing the true stem.

    Not accuracy either (the reference is itself a transcription), but it shows what separation costs a user who
    starts from a mix: note F1 of the separated bass / other against the same transcriber on the true stem.
    """
    import soundfile as sf

    from echotune_mcp.music.dsp_separation import separate_dsp

    mix, sr = sf.read(str(DEV / song / "mixture.flac"), dtype="float32", always_2d=True)
    sep = separate_dsp(mix, sr)
    out: dict[str, Any] = {}
    for stem in ("bass", "other"):
        true, _ = sf.read(str(DEV / song / f"{stem}.flac"), dtype="float32", always_2d=True)
        if np.sqrt(np.mean(true ** 2)) < 1e-4:
            continue
        lo, hi, _, _ = tr.stem_defaults(stem)
        opts = tr.Options(min_pitch=lo, max_pitch=hi)
        ref = tr.transcribe(true, sr, drums=False, opts=opts, stem=stem, threads=threads).notes
        est = tr.transcribe(sep[stem], sr, drums=False, opts=opts, stem=stem, threads=threads).notes
        out[stem] = note_f1(ref, est)
    return out


def eval_dev(threads: int) -> dict[str, Any]:
    import soundfile as sf

    if not DEV.is_dir():
        return {"skipped": f"{DEV} is absent"}
    out: dict[str, Any] = {}
    for song in sorted(p.name for p in DEV.iterdir() if p.is_dir()):
        res: dict[str, Any] = {}
        bass, sr = sf.read(str(DEV / song / "bass.flac"), dtype="float32")
        if np.sqrt(np.mean(bass ** 2)) > 1e-4:
            lo, hi, _, _ = tr.stem_defaults("bass")
            t = tr.transcribe(bass, sr, drums=False, opts=tr.Options(min_pitch=lo, max_pitch=hi), stem="bass",
                              threads=threads)
            res["bass"] = {"notes": len(t.notes), **bass_agreement(bass, sr, t.notes)}
        drums, sr = sf.read(str(DEV / song / "drums.flac"), dtype="float32")
        t = tr.transcribe(drums, sr, drums=True, opts=tr.Options(), stem="drums")
        dur = len(drums) / sr
        res["drums"] = {k: {"hits": v, "per_s": round(v / dur, 2)} for k, v in t.details["drum_counts"].items()}
        res["drums"]["bpm"] = round(t.bpm, 1)
        other, sr = sf.read(str(DEV / song / "other.flac"), dtype="float32")
        t = tr.transcribe(other, sr, drums=False, opts=tr.Options(), stem="other", threads=threads)
        res["other"] = {"notes": len(t.notes), "pitch_range": t.summary()["pitch_range"]}
        res["separated_vs_true_stem"] = separated_vs_true(song, threads)
        out[song] = res
    return out


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--soundfont", type=Path, default=None, help="render the composer pieces with this .sf2 "
                    "(default: the composer's own default)")
    ap.add_argument("--no-dev", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    comp = eval_composer(PROMPTS, args.seconds, args.seed, args.threads, args.soundfont)
    dev = {} if args.no_dev else eval_dev(args.threads)
    info = tr.backend_info()
    from echotune_mcp.music.render import default_soundfont

    soundfont = (args.soundfont or default_soundfont()).name
    print(f"transcription benchmark: {len(PROMPTS)} composer pieces x {args.seconds:g} s, seed {args.seed}; "
          f"{info['name']}, basic-pitch {info['basic_pitch']}; {cpu_name()}, {os.cpu_count()} cores, "
          f"{args.threads} inference thread(s), {time.strftime('%Y-%m-%d', time.gmtime())}, soundfont {soundfont}")
    print(f"{'part':<10}{'n':>4}{'F1 onset':>10}{'F1 +offset':>12}{'x real time':>13}")
    for key, s in comp["summary"].items():
        if key == "drums":
            print(f"{key:<10}{s['n']:>4}{s['f1_micro']:>10.3f}{'':>12}{s['x_real_time']:>13.1f}  kick {s['kick']:.3f} "
                  f"snare {s['snare']:.3f} hihat {s['hihat']:.3f}")
        else:
            print(f"{key:<10}{s['n']:>4}{s['f1_onset']:>10.3f}{s['f1_offset']:>12.3f}{s['x_real_time']:>13.1f}")
    for song, res in dev.items():
        print(f"dev {song}: {json.dumps(res)}")
    print(json.dumps({"bench": "transcription", "composer": comp["summary"], "dev": dev,
                      "backend": info["name"], "cpu": cpu_name(), "threads": args.threads, "soundfont": soundfont,
                      "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
