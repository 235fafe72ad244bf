"""MusicGen's audio codec (EnCodec) at the edges of the engine: codes to audio, a clip to codes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


@torch.inference_mode()
def decode_codes(model: Any, codes: torch.Tensor) -> np.ndarray:
    """EnCodec-decode (K, frames) codes to (channels, samples) float32."""
    enc = model.audio_encoder
    dev = next(enc.parameters()).device
    values = enc.decode(codes[None, None].to(dev), audio_scales=[None]).audio_values
    return values[0].float().cpu().numpy()


@torch.inference_mode()
def encode_audio(model: Any, audio: np.ndarray, sample_rate: int) -> torch.Tensor:
    """EnCodec-encode mono audio (resampled to the model's rate) into (K, frames) codes (for continuation)."""
    enc = model.audio_encoder
    audio = np.asarray(audio, dtype=np.float32).reshape(-1)
    if sample_rate != enc.config.sampling_rate:
        import soxr

        audio = soxr.resample(audio, sample_rate, enc.config.sampling_rate).astype(np.float32)
    dev = next(enc.parameters()).device
    x = torch.as_tensor(audio).reshape(1, 1, -1).to(dev)
    out = enc.encode(x, bandwidth=max(enc.config.target_bandwidths))
    return out.audio_codes[0, 0].cpu()
