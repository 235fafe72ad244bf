"""Remix a set of stems: per-stem gain, mute, solo and pan, then tempo, pitch, fades and normalisation.

Pure numpy in, numpy out, so the tool layer only loads and stores. Time-stretch and pitch-shift
use Spotify's ``pedalboard.time_stretch`` (Rubber Band inside), applied once to the summed mix:
it is the same result as stretching every stem (the operation is per-channel and the sum is
linear up to Rubber Band's phase handling) at a fraction of the cost.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

NORMALIZE = ("lufs", "peak", "none")


@dataclass
class RemixSpec:
    gains_db: dict[str, float] = field(default_factory=dict)
    mute: set[str] = field(default_factory=set)
    solo: set[str] = field(default_factory=set)  # when any: only these play (a muted one stays muted)
    pan: dict[str, float] = field(default_factory=dict)  # -1 left .. +1 right
    pitch_shift_semitones: float = 0.0
    tempo_ratio: float = 1.0  # > 1 faster (shorter), < 1 slower
    fade_in_s: float = 0.0
    fade_out_s: float = 0.0
    normalize: str = "lufs"
    target_lufs: float = -14.0
    peak_dbfs: float = -1.0


def silenced(names: list[str] | set[str], spec: RemixSpec) -> dict[str, str]:
    """The stems left out of the mix and why: ``muted``, or ``not soloed`` while other stems are soloed.

    A mixing desk's rules: solo on any stem silences every stem that is not soloed; mute silences a stem
    even when it is soloed (mute wins), so a soloed and muted stem is out.
    """
    out = {}
    for name in names:
        if name in spec.mute:
            out[name] = "muted"
        elif spec.solo and name not in spec.solo:
            out[name] = "not soloed"
    return out


def pan_gains(pan: float) -> tuple[float, float]:
    """Constant-power balance, unity at centre: (sqrt2 cos, sqrt2 sin) of (pan + 1) * pi / 4, each capped at 1."""
    theta = (max(-1.0, min(1.0, pan)) + 1.0) * np.pi / 4
    return min(1.0, np.sqrt(2) * np.cos(theta)), min(1.0, np.sqrt(2) * np.sin(theta))


def mix_stems(stems: dict[str, np.ndarray], spec: RemixSpec) -> np.ndarray:
    """Stereo sum of the stems after gain, mute/solo and pan; stems may differ in length (zero-padded)."""
    n = max(s.shape[0] for s in stems.values())
    out = np.zeros((n, 2), dtype=np.float32)
    left_out = silenced(list(stems), spec)
    for name, s in stems.items():
        if name in left_out:
            continue
        s2 = np.asarray(s, dtype=np.float32)
        s2 = s2[:, None] if s2.ndim == 1 else s2
        s2 = np.repeat(s2[:, :1], 2, axis=1) if s2.shape[1] == 1 else s2[:, :2]
        g = 10 ** (spec.gains_db.get(name, 0.0) / 20.0)
        lg, rg = pan_gains(spec.pan.get(name, 0.0))
        out[: s2.shape[0]] += s2 * np.array([g * lg, g * rg], dtype=np.float32)
    return out


def stretch(y: np.ndarray, sr: int, tempo_ratio: float, semitones: float) -> np.ndarray:
    if tempo_ratio == 1.0 and semitones == 0.0:
        return y
    from pedalboard import time_stretch

    out = time_stretch(np.ascontiguousarray(y.T, dtype=np.float32), float(sr), stretch_factor=float(tempo_ratio),
                       pitch_shift_in_semitones=float(semitones), high_quality=True)
    return np.ascontiguousarray(out.T, dtype=np.float32)


def fades(y: np.ndarray, sr: int, fade_in_s: float, fade_out_s: float) -> np.ndarray:
    """Equal-power (sine) fades, so a fade does not dip in the middle the way a linear one does."""
    y = y.copy()
    n_in, n_out = min(len(y), int(fade_in_s * sr)), min(len(y), int(fade_out_s * sr))
    if n_in:
        y[:n_in] *= np.sin(np.linspace(0, np.pi / 2, n_in, dtype=np.float32))[:, None]
    if n_out:
        y[len(y) - n_out:] *= np.cos(np.linspace(0, np.pi / 2, n_out, dtype=np.float32))[:, None]
    return y


def remix(stems: dict[str, np.ndarray], sr: int, spec: RemixSpec) -> tuple[np.ndarray, dict[str, Any]]:
    """The remixed stereo mix and what was done to it (loudness, peak, length)."""
    from . import analysis

    if not stems:
        raise ValueError("nothing to remix: no stems")
    if spec.normalize not in NORMALIZE:
        raise ValueError(f"normalize must be one of {NORMALIZE}")
    y = mix_stems(stems, spec)
    y = stretch(y, sr, spec.tempo_ratio, spec.pitch_shift_semitones)
    y = fades(y, sr, spec.fade_in_s, spec.fade_out_s)
    stats: dict[str, Any] = {"normalize": spec.normalize}
    if spec.normalize == "lufs":
        from .master import mix_and_master

        y, master_stats = mix_and_master({"mix": y}, sr, target_lufs=spec.target_lufs, ceiling_dbfs=spec.peak_dbfs)
        stats["master"] = master_stats
    elif spec.normalize == "peak":
        peak = float(np.abs(y).max())
        if peak > 0:
            y = y * np.float32(10 ** (spec.peak_dbfs / 20.0) / peak)
    peak = float(np.abs(y).max())
    stats.update({"duration_s": round(len(y) / sr, 3), "integrated_lufs": round(analysis.integrated_loudness(y, sr), 2),
                  "sample_peak_dbfs": round(20 * np.log10(max(peak, 1e-12)), 2),
                  "clipped": bool(peak > 1.0)})
    return y.astype(np.float32), stats


def mix_report(names: list[str], spec: RemixSpec) -> dict[str, Any]:
    """What the mix applied and what it ignored, per stem, so a caller sees that a control took effect.

    A gain or pan on a stem that is left out (muted, or not soloed) changes nothing and is listed as ignored;
    so is solo on a muted stem (mute wins).
    """
    out = silenced(names, spec)
    ignored = [f"{fld}.{name} ({out[name]})" for fld, values in (("gains_db", spec.gains_db), ("pan", spec.pan))
               for name in values if name in out]
    ignored += [f"solo.{name} (muted: mute wins)" for name in sorted(spec.solo & spec.mute)]
    return {"playing": [n for n in names if n not in out], "silenced": out,
            "gains_db": {n: g for n, g in spec.gains_db.items() if n not in out},
            "pan": {n: p for n, p in spec.pan.items() if n not in out}, "ignored": ignored}
