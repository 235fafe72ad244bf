"""Measure audio: tempo, key, loudness, true peak.

Used to check the composer's output against what was asked (tests) and by the analyze_audio
tool. Tempo: onset-strength autocorrelation, a broad prior to pick the beat level, then a
least-squares fit over several multiples of the beat period (a 4-beat lag is measured 4x more
precisely than a 1-beat lag) — librosa's tempo grid alone is too coarse for ±2 %. Key: CQT chroma
correlated with the 24 rotated Krumhansl-Kessler profiles.
"""

from __future__ import annotations

import numpy as np

from . import master
from .theory import conventional_tonic_name, parse_key

_ANALYSIS_SR = 22050
_HOP = 256
_PRIOR_BPM, _PRIOR_OCTAVES = 100.0, 0.9  # broad log-normal tempo prior (centre, std in octaves)
_ONSET_FMAX = None  # Hz; None = all bands
# Krumhansl & Kessler (1982) probe-tone profiles, tonic first
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _mono(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    y = np.asarray(y, dtype=np.float32)
    if y.ndim == 2:
        y = y.mean(axis=1)
    if sr != _ANALYSIS_SR:
        y = librosa.resample(y, orig_sr=sr, target_sr=_ANALYSIS_SR, res_type="soxr_hq")
    return y


def _parabolic(a: np.ndarray, i: int) -> float:
    """Sub-bin position of the peak at i (parabola through i-1, i, i+1)."""
    if 0 < i < len(a) - 1:
        d = a[i - 1] - 2 * a[i] + a[i + 1]
        if d < 0:
            return i + 0.5 * (a[i - 1] - a[i + 1]) / d
    return float(i)


def estimate_tempo(y: np.ndarray, sr: int, *, min_bpm: float = 40.0, max_bpm: float = 240.0) -> tuple[float, float]:
    """(bpm, confidence 0..1) from the onset envelope's autocorrelation."""
    import librosa

    mono = _mono(y, sr)
    if mono.size < _ANALYSIS_SR:
        return 0.0, 0.0
    env = librosa.onset.onset_strength(y=mono, sr=_ANALYSIS_SR, hop_length=_HOP, aggregate=np.median,
                                       fmax=_ONSET_FMAX)
    env = env - env.mean()
    if not np.any(env):
        return 0.0, 0.0
    n = env.size
    spec = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac /= ac[0] if ac[0] > 0 else 1.0
    ac *= n / (n - np.arange(n))  # unbiased: long lags are not penalised for having fewer terms
    fps = _ANALYSIS_SR / _HOP
    lag_min = int(fps * 60.0 / max_bpm)
    lag_max = min(n // 2, int(np.ceil(fps * 60.0 / min_bpm)) + 1)
    if lag_max <= lag_min + 2:
        return 0.0, 0.0
    lags = np.arange(lag_min, lag_max)
    bpms = 60.0 * fps / lags
    # Beat-level evidence: the lag itself plus its multiples (a true beat period repeats at 2x, 4x),
    # weighted by a broad log-normal prior around 110 bpm to choose between half and double tempo.
    score = np.zeros(lags.size)
    for mult, w in ((1, 1.0), (2, 0.5), (4, 0.25)):
        idx = lags * mult
        ok = idx < n
        score[ok] += w * ac[idx[ok]]
    prior = np.exp(-0.5 * (np.log2(bpms / _PRIOR_BPM) / _PRIOR_OCTAVES) ** 2)
    best = int(np.argmax(score * prior))
    period = float(lags[best])
    # refine: peak positions at k * period, fitted through the origin by least squares
    ks, peaks = [], []
    for k in range(1, 9):
        center = round(k * period)
        half = max(2, round(0.06 * k * period))
        lo, hi = center - half, center + half + 1
        if hi >= n - 1 or lo < 1:
            break
        i = lo + int(np.argmax(ac[lo:hi]))
        if i in (lo, hi - 1):
            continue
        ks.append(k)
        peaks.append(_parabolic(ac, i))
    if ks:
        k_arr, p_arr = np.array(ks, float), np.array(peaks)
        period = float((k_arr * p_arr).sum() / (k_arr * k_arr).sum())
    bpm = 60.0 * fps / period
    ref = np.sort(ac[lag_min:lag_max])
    confidence = float(np.clip((ac[round(period)] - np.median(ref)) / (ref[-1] - np.median(ref) + 1e-9), 0, 1))
    return float(bpm), confidence


def chroma_profile(y: np.ndarray, sr: int) -> np.ndarray:
    """Mean CQT chroma (12,), C first, after suppressing drum frames' broadband energy."""
    import librosa

    mono = _mono(y, sr)
    harmonic = librosa.effects.harmonic(mono, margin=2.0)
    chroma = librosa.feature.chroma_cqt(y=harmonic, sr=_ANALYSIS_SR, hop_length=2048, fmin=librosa.note_to_hz("C1"),
                                        n_octaves=7, bins_per_octave=36)
    return chroma.mean(axis=1)


def estimate_key(y: np.ndarray, sr: int) -> tuple[str, str, float]:
    """(tonic name, 'major'|'minor', confidence) by Krumhansl-Schmuckler key finding.

    Confidence is the margin between the best and second-best key correlations (0..1-ish).
    """
    prof = chroma_profile(y, sr)
    if not np.any(prof):
        return "C", "major", 0.0
    scores = []
    for mode, tmpl in (("major", _KK_MAJOR), ("minor", _KK_MINOR)):
        for tonic in range(12):
            scores.append((float(np.corrcoef(prof, np.roll(tmpl, tonic))[0, 1]), tonic, mode))
    scores.sort(reverse=True)
    best, second = scores[0], scores[1]
    return conventional_tonic_name(best[1], best[2]), best[2], round(max(0.0, best[0] - second[0]), 4)


def key_pitch_class(name: str) -> int:
    """Pitch class of a tonic name as returned by estimate_key (sharps or flats)."""
    parsed = parse_key(name)
    if parsed is None:
        raise ValueError(f"not a tonic name: {name!r}")
    return parsed[0]


def integrated_loudness(y: np.ndarray, sr: int) -> float:
    """Integrated loudness (LUFS) measured with pyloudnorm (ITU-R BS.1770-4)."""
    import pyloudnorm

    y2 = np.asarray(y, dtype=np.float64)
    if y2.shape[0] < int(0.4 * sr) + 1:
        pad = [(0, int(0.4 * sr) + 1 - y2.shape[0])] + [(0, 0)] * (y2.ndim - 1)
        y2 = np.pad(y2, pad)
    value = pyloudnorm.Meter(sr).integrated_loudness(y2)
    return float(value) if np.isfinite(value) else master.SILENCE_LUFS


def true_peak_dbfs(y: np.ndarray, sr: int) -> float:
    """True peak in dBFS (4x oversampled), as the master's limiter measures it."""
    return master.true_peak_dbfs(y, sr)
