"""Measure audio: tempo, key, loudness, true peak.

Used to check the composer's output against what was asked (tests) and by the analyze_audio
tool. Tempo: onset-strength autocorrelation, a broad prior to pick the beat level, then a
least-squares fit over several multiples of the beat period (a 4-beat lag is measured 4x more
precisely than a 1-beat lag) — librosa's tempo grid alone is too coarse for ±2 %. Key: see
``estimate_key_detail`` (harmonic part, tuned CQT, log-compressed chroma over the whole track, three
published key profiles voting together).
"""

from __future__ import annotations

import numpy as np

from . import master
from .theory import conventional_tonic_name, parse_key

_ANALYSIS_SR = 22050
_HOP = 256
_PRIOR_BPM, _PRIOR_OCTAVES = 100.0, 0.9  # broad log-normal tempo prior (centre, std in octaves)
_ONSET_FMAX = None  # Hz; None = all bands
# Key profiles, tonic first (major, minor). Each was measured by someone else on other music, so each
# carries that music's bias; their mean correlation is steadier than any one of them (bench: tools/bench_ears.py).
# Krumhansl & Kessler (1982) probe-tone ratings: listeners' judgements, strong on the tonic, weak on mode.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
# Temperley (2007, Music and Probability, table 6.1): proportion of segments of the Kostka-Payne corpus
# containing each degree; sharper on the diatonic set, so better on mode.
_TEMPERLEY_MAJOR = np.array([0.748, 0.060, 0.488, 0.082, 0.670, 0.460, 0.096, 0.715, 0.104, 0.366, 0.057, 0.400])
_TEMPERLEY_MINOR = np.array([0.712, 0.084, 0.474, 0.618, 0.049, 0.460, 0.105, 0.747, 0.404, 0.067, 0.133, 0.330])
# Albrecht & Shanahan (2013): duration-weighted pitch-class distributions of 982 major and 491 minor pieces.
_AS_MAJOR = np.array([0.238, 0.006, 0.111, 0.006, 0.137, 0.094, 0.016, 0.214, 0.009, 0.080, 0.008, 0.081])
_AS_MINOR = np.array([0.220, 0.006, 0.104, 0.123, 0.019, 0.103, 0.012, 0.214, 0.062, 0.022, 0.061, 0.052])
KEY_PROFILES = {"krumhansl_kessler": (_KK_MAJOR, _KK_MINOR), "temperley": (_TEMPERLEY_MAJOR, _TEMPERLEY_MINOR),
                "albrecht_shanahan": (_AS_MAJOR, _AS_MINOR)}
KEY_METHOD = ("HPSS harmonic part -> CQT (C1-B7, 36 bins/octave) folded to chroma after tuning estimation "
              "-> log-compressed chroma summed over the whole track -> mean Pearson correlation with the "
              "Krumhansl-Kessler, Temperley and Albrecht-Shanahan profiles of all 24 keys; "
              "confidence = best minus second-best mean correlation")
_CHROMA_GAMMA = 10.0  # log(1 + gamma * C / max C): loud sustained notes do not drown the rest of the scale


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
    """Whole-track chroma (12,), C first: harmonic part only, tuning-corrected, log-compressed, summed.

    Why each step: drums put broadband energy in every pitch class (HPSS keeps the harmonic part);
    a detuned recording smears every note over two semitone bins (the folding of CQT bins onto pitch
    classes is shifted by the tuning measured on the harmonic part); a few loud held notes would
    otherwise outvote the scale (log compression); and summing over all frames, not normalising each
    one, lets quiet frames (breaks, fades) count for little.
    """
    import librosa

    mono = _mono(y, sr)
    if mono.size < 2048 or not np.any(mono):
        return np.zeros(12)
    harmonic = librosa.effects.harmonic(mono, margin=2.0)
    bpo = 36
    cqt = np.abs(librosa.cqt(harmonic, sr=_ANALYSIS_SR, hop_length=2048, fmin=librosa.note_to_hz("C1"),
                             n_bins=7 * bpo, bins_per_octave=bpo, tuning=0.0))
    peak = float(cqt.max())
    if peak <= 0:
        return np.zeros(12)
    cqt = np.log1p(_CHROMA_GAMMA * cqt / peak)
    # Bin b sits b/3 semitones above C1; a recording tuned ``tuning`` semitones sharp puts its notes there,
    # so each bin folds onto round(b/3 - tuning). Measured at semitone resolution (the estimate is noisy);
    # only detuning beyond a sixth of a semitone moves a bin to its neighbour.
    tuning = float(librosa.estimate_tuning(y=harmonic, sr=_ANALYSIS_SR, bins_per_octave=12))
    pcs = np.round(np.arange(cqt.shape[0]) / (bpo / 12) - tuning).astype(int) % 12
    chroma = np.zeros((12, cqt.shape[1]))
    np.add.at(chroma, pcs, cqt)
    return chroma.mean(axis=1)


def key_scores(profile: np.ndarray) -> list[tuple[float, int, str]]:
    """(mean correlation over the profiles, tonic pitch class, mode) for all 24 keys, best first."""
    prof = np.asarray(profile, dtype=float)
    if not np.any(prof) or np.ptp(prof) == 0:
        return [(0.0, t, m) for m in ("major", "minor") for t in range(12)]
    z = (prof - prof.mean()) / prof.std()
    scores = []
    for mode_i, mode in enumerate(("major", "minor")):
        for tonic in range(12):
            total = 0.0
            for pair in KEY_PROFILES.values():
                tmpl = np.roll(pair[mode_i], tonic)
                total += float(np.mean(z * (tmpl - tmpl.mean()) / tmpl.std()))
            scores.append((total / len(KEY_PROFILES), tonic, mode))
    scores.sort(key=lambda s: -s[0])
    return scores


def estimate_key_detail(y: np.ndarray, sr: int) -> dict:
    """The key with its evidence: tonic, mode, confidence, the runner-up key and the method used."""
    scores = key_scores(chroma_profile(y, sr))
    best, second = scores[0], scores[1]
    if best[0] == 0.0:
        return {"tonic": "C", "mode": "major", "confidence": 0.0, "correlation": 0.0, "runner_up": None,
                "method": KEY_METHOD, "note": "no pitched content found; C major is a placeholder"}
    return {"tonic": conventional_tonic_name(best[1], best[2]), "mode": best[2],
            "confidence": round(max(0.0, best[0] - second[0]), 4), "correlation": round(best[0], 4),
            "runner_up": f"{conventional_tonic_name(second[1], second[2])} {second[2]}", "method": KEY_METHOD}


def estimate_key(y: np.ndarray, sr: int) -> tuple[str, str, float]:
    """(tonic name, 'major'|'minor', confidence): the key whose profiles best match the whole track's chroma.

    Confidence is the margin between the best and second-best keys' mean correlations (0..~0.5);
    below ~0.02 the runner-up (often the relative or a fifth away) is nearly as likely.
    """
    d = estimate_key_detail(y, sr)
    return d["tonic"], d["mode"], d["confidence"]


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
