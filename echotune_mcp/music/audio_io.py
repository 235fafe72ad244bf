"""Audio in and out for the whole server: decode, validate, resample, encode.

Every audio input (artifact, allowed local file, upload) passes through ``decode_audio`` so the
same checks apply everywhere: a known container, not empty, not over the configured length,
finite samples. Arrays are float32 shaped (frames, channels).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import soundfile as sf

FORMATS = {
    "wav": ("WAV", "PCM_24", "audio/wav"),
    "flac": ("FLAC", "PCM_24", "audio/flac"),
    "ogg": ("OGG", "VORBIS", "audio/ogg"),
    "mp3": ("MP3", "MPEG_LAYER_III", "audio/mpeg"),
}
INPUT_FORMATS = ("WAV", "FLAC", "OGG", "MP3")
MEDIA_TYPES = {v[2] for v in FORMATS.values()}
# What a header may claim before anything is decoded. A few hundred bytes of FLAC can claim gigabytes
# of samples (and libsndfile allocates the claimed frame count up front), so every input is held to
# these from its header alone: studio rates up to 384 kHz, up to 7.1 surround, and a decoded size
# (frames x channels x 4 bytes of float32) of at most 512 MiB, about 10 minutes of 96 kHz stereo.
MAX_SAMPLE_RATE = 384_000
MIN_SAMPLE_RATE = 1_000
MAX_CHANNELS = 8
MAX_DECODED_BYTES = 512 * 1024 * 1024


class AudioError(ValueError):
    """The input is not usable audio; the message says why and what is accepted."""


@dataclass
class Audio:
    samples: np.ndarray  # float32, (frames, channels)
    sample_rate: int
    format: str = "WAV"

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / float(self.sample_rate)

    @property
    def channels(self) -> int:
        return self.samples.shape[1]


def decode_audio(data: bytes, *, max_seconds: float, what: str = "audio",
                 max_decoded_bytes: int = MAX_DECODED_BYTES) -> Audio:
    """Decode WAV/FLAC/OGG/MP3 bytes, refusing corrupt, empty, over-long or non-finite audio.

    The sample rate, channel count, length and decoded size are checked from the header before a
    single sample is decoded (see ``check_header``).
    """
    if not data:
        raise AudioError(f"{what} is empty (0 bytes); send a WAV, FLAC, OGG or MP3 file")
    try:
        info = sf.info(io.BytesIO(data))
    except Exception as exc:
        raise AudioError(f"{what} is not a readable audio file (accepted: WAV, FLAC, OGG, MP3)") from exc
    if info.format == "WAV":
        _check_wav_complete(data, what)
    if info.format not in INPUT_FORMATS:
        raise AudioError(f"{what} is {info.format}; accepted formats are WAV, FLAC, OGG, MP3")
    check_header(info.frames, info.samplerate, info.channels, max_seconds=max_seconds, what=what,
                 max_decoded_bytes=max_decoded_bytes)
    try:
        samples, sr = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception as exc:
        raise AudioError(f"{what} is corrupt: decoding failed part-way ({exc})") from exc
    if samples.shape[0] == 0:
        raise AudioError(f"{what} has no samples (zero length)")
    if not np.isfinite(samples).all():
        raise AudioError(f"{what} contains NaN or infinite samples")
    return Audio(samples=np.ascontiguousarray(samples), sample_rate=int(sr), format=info.format)


def check_header(frames: int, sample_rate: int, channels: int, *, max_seconds: float, what: str = "audio",
                 max_decoded_bytes: int = MAX_DECODED_BYTES) -> None:
    """Refuse, from what a header claims, audio that is empty, too long, or too big to decode."""
    if frames <= 0 or sample_rate <= 0 or channels <= 0:
        raise AudioError(f"{what} has no samples (zero length)")
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioError(f"{what} claims a sample rate of {sample_rate} Hz; accepted: "
                         f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    if channels > MAX_CHANNELS:
        raise AudioError(f"{what} claims {channels} channels; accepted: 1-{MAX_CHANNELS} channels")
    seconds = frames / sample_rate
    if seconds > max_seconds:
        raise AudioError(f"{what} is {seconds:.1f} s long; the maximum is {max_seconds:.0f} s")
    decoded = frames * channels * 4
    if decoded > max_decoded_bytes:
        raise AudioError(f"{what} decodes to {decoded / 2**20:.0f} MiB ({frames} frames x {channels} channels at "
                         f"{sample_rate} Hz); the maximum is {max_decoded_bytes / 2**20:.0f} MiB: send it shorter, "
                         "with fewer channels or at a lower sample rate")


def _check_wav_complete(data: bytes, what: str) -> None:
    """A WAV whose data chunk promises more bytes than the file holds was cut off in transfer."""
    import struct

    pos = 12
    while pos + 8 <= len(data):
        chunk_id, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        if chunk_id == b"data":
            available = len(data) - (pos + 8)
            # 0 and 0xFFFFFFFF are streaming placeholders some writers leave; only a real shortfall is corrupt.
            if size not in (0, 0xFFFFFFFF) and available < size:
                raise AudioError(f"{what} is corrupt: truncated (its data chunk promises {size} bytes, "
                                 f"{available} are present)")
            return
        pos += 8 + size + (size & 1)


def check_not_clipped(audio: Audio, *, what: str = "audio", max_fraction: float = 0.01) -> None:
    """Refuse heavily clipped input (more than 1 % of samples pinned at full scale)."""
    pinned = np.count_nonzero(np.abs(audio.samples) >= 0.9999)
    if pinned > max_fraction * audio.samples.size:
        raise AudioError(f"{what} is clipped: {pinned} samples at full scale; supply an unclipped master")


def resample(samples: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling with soxr (any rate in, any rate out)."""
    if sr_in == sr_out:
        return samples
    import soxr

    return soxr.resample(samples, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


def to_channels(samples: np.ndarray, channels: int) -> np.ndarray:
    """Mono to stereo by duplication, stereo to mono by averaging; other counts are folded down."""
    have = samples.shape[1]
    if have == channels:
        return samples
    if channels == 1:
        return samples.mean(axis=1, keepdims=True)
    if have == 1:
        return np.repeat(samples, channels, axis=1)
    return np.repeat(samples.mean(axis=1, keepdims=True), channels, axis=1)


def encode_audio(samples: np.ndarray, sample_rate: int, fmt: str = "wav", tags: dict[str, str] | None = None) -> bytes:
    """Encode float audio to bytes; ``tags`` go into the file's own metadata (WAV INFO, Vorbis comments)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise AudioError(f"unknown output format {fmt!r}; choose one of {sorted(FORMATS)}")
    container, subtype, _ = FORMATS[fmt]
    buf = io.BytesIO()
    data = np.clip(np.asarray(samples, dtype=np.float32), -1.0, 1.0)
    with sf.SoundFile(buf, "w", samplerate=sample_rate, channels=data.shape[1] if data.ndim == 2 else 1,
                      format=container, subtype=subtype) as fh:
        for key, value in (tags or {}).items():
            if key in ("title", "copyright", "software", "artist", "comment", "date", "album", "license", "genre"):
                try:
                    setattr(fh, key, value)
                except Exception:  # some containers lack a field; the sidecar manifest still has it
                    pass
        fh.write(data)
    return buf.getvalue()


def media_type_for(fmt: str) -> str:
    return FORMATS[fmt.lower()][2]
