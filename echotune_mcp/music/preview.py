"""Compressed listening previews of audio artifacts, small enough to travel inside one MCP message.

The in-chat views (MCP Apps) get audio only through the host, as a ``resources/read`` answer: base64 inside
one JSON-RPC message. Over streamable HTTP that message is one SSE event, and the SDK's client refuses an
event over 1 MiB (``mcp.client.streamable_http.DEFAULT_MAX_SSE_EVENT_SIZE``; the server's own cap, 4 MiB, is
on request bodies). A 3-minute WAV is ~30 MB, so the preview is Ogg Opus at a bitrate chosen so that the
whole answer fits that budget: 96 kbit/s stereo for pieces up to about a minute, lower for longer ones
(about 30 kbit/s stereo for 3 minutes; mono below 24 kbit/s, where Opus spends bits better on one channel).
Libsndfile builds without Opus fall back to Ogg Vorbis, sized the same way.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import numpy as np

from .audio_io import resample, to_channels

MEDIA_TYPE = "audio/ogg"
SAMPLE_RATE = 48_000  # Opus runs at 48 kHz (libsndfile accepts 8/12/16/24/48 kHz); Web Audio decodes any
MAX_KBPS = 96
MIN_BPS = 8_000
STEREO_MIN_BPS = 24_000
# One SSE event of at most 1 MiB carries the JSON-RPC envelope plus the base64 text (4/3 of the bytes).
WIRE_BUDGET = 1024 * 1024
ENVELOPE_ALLOWANCE = 16 * 1024
MAX_BYTES = (WIRE_BUDGET - ENVELOPE_ALLOWANCE) * 3 // 4
VBR_MARGIN = 0.85  # Opus is VBR in libsndfile: dense music can run over the nominal rate, so aim below it


class PreviewError(RuntimeError):
    """No preview can be made (no Ogg encoder in libsndfile, or a piece too long for one message)."""


@dataclass(frozen=True)
class Preview:
    data: bytes
    codec: str  # "opus" | "vorbis"
    bitrate_bps: int  # average over the piece, container included
    channels: int
    duration_s: float

    @property
    def wire_bytes(self) -> int:
        """Size as base64 text, what the transport carries."""
        return len(base64.b64encode(self.data))


def codecs() -> list[str]:
    """The Ogg codecs this libsndfile can write, best first."""
    import soundfile as sf

    subtypes = sf.available_subtypes("OGG") if "OGG" in sf.available_formats() else {}
    return [c for c in ("OPUS", "VORBIS") if c in subtypes]


def target_bitrate(duration_s: float, max_bytes: int = MAX_BYTES) -> int:
    """The nominal bitrate (bit/s) that keeps a piece of ``duration_s`` within ``max_bytes``, capped at 96 kbit/s."""
    fit = int(max_bytes * 8 * VBR_MARGIN / max(duration_s, 1e-3))
    return max(MIN_BPS, min(MAX_KBPS * 1000, fit))


def _opus_level(bitrate: int, channels: int) -> float:
    """libsndfile's Opus encoder maps compression level q to (6000 + (1 - q) * 250000) bit/s per channel."""
    per_channel = bitrate / channels
    return float(min(1.0, max(0.0, 1.0 - (per_channel - 6000) / 250000)))


def _encode(y: np.ndarray, codec: str, level: float) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, y, SAMPLE_RATE, format="OGG", subtype=codec, compression_level=level)
    return buf.getvalue()


def make_preview(samples: np.ndarray, sample_rate: int, *, max_bytes: int = MAX_BYTES) -> Preview:
    """An Ogg (Opus, else Vorbis) preview of ``samples`` (float32, frames x channels) within ``max_bytes``.

    Raises ``PreviewError`` when libsndfile has no Ogg encoder, or when even the lowest rate would not fit.
    """
    available = codecs()
    if not available:
        raise PreviewError("this libsndfile cannot write Ogg Opus or Vorbis (soundfile.available_subtypes('OGG')); "
                           "read the artifact's .../content instead")
    codec = available[0]
    duration = samples.shape[0] / sample_rate
    bitrate = target_bitrate(duration, max_bytes)
    channels = 2 if samples.shape[1] >= 2 and bitrate >= STEREO_MIN_BPS else 1
    y = to_channels(np.asarray(samples, dtype=np.float32), channels)
    y = np.clip(resample(y, sample_rate, SAMPLE_RATE), -1.0, 1.0)
    if codec == "OPUS":
        levels = [_opus_level(bitrate, channels), _opus_level(bitrate * 0.7, channels), 1.0]
    else:  # Vorbis quality does not map to a bitrate: try from good to small until it fits
        levels = [0.3, 0.5, 0.7, 0.85, 1.0]
    data = b""
    for level in levels:
        data = _encode(y, codec, level)
        if len(data) <= max_bytes:
            return Preview(data=data, codec=codec.lower(), bitrate_bps=int(len(data) * 8 / max(duration, 1e-3)),
                           channels=channels, duration_s=round(duration, 3))
    raise PreviewError(f"a {duration:.0f} s piece does not fit one message even at the lowest rate "
                       f"({len(data)} bytes > {max_bytes}); read the artifact's .../content instead")
