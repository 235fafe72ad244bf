"""Classical (no-weights) four-stem separation: the fallback when no Demucs weights are present.

It is a set of soft time-frequency masks that sum to one in every bin, so the four stems always
add back up to the input (up to STFT round-off), and each mask is a rule one can read:

* drums  - the percussive part of a median-filter harmonic/percussive split (Fitzgerald 2010):
  energy that is smooth across frequency but short in time;
* bass   - the harmonic part below ~250 Hz (a smooth 4th-order crossover);
* vocals - the harmonic part in the voice band (~150 Hz-7 kHz) that does not repeat and is panned to
  the centre. "Does not repeat" is REPET-SIM (Rafii & Pardo 2012): each frame's repeating background
  is the median of its most similar frames elsewhere in the track (a loop, a pad, a riff recur; a
  sung line rarely recurs identically), and the foreground is what stands above it, turned into a
  Wiener-style ratio F^2 / (F^2 + B^2). Centred: the inter-channel coherence
  2 Re(L R*) / (|L|^2 + |R|^2) is near 1 only for centred sources (Avendano & Jot); a mono input has
  no panning cue, so that factor is ``MONO_VOCAL`` there;
* other  - everything left (so the repeating harmonic part above the bass: pads, chords, riffs).

Measured on the dev songs (tools/bench_ears.py, docs/BENCHMARKS.md) it beats the scaled mixture on
every stem, yet stays far below a trained model, which is why the tool reports it as a fallback.
Cost is bounded: the frame similarity is computed on a 64-band mel summary with a fixed number of
neighbours, so it grows with the square of the length in frames times 64, not times the FFT size.
"""

from __future__ import annotations

import numpy as np

SOURCES = ("drums", "bass", "other", "vocals")
N_FFT_S = 0.093  # window length in seconds (4096 samples at 44.1 kHz)
MEDIAN_S = 0.4  # harmonic median filter length in time
MEDIAN_HZ = 250.0  # percussive median filter length in frequency
BASS_HZ = 250.0
VOICE_LO_HZ, VOICE_HI_HZ = 150.0, 7000.0
CENTRE_POWER = 1.0  # coherence^1: with the repetition cue doing most of the work, a mild panning cue is best
FOREGROUND_POWER = 2.0  # the foreground ratio squared: vocals keep only what clearly stands above the loop
REPEAT_MIN_GAP_S = 2.0  # similar frames closer than this are the same note held, not a repetition
REPEAT_NEIGHBOURS = 20  # frames whose median is the repeating background
MONO_VOCAL = 0.5


def _crossover(f: np.ndarray, fc: float, order: int = 4) -> np.ndarray:
    """Smooth low-pass weight: 1 well below fc, 0.5 at fc, 0 well above."""
    return 1.0 / (1.0 + (f / fc) ** order)


def masks(spec: np.ndarray, sr: int, n_fft: int, hop: int) -> dict[str, np.ndarray]:
    """Soft masks (freq, frames) per source from the complex STFT ``spec`` (channels, freq, frames)."""
    from scipy.ndimage import median_filter

    mag = np.abs(spec).mean(axis=0)
    t_len = max(3, round(MEDIAN_S * sr / hop) | 1)
    f_len = max(3, round(MEDIAN_HZ * n_fft / sr) | 1)
    harm = median_filter(mag, size=(1, t_len), mode="reflect")
    perc = median_filter(mag, size=(f_len, 1), mode="reflect")
    background = repeating_background(mag, sr, n_fft, hop)
    fore = np.maximum(mag - background, 0.0)
    foreground = (fore**2 / (fore**2 + background**2 + 1e-12)) ** FOREGROUND_POWER
    p_mask = perc**2 / (harm**2 + perc**2 + 1e-12)
    h_mask = 1.0 - p_mask
    f = np.fft.rfftfreq(n_fft, 1.0 / sr)[:, None]
    low = _crossover(f, BASS_HZ)
    voice = (1.0 - _crossover(f, VOICE_LO_HZ)) * _crossover(f, VOICE_HI_HZ, 6)
    if spec.shape[0] >= 2:
        left, right = spec[0], spec[1]
        coherence = 2 * np.real(left * np.conj(right)) / (np.abs(left) ** 2 + np.abs(right) ** 2 + 1e-12)
        centre = np.clip(coherence, 0.0, 1.0) ** CENTRE_POWER
    else:
        centre = np.full(mag.shape, MONO_VOCAL)
    m_bass = h_mask * low
    m_vocals = h_mask * (1.0 - low) * voice * foreground * centre
    m_other = np.clip(1.0 - p_mask - m_bass - m_vocals, 0.0, 1.0)
    return {"drums": p_mask, "bass": m_bass, "other": m_other, "vocals": m_vocals}


def repeating_background(mag: np.ndarray, sr: int, n_fft: int, hop: int) -> np.ndarray:
    """REPET-SIM: per frame, the median magnitude of its most similar frames (cosine on a mel summary),
    capped by the frame itself. Frames within ``REPEAT_MIN_GAP_S`` of each other are not compared."""
    import librosa

    frames = mag.shape[1]
    width = max(1, round(REPEAT_MIN_GAP_S * sr / hop))
    if frames < 2 * width + 3:  # too short for anything to repeat: all foreground
        return np.zeros_like(mag)
    mel = librosa.feature.melspectrogram(S=mag**2, sr=sr, n_fft=n_fft, n_mels=64)
    summary = np.log1p(mel / (mel.max() + 1e-12) * 1e4)
    k = min(REPEAT_NEIGHBOURS, frames - 2 * width - 1)
    rec = librosa.segment.recurrence_matrix(summary, k=k, width=width, metric="cosine", sparse=True,
                                          mode="connectivity")  # affinity mode drops exact repeats (distance 0)
    rec = rec.tocsc()  # column j holds frame j's neighbours (librosa's convention; nn_filter walks indptr)
    lonely = np.diff(rec.indptr) == 0
    background = librosa.decompose.nn_filter(mag, rec=rec, aggregate=np.median, axis=-1)
    background[:, lonely] = 0.0  # no similar frame anywhere: nothing repeats there
    return np.minimum(mag, background)


def separate_dsp(samples: np.ndarray, sr: int) -> dict[str, np.ndarray]:
    """Four stems, each float32 (frames, channels) like ``samples``; they sum to the input."""
    import librosa

    x = np.asarray(samples, dtype=np.float32)
    n = x.shape[0]
    n_fft = 1 << round(float(np.log2(N_FFT_S * sr)))
    hop = n_fft // 4
    spec = np.stack([librosa.stft(x[:, c], n_fft=n_fft, hop_length=hop) for c in range(x.shape[1])])
    out = {}
    for name, m in masks(spec, sr, n_fft, hop).items():
        out[name] = np.stack([librosa.istft(m * spec[c], hop_length=hop, n_fft=n_fft, length=n)
                              for c in range(x.shape[1])], axis=1).astype(np.float32)
    return {name: out[name] for name in SOURCES}
