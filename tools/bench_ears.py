"""Measure the weight-free "ears": analyze_audio's key estimate and the classical (DSP) separation fallback.

Key: exact accuracy and the MIREX weighted score (1 exact, 0.5 a fifth away in the same mode, 0.3 the
relative, 0.2 the parallel, else 0) on
  (a) a synthetic set: composer pieces (music.params.resolve_params -> composer.compose ->
      pipeline.render_piece, the public path) over all 24 keys, two pieces per key, genres rotated, half
      rendered with TimGM6mb and half with FluidR3_GM where installed; 15 s each at 22.05 kHz; scored on the
      whole piece and on each half (7.5 s: less evidence). Ground truth = the key the composer was asked for.
      Rendered once and cached under $ECHOTUNE_EARS_CACHE (default /tmp/echotune_ears_cache), never committed.
  (b) the two dev songs (../shared/data/separation/dev, CC0), whole 20 s excerpts and 10 s halves, against
      the key the artist published in each song's README (Lithium G minor, Potassium C major; cited in
      tests/audio/test_analysis_real.py). The hold-out folder is never read.
"before" is the previous method, frozen here (max-normalised CQT chroma per frame, mean, Krumhansl-Kessler only).

Separation: bss_eval SDR (fast_bss_eval, 512-tap filter, i.e. the best scaled/filtered copy of the estimate)
per stem of the dev songs for the previous DSP masks ("before", frozen here), the current ones ("after") and
the mixture itself as the estimate ("mix": the scaled-mixture baseline), plus seconds of work per second of
audio (x real time).

    python tools/bench_ears.py               # everything
    python tools/bench_ears.py --only key    # or --only separation

Prints tables, then exactly one JSON line {"bench": "ears", ...}.
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

DEV = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "separation" / "dev"
PUBLISHED_KEYS = {"lithium": "G minor", "potassium": "C major"}
CACHE = Path(os.environ.get("ECHOTUNE_EARS_CACHE", "/tmp/echotune_ears_cache"))
SYNTH_SR, SYNTH_S = 22050, 15.0
FLUID_R3 = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
STEMS = ("drums", "bass", "other", "vocals")
# pinned (the composer's style list grows): the set stays comparable across composer versions
SYNTH_GENRES = ("ambient", "cinematic", "drum and bass", "funk", "house", "jazz", "lofi hip hop", "pop", "reggae",
                "rock", "synthwave", "techno")


# -- scoring -------------------------------------------------------------------------------------------
def mirex(tonic: int, mode: str, true_tonic: int, true_mode: str) -> float:
    """MIREX key score: exact 1, perfect fifth (either way, same mode) 0.5, relative 0.3, parallel 0.2."""
    if (tonic, mode) == (true_tonic, true_mode):
        return 1.0
    d = (tonic - true_tonic) % 12
    if mode == true_mode:
        return 0.5 if d in (5, 7) else 0.0
    if (mode, d) in (("minor", 9), ("major", 3)):
        return 0.3
    return 0.2 if d == 0 else 0.0


# -- the previous methods, frozen for "before" ------------------------------------------------------------
def key_before(y: np.ndarray, sr: int) -> tuple[int, str]:
    import librosa

    from echotune_mcp.music.analysis import _KK_MAJOR, _KK_MINOR, _mono

    mono = _mono(y, sr)
    harmonic = librosa.effects.harmonic(mono, margin=2.0)
    prof = librosa.feature.chroma_cqt(y=harmonic, sr=22050, hop_length=2048, fmin=librosa.note_to_hz("C1"),
                                      n_octaves=7, bins_per_octave=36).mean(axis=1)
    scores = [(float(np.corrcoef(prof, np.roll(t, k))[0, 1]), k, m)
              for m, t in (("major", _KK_MAJOR), ("minor", _KK_MINOR)) for k in range(12)]
    best = max(scores)
    return best[1], best[2]


def separate_before(x: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """The DSP fallback as it was before issue #17: median-filter HPSS, a bass crossover, centre-panned vocals."""
    import librosa
    from scipy.ndimage import median_filter

    n = x.shape[0]
    n_fft = 1 << round(float(np.log2(0.093 * sr)))
    hop = n_fft // 4
    spec = np.stack([librosa.stft(x[:, c], n_fft=n_fft, hop_length=hop) for c in range(x.shape[1])])
    mag = np.abs(spec).mean(axis=0)
    harm = median_filter(mag, size=(1, max(3, round(0.4 * sr / hop) | 1)), mode="reflect")
    perc = median_filter(mag, size=(max(3, round(250.0 * n_fft / sr) | 1), 1), mode="reflect")
    p_mask = perc**2 / (harm**2 + perc**2 + 1e-12)
    h_mask = 1.0 - p_mask
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)[:, None]
    low = 1.0 / (1.0 + (f / 250.0) ** 4)
    voice = (1.0 - 1.0 / (1.0 + (f / 150.0) ** 4)) / (1.0 + (f / 7000.0) ** 6)
    left, right = spec[0], spec[1]
    coh = 2 * np.real(left * np.conj(right)) / (np.abs(left) ** 2 + np.abs(right) ** 2 + 1e-12)
    centre = np.clip(coh, 0.0, 1.0) ** 6.0
    m = {"drums": p_mask, "bass": h_mask * low, "vocals": h_mask * (1.0 - low) * voice * centre}
    m["other"] = np.clip(1.0 - p_mask - m["bass"] - m["vocals"], 0.0, 1.0)
    return {k: np.stack([librosa.istft(v * spec[c], hop_length=hop, n_fft=n_fft, length=n)
                         for c in range(x.shape[1])], axis=1) for k, v in m.items()}


