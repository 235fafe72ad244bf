"""Classical (no-weights) four-stem separation: the fallback when no Demucs weights are present.

It is a set of soft time-frequency masks that sum to one in every bin, so the four stems always
add back up to the input (up to STFT round-off), and each mask is a rule one can read:

* drums  - the percussive part of a median-filter harmonic/percussive split (Fitzgerald 2010):
  energy that is smooth across frequency but short in time;
* bass   - the harmonic part below ~250 Hz (a smooth 4th-order crossover);
* vocals - the harmonic part in the voice band (~150 Hz-7 kHz) that is panned to the centre:
  the inter-channel coherence 2 Re(L R*) / (|L|^2 + |R|^2) is near 1 only for centred sources
  (Avendano & Jot), raised to a power so panned instruments fall out; a mono input has no
  panning cue, so vocals there are the voice band of the harmonic part scaled by ``MONO_VOCAL``;
* other  - everything left.

It is far below a trained model (see the SDR table in docs/BENCHMARKS.md), which is why the tool
reports it as a fallback.
"""

from __future__ import annotations

import numpy as np

SOURCES = ("drums", "bass", "other", "vocals")
N_FFT_S = 0.093  # window length in seconds (4096 samples at 44.1 kHz)
MEDIAN_S = 0.4  # harmonic median filter length in time
MEDIAN_HZ = 250.0  # percussive median filter length in frequency
BASS_HZ = 250.0
VOICE_LO_HZ, VOICE_HI_HZ = 150.0, 7000.0
CENTRE_POWER = 6.0
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
    m_vocals = h_mask * (1.0 - low) * voice * centre
    m_other = np.clip(1.0 - p_mask - m_bass - m_vocals, 0.0, 1.0)
    return {"drums": p_mask, "bass": m_bass, "other": m_other, "vocals": m_vocals}


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
