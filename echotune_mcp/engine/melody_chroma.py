"""MusicGen-Melody's melody features: a one-hot chromagram, as transformers' feature extractor makes it.

``MusicgenMelodyFeatureExtractor`` needs torchaudio (not installable beside our torch); this is the
same computation in torch: a power spectrogram (Hann window of 16384 at 32 kHz, hop 4096, centred,
window-normalised), librosa's chroma filter bank (``transformers.audio_utils.chroma_filter_bank``),
max-normalisation and a one-hot of the loudest pitch class per frame, over at most 30 s.
"""

from __future__ import annotations

import numpy as np
import torch

SAMPLE_RATE = 32000
N_FFT = 16384
HOP = 4096
MAX_SECONDS = 30


def chroma_onehot(audio: np.ndarray, sample_rate: int, num_chroma: int = 12) -> np.ndarray:
    """(frames, num_chroma) float32 one-hot of the dominant pitch class; index 0 is C, 9 is A."""
    from transformers.audio_utils import chroma_filter_bank

    wav = np.asarray(audio, dtype=np.float32)
    if wav.ndim == 2:
        wav = wav.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        import soxr

        wav = soxr.resample(wav, sample_rate, SAMPLE_RATE).astype(np.float32)
    wav = wav[:MAX_SECONDS * SAMPLE_RATE]
    x = torch.from_numpy(np.ascontiguousarray(wav))
    if x.shape[0] < N_FFT:
        pad = N_FFT - x.shape[0]
        x = torch.nn.functional.pad(x, (pad // 2, pad // 2 + pad % 2))
    window = torch.hann_window(N_FFT)
    spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=N_FFT, window=window, center=True, pad_mode="reflect",
                      return_complex=True)
    power = (spec.abs() / window.pow(2).sum().sqrt()) ** 2  # torchaudio's normalized=True, power=2
    filters = torch.from_numpy(chroma_filter_bank(sampling_rate=SAMPLE_RATE, num_frequency_bins=N_FFT, tuning=0,
                                                  num_chroma=num_chroma)).float()
    raw = filters @ power  # (chroma, frames)
    norm = torch.nn.functional.normalize(raw, p=float("inf"), dim=0, eps=1e-6).T
    out = torch.zeros_like(norm)
    out.scatter_(1, norm.argmax(1, keepdim=True), 1.0)
    return out.numpy()
