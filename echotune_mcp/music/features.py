"""The analyze_audio feature set: measured values plus two scores whose formulas are written out.

Tempo, key, integrated loudness and true peak come from ``music.analysis`` (shared with the
composer's own checks); this module adds beat positions, loudness range, crest factor, spectral
centroid and brightness, onset density, and the two derived 0..1 scores. The scores are simple
weighted sums of the measured values, not a trained model, so an agent can explain them:

* energy       = 0.5 * loud + 0.3 * density + 0.2 * bright
  where loud = clip((LUFS + 30) / 24), density = clip(onsets_per_s / 8), bright = clip(brightness / 0.5)
* danceability = 0.35 * tempo_fit + 0.45 * pulse + 0.20 * percussive
  where tempo_fit = exp(-0.5 * (log2(bpm / 118) / 0.5)^2) (dance tempos 90-150 bpm score high),
  pulse = the tempo confidence (how strongly the onset envelope repeats at the beat period),
  percussive = clip(2 * percussive energy share) from a median-filter harmonic/percussive split.

``clip`` limits to [0, 1]. Bump ``VERSION`` when any of this changes: cached analyses are keyed by it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

VERSION = 2  # 2: key from three profiles on log-compressed, tuning-folded chroma; key carries method + runner-up
SR = 22050
HOP = 256
FORMULAS = {
    "energy": "0.5*clip((LUFS+30)/24) + 0.3*clip(onsets_per_s/8) + 0.2*clip(brightness/0.5)",
    "danceability": "0.35*exp(-0.5*(log2(bpm/118)/0.5)^2) + 0.45*tempo_confidence + 0.20*clip(2*percussive_share)",
    "brightness": "share of spectral energy above 1500 Hz",
    "loudness_range_lu": "EBU Tech 3342: P95-P10 of 3 s short-term loudness, gated at -70 LUFS and 20 LU below",
    "crest_factor_db": "sample peak dBFS - RMS dBFS",
    "key_confidence": "mean profile correlation of the best key minus that of the runner-up (below ~0.02: a toss-up)",
}


def _clip(v: float) -> float:
    return float(min(1.0, max(0.0, v)))


def _mono22(samples: np.ndarray, sr: int) -> np.ndarray:
    from .audio_io import resample

    y = np.asarray(samples, dtype=np.float32)
    y = y.mean(axis=1) if y.ndim == 2 else y
    return resample(y[:, None], sr, SR)[:, 0] if sr != SR else y


def loudness_range(samples: np.ndarray, sr: int) -> float:
    """EBU Tech 3342 loudness range (LU) from K-weighted 3 s windows every second."""
    from pyloudnorm import Meter

    y = np.asarray(samples, dtype=np.float64)
    y = y[:, None] if y.ndim == 1 else y
    for f in Meter(sr)._filters.values():  # BS.1770 K-weighting, the same filters pyloudnorm meters with
        y = f.apply_filter(y.T).T
    win, hop = 3 * sr, sr
    if y.shape[0] < win:
        return 0.0
    power = np.cumsum(np.concatenate([np.zeros(1), (y**2).sum(axis=1)]))
    starts = np.arange(0, y.shape[0] - win + 1, hop)
    st = -0.691 + 10 * np.log10((power[starts + win] - power[starts]) / win + 1e-20)
    st = st[st > -70.0]
    if st.size == 0:
        return 0.0
    rel = -0.691 + 10 * np.log10(np.mean(10 ** ((st + 0.691) / 10))) - 20.0
    st = st[st > rel]
    return float(np.percentile(st, 95) - np.percentile(st, 10)) if st.size else 0.0


def analyze(samples: np.ndarray, sr: int) -> dict[str, Any]:
    """All features of (frames, channels) float audio, as a JSON-ready dict."""
    import librosa

    from . import analysis

    x = np.asarray(samples, dtype=np.float32)
    x = x[:, None] if x.ndim == 1 else x
    duration = x.shape[0] / sr
    y = _mono22(x, sr)
    bpm, tempo_conf = analysis.estimate_tempo(x, sr)
    env = librosa.onset.onset_strength(y=y, sr=SR, hop_length=HOP, aggregate=np.median)
    beats: list[float] = []
    if bpm > 0:
        _, frames = librosa.beat.beat_track(onset_envelope=env, sr=SR, hop_length=HOP, bpm=bpm, tightness=400,
                                             trim=False, units="frames")
        beats = [round(float(t), 3) for t in librosa.frames_to_time(frames, sr=SR, hop_length=HOP)]
    onsets = librosa.onset.onset_detect(onset_envelope=env, sr=SR, hop_length=HOP)
    onset_density = len(onsets) / duration if duration > 0 else 0.0
    key = analysis.estimate_key_detail(x, sr)
    lufs = analysis.integrated_loudness(x, sr)
    true_peak = analysis.true_peak_dbfs(x, sr)
    peak = float(np.abs(x).max())
    rms = float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))
    crest = 20 * np.log10(max(peak, 1e-12) / max(rms, 1e-12)) if rms > 0 else 0.0
    spec = np.abs(librosa.stft(y, n_fft=2048, hop_length=512)) ** 2
    freqs = librosa.fft_frequencies(sr=SR, n_fft=2048)
    total = float(spec.sum())
    centroid = float((freqs[:, None] * spec).sum() / total) if total > 0 else 0.0
    brightness = float(spec[freqs >= 1500.0].sum() / total) if total > 0 else 0.0
    harm, perc = librosa.decompose.hpss(spec, power=2.0)
    perc_share = float(perc.sum() / (harm.sum() + perc.sum())) if total > 0 else 0.0
    tempo_fit = float(np.exp(-0.5 * (np.log2(bpm / 118.0) / 0.5) ** 2)) if bpm > 0 else 0.0
    loud = _clip((lufs + 30.0) / 24.0)
    energy = 0.5 * loud + 0.3 * _clip(onset_density / 8.0) + 0.2 * _clip(brightness / 0.5)
    dance = 0.35 * tempo_fit + 0.45 * _clip(tempo_conf) + 0.20 * _clip(2 * perc_share)
    return {
        "version": VERSION,
        "duration_s": round(duration, 3),
        "sample_rate": sr,
        "channels": int(x.shape[1]),
        "tempo": {"bpm": round(bpm, 2), "confidence": round(tempo_conf, 3), "beat_times_s": beats[:4000],
                  "beats": len(beats)},
        "key": {"tonic": key["tonic"], "mode": key["mode"], "name": f"{key['tonic']} {key['mode']}",
                "confidence": key["confidence"], "correlation": key["correlation"], "runner_up": key["runner_up"],
                "method": key["method"], **({"note": key["note"]} if "note" in key else {})},
        "loudness": {"integrated_lufs": round(lufs, 2), "true_peak_dbfs": round(true_peak, 2),
                     "sample_peak_dbfs": round(20 * np.log10(max(peak, 1e-12)), 2)},
        "dynamic_range": {"loudness_range_lu": round(loudness_range(x, sr), 2), "crest_factor_db": round(crest, 2)},
        "spectral": {"centroid_hz": round(centroid, 1), "brightness": round(brightness, 4)},
        "rhythm": {"onsets_per_s": round(onset_density, 3), "percussive_share": round(perc_share, 4)},
        "scores": {"energy": round(energy, 3), "danceability": round(dance, 3)},
        "score_inputs": {"loud": round(loud, 3), "tempo_fit": round(tempo_fit, 3)},
        "formulas": FORMULAS,
    }