# -- data ----------------------------------------------------------------------------------------------
def synthetic_set(count: int) -> list[tuple[str, np.ndarray, int, int, str]]:
    """(name, mono audio, sr, tonic, mode) for ``count`` composer pieces; rendered once, then read from the cache."""
    import soundfile as sf

    from echotune_mcp.music.theory import conventional_tonic_name

    CACHE.mkdir(parents=True, exist_ok=True)
    genres = SYNTH_GENRES
    out = []
    for i in range(count):
        mode = ("major", "minor")[2 * i >= count]
        tonic = (i // 2) % 12 if count >= 48 else (i * 7) % 12
        genre = genres[(i * 7) % len(genres)]
        sfont = FLUID_R3 if (i % 2 and FLUID_R3.exists()) else None
        key = f"{conventional_tonic_name(tonic, mode)} {mode}"
        tag = f"{i:03d}_{tonic}{mode[:3]}_{genre.replace(' ', '-')}_{'r3' if sfont else 'tim'}_s{100 + i}"
        f = CACHE / f"{tag}.flac"
        if not f.exists():
            from echotune_mcp.music.composer import compose
            from echotune_mcp.music.params import resolve_params
            from echotune_mcp.music.pipeline import render_piece

            p = resolve_params(f"{genre} piece", duration_s=SYNTH_S, genre=genre, key=key, seed=100 + i)
            piece = render_piece(compose(p), sample_rate=SYNTH_SR, soundfont=sfont)
            sf.write(str(f), piece.mix, SYNTH_SR, subtype="PCM_16")
        y, sr = sf.read(str(f), dtype="float32")
        out.append((tag, y, sr, tonic, mode))
    return out


def bench_key(count: int) -> dict[str, Any]:
    import soundfile as sf

    from echotune_mcp.music.analysis import KEY_METHOD, estimate_key_detail, key_pitch_class
    from echotune_mcp.music.theory import parse_key

    def after(y, sr):
        d = estimate_key_detail(y, sr)
        return key_pitch_class(d["tonic"]), d["mode"]

    rows: dict[str, dict[str, list[float]]] = {}

    def score(group: str, y, sr, t, m) -> None:
        for label, fn in (("before", key_before), ("after", after)):
            et, em = fn(y, sr)
            r = rows.setdefault(group, {}).setdefault(label, [])
            r.append(mirex(et, em, t, m))

    t0 = time.perf_counter()
    items = synthetic_set(count)
    render_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    audio_s = 0.0
    for _name, y, sr, t, m in items:
        half = y.shape[0] // 2
        score("synthetic whole", y, sr, t, m)
        score("synthetic halves", y[:half], sr, t, m)
        score("synthetic halves", y[half:], sr, t, m)
        audio_s += 2 * y.shape[0] / sr
    dev_detail = {}
    for song, key in PUBLISHED_KEYS.items():
        y, sr = sf.read(str(DEV / song / "mixture.flac"), dtype="float32")
        t, m, _ = parse_key(key)
        half = y.shape[0] // 2
        score("dev whole", y, sr, t, m)
        score("dev halves", y[:half], sr, t, m)
        score("dev halves", y[half:], sr, t, m)
        d = estimate_key_detail(y, sr)
        dev_detail[song] = {"published": key, "estimate": f"{d['tonic']} {d['mode']}", "confidence": d["confidence"],
                            "runner_up": d["runner_up"]}
        audio_s += 2 * y.shape[0] / sr
    score_s = time.perf_counter() - t0
    table = {g: {k: {"n": len(v), "exact": round(float(np.mean([s == 1.0 for s in v])), 3),
                     "mirex": round(float(np.mean(v)), 3)} for k, v in r.items()} for g, r in rows.items()}
    print(f"\nkey: {count} synthetic composer pieces ({SYNTH_S:g} s) + 2 dev songs (20 s), before -> after")
    print(f"{'set':18} {'n':>3} {'exact before':>13} {'exact after':>12} {'MIREX before':>13} {'MIREX after':>12}")
    for g, r in table.items():
        b, a = r["before"], r["after"]
        print(f"{g:18} {a['n']:>3} {b['exact']:>13.3f} {a['exact']:>12.3f} {b['mirex']:>13.3f} {a['mirex']:>12.3f}")
    for song, d in dev_detail.items():
        print(f"  {song}: published {d['published']}, estimated {d['estimate']} (confidence {d['confidence']}, "
              f"runner-up {d['runner_up']})")
    return {"sets": table, "dev": dev_detail, "method": KEY_METHOD, "render_s": round(render_s, 1),
            "x_real_time_both_methods": round(score_s / audio_s, 4)}


def bench_separation() -> dict[str, Any]:
    import fast_bss_eval
    import soundfile as sf

    from echotune_mcp.music.dsp_separation import separate_dsp

    def sdr(ref: np.ndarray, est: np.ndarray) -> float:
        return float(np.mean(fast_bss_eval.sdr(ref.T, est.T, filter_length=512)))

    out: dict[str, Any] = {}
    times = {"before": 0.0, "after": 0.0}
    audio_s = 0.0
    for song in ("lithium", "potassium"):
        read = lambda name: sf.read(str(DEV / song / f"{name}.flac"), dtype="float32")  # noqa: E731
        mix, sr = read("mixture")
        refs = {s: read(s)[0] for s in STEMS}
        audio_s += mix.shape[0] / sr
        ests = {}
        for label, fn in (("before", separate_before), ("after", separate_dsp)):
            t0 = time.perf_counter()
            ests[label] = fn(mix, sr)
            times[label] += time.perf_counter() - t0
        out[song] = {s: {"before": round(sdr(refs[s], ests["before"][s]), 2),
                         "after": round(sdr(refs[s], ests["after"][s]), 2),
                         "mix": round(sdr(refs[s], mix), 2)} for s in STEMS}
    print("\nseparation: bss_eval SDR (dB, 512-tap) on the dev songs (20 s each); mix = the scaled-mixture baseline")
    print(f"{'song':10} {'stem':7} {'before':>7} {'after':>7} {'mix':>7}  after-mix")
    wins = {"before": 0, "after": 0}
    for song, r in out.items():
        for s, v in r.items():
            wins["before"] += v["before"] > v["mix"]
            wins["after"] += v["after"] > v["mix"]
            print(f"{song:10} {s:7} {v['before']:>7.2f} {v['after']:>7.2f} {v['mix']:>7.2f}  "
                  f"{v['after'] - v['mix']:+.2f}")
    xrt = {k: round(v / audio_s, 3) for k, v in times.items()}
    print(f"stems beating the scaled mixture: before {wins['before']}/8, after {wins['after']}/8; "
          f"x real time (stereo 44.1 kHz): before {xrt['before']}, after {xrt['after']}")
    return {"sdr": out, "beats_mix": wins, "x_real_time": xrt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=("key", "separation"))
    ap.add_argument("--pieces", type=int, default=48, help="synthetic pieces (>= 48 covers every key twice)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    result: dict[str, Any] = {"bench": "ears"}
    if args.only in (None, "key"):
        result["key"] = bench_key(args.pieces)
    if args.only in (None, "separation"):
        result["separation"] = bench_separation()
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus"
    result["seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
