"""Mix stems and master the result to a streaming loudness with a true-peak-safe ceiling.

Order matters: normalise the integrated loudness (ITU-R BS.1770 via pyloudnorm) first, then
limit only the few peaks that would cross the ceiling. Peaks are detected on a 4x oversampled
signal because inter-sample peaks are what clip in a lossy decoder or a DAC. The gain curve is
computed with array operations (a look-ahead minimum filter then a moving average), so limiting a
minute of audio costs milliseconds and the curve always reaches its target before the peak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import firwin, sosfilt

OVERSAMPLE = 4
BLOCK = 32  # the limiter's gain curve is computed per 32 samples (0.7 ms) and interpolated between
LOOKAHEAD_S = 0.005  # the gain ramps down over this long before a peak...
HOLD_S = 0.040  # ...stays down this long after it, then ramps back over LOOKAHEAD_S
SILENCE_LUFS = -70.0
# Inter-sample peaks of real music sit at most a few dB above the sample peaks; only samples within
# this margin of the level of interest get the (exact) oversampled evaluation.
CANDIDATE_MARGIN_DB = 6.0
# 4x interpolation filter (windowed sinc, 49 taps = 12-13 per phase, as in BS.1770 Annex 2). With an
# odd length and cutoff 1/4 it is a Nyquist filter: phase 0 reproduces the original samples.
_TAPS = 49
_TP_FIR = firwin(_TAPS, 1.0 / OVERSAMPLE, window=("kaiser", 8.0)) * OVERSAMPLE
_DELAY = (_TAPS - 1) // 2
_D = np.arange(-(_DELAY // OVERSAMPLE) - 1, _DELAY // OVERSAMPLE + 2)  # input offsets around sample n


def _polyphase_matrix() -> np.ndarray:
    """W[p, j]: value at n + p/4 = sum_j W[p, j] * x[n + _D[j]] (the same numbers upfirdn would give)."""
    w = np.zeros((OVERSAMPLE, _D.size))
    for p in range(OVERSAMPLE):
        for j, d in enumerate(_D):
            k = p + _DELAY - OVERSAMPLE * d
            if 0 <= k < _TAPS:
                w[p, j] = _TP_FIR[k]
    return w


_W = _polyphase_matrix()
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)


def _as_2d(y: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return y[:, None] if y.ndim == 1 else y


def _k_weighted_power(y: np.ndarray, sample_rate: int) -> np.ndarray:
    """Channel-weighted power of the K-weighted signal (pyloudnorm's own BS.1770 filter coefficients)."""
    stages = list(pyloudnorm.Meter(sample_rate)._filters.values())
    sos = np.array([np.concatenate([st.b / st.a[0], st.a / st.a[0]]) for st in stages])
    kw = sosfilt(sos, np.ascontiguousarray(y.T), axis=-1)  # channels as rows: contiguous, fast
    power = np.zeros(kw.shape[1])
    for c in range(kw.shape[0]):
        power += _CHANNEL_WEIGHTS[min(c, 4)] * kw[c] * kw[c]
    return power


def _gated_loudness(power: np.ndarray, sample_rate: int) -> float:
    """BS.1770-4 gating (400 ms blocks, 75 % overlap, -70 LUFS absolute and -10 LU relative gates).

    The same block boundaries and arithmetic as pyloudnorm's integrated_loudness, with a cumulative
    sum instead of a Python loop per block (a test checks both agree to 0.01 LU).
    """
    n = power.shape[0]
    t_g, step = 0.4, 0.25
    num_blocks = int(np.round((n / sample_rate - t_g) / (t_g * step))) + 1
    if num_blocks < 1:
        return SILENCE_LUFS
    j = np.arange(num_blocks)
    lo = (t_g * (j * step) * sample_rate).astype(np.int64)
    hi = np.minimum((t_g * (j * step + 1) * sample_rate).astype(np.int64), n)
    csum = np.concatenate([[0.0], np.cumsum(power)])
    return _gate((csum[hi] - csum[lo]) / (t_g * sample_rate))


def integrated_loudness(y: np.ndarray, sample_rate: int) -> float:
    """Integrated loudness in LUFS (SILENCE_LUFS for silence); input shorter than one block is padded."""
    y = _as_2d(y)
    if y.shape[0] < int(0.4 * sample_rate) + 1:
        y = np.pad(y, ((0, int(0.4 * sample_rate) + 1 - y.shape[0]), (0, 0)))
    return _gated_loudness(_k_weighted_power(y, sample_rate), sample_rate)


def peak_envelope(y: np.ndarray, floor: float) -> np.ndarray:
    """Per sample n, the largest |value| of the 4x oversampled signal in [n - 1, n + 1) over all channels.

    Samples whose own magnitude is below ``floor`` keep their sample magnitude (their inter-sample
    peaks cannot reach the level of interest); the rest are evaluated exactly with the polyphase
    filter, which is what makes a true-peak limiter affordable on long audio.
    """
    y = np.asarray(y)
    y = y[:, None] if y.ndim == 1 else y
    y.shape[0]
    mag = np.abs(y[:, 0])
    for c in range(1, y.shape[1]):
        np.maximum(mag, np.abs(y[:, c]), out=mag)
    env = mag.copy()
    mask = mag >= floor
    # a peak between n and n+1 also depends on the samples just before: evaluate their intervals too
    mask[:-1] |= mask[1:]
    cand = np.flatnonzero(mask)
    if cand.size:
        pad = _D.size
        idx = cand.astype(np.int32)[:, None] + (_D + pad).astype(np.int32)[None, :]
        w = _W.T.astype(y.dtype)
        for c in range(y.shape[1]):
            xp = np.pad(y[:, c], (pad, pad))
            vals = np.abs(xp[idx] @ w)
            vals = np.maximum(np.maximum(vals[:, 0], vals[:, 1]), np.maximum(vals[:, 2], vals[:, 3]))
            env[cand] = np.maximum(env[cand], vals)
    wide = env.copy()
    np.maximum(wide[1:], env[:-1], out=wide[1:])
    return wide


def true_peak_dbfs(y: np.ndarray, sample_rate: int) -> float:
    """True peak (4x oversampled) in dBFS."""
    y = np.asarray(y)
    y = y[:, None] if y.ndim == 1 else y
    if y.size == 0:
        return float("-inf")
    sample_peak = float(max(np.abs(y[:, c]).max() for c in range(y.shape[1])))
    if sample_peak == 0:
        return float("-inf")
    peak = float(peak_envelope(y, sample_peak * 10 ** (-CANDIDATE_MARGIN_DB / 20)).max())
    return float(20.0 * np.log10(peak))


def _block_max(x: np.ndarray) -> np.ndarray:
    nb = -(-x.shape[0] // BLOCK)
    padded = np.zeros(nb * BLOCK, dtype=x.dtype)
    padded[: x.shape[0]] = x
    return padded.reshape(nb, BLOCK).max(axis=1)


def _block_gain(block_env: np.ndarray, sample_rate: int, ceiling_lin: float) -> np.ndarray:
    """Gain at each block start such that linear interpolation between block starts stays under the ceiling.

    needed[k] is the gain block k requires; a minimum over blocks [k - hold, k + L) followed by a
    causal mean over L blocks can only be <= needed[k] and <= needed[k - 1] (every averaged term
    saw both), so the interpolated curve never lets a peak through and needs no per-sample loop.
    """
    needed = np.minimum(1.0, ceiling_lin / np.maximum(block_env, 1e-12))
    if needed.min() >= 1.0:
        return np.ones(needed.shape[0] + 1)
    look = max(1, round(LOOKAHEAD_S * sample_rate / BLOCK))
    hold = max(1, round(HOLD_S * sample_rate / BLOCK))
    size = look + hold
    padded = np.concatenate([needed, [needed[-1]]])  # the value after the last block start
    m = minimum_filter1d(padded, size=size, origin=hold - size // 2, mode="nearest")  # [k - hold, k + look - 1]
    g = uniform_filter1d(m, size=look, origin=(look - 1) // 2, mode="nearest")  # mean over [k - look + 1, k]
    g = np.minimum(g, padded)
    g[1:] = np.minimum(g[1:], needed)
    return g


def _expand(block_gain: np.ndarray, n: int) -> np.ndarray:
    """Per-sample gain: linear between block starts (0, BLOCK, 2*BLOCK, ...)."""
    if block_gain.min() >= 1.0:
        return np.ones(n)
    return np.interp(np.arange(n, dtype=np.float64), np.arange(block_gain.shape[0]) * float(BLOCK), block_gain)


def limiter_gain(env: np.ndarray, sample_rate: int, ceiling_lin: float) -> np.ndarray:
    """Gain per sample (<= 1) that keeps a signal with peak envelope ``env`` under ``ceiling_lin``."""
    return _expand(_block_gain(_block_max(env), sample_rate, ceiling_lin), env.shape[0])


def mix_and_master(stems: dict[str, np.ndarray], sample_rate: int, target_lufs: float = -14.0,
                   ceiling_dbfs: float = -1.0) -> tuple[np.ndarray, dict[str, Any]]:
    """Sum the stems, normalise to ``target_lufs`` and true-peak limit to ``ceiling_dbfs``.

    Returns float32 (n, channels) and stats: loudness before/after, true peak after, the static
    gain applied and how much the limiter reduced the loudest peak.
    """
    if not stems:
        raise ValueError("nothing to mix: no stems")
    n = max(s.shape[0] for s in stems.values())
    ch = max(_as_2d(s).shape[1] for s in stems.values())
    mix = np.zeros((n, ch), dtype=np.float32)  # float32 all the way: half the memory traffic, ample precision
    for s in stems.values():
        s2 = np.asarray(s, dtype=np.float32)
        s2 = s2[:, None] if s2.ndim == 1 else s2
        mix[: s2.shape[0]] += s2 if s2.shape[1] == ch else np.repeat(s2, ch, axis=1)
    power = _k_weighted_power(mix, sample_rate)
    before = _gated_loudness(power, sample_rate)
    if before <= SILENCE_LUFS:
        return mix.astype(np.float32), {"lufs_before": before, "lufs": before, "true_peak_dbfs": float("-inf"),
                                        "gain_db": 0.0, "limiter_max_reduction_db": 0.0, "silent": True}
    ceiling = 10 ** (ceiling_dbfs / 20.0) * 0.995  # a hair under, for the interpolator's own ripple
    # Everything below is linear in the static gain k, so the peak envelope and the K-weighted power
    # are computed once and rescaled, and each pass that re-aims the loudness after limiting works on
    # BLOCK-sample blocks (block powers, block peaks): a few small array operations per pass.
    gain_db = target_lufs - before
    env_gain_db = gain_db + 2.0  # envelope exact for any gain up to this
    benv = _block_max(peak_envelope(mix, ceiling * 10 ** ((-CANDIDATE_MARGIN_DB - env_gain_db) / 20)))
    nb = benv.shape[0]
    bpow = np.zeros(nb * BLOCK)
    bpow[:n] = power
    bpow = bpow.reshape(nb, BLOCK).sum(axis=1)
    gb = np.ones(nb + 1)
    for _ in range(8):
        if gain_db > env_gain_db:
            env_gain_db = gain_db + 2.0
            benv = _block_max(peak_envelope(mix, ceiling * 10 ** ((-CANDIDATE_MARGIN_DB - env_gain_db) / 20)))
        k = 10 ** (gain_db / 20.0)
        gb = _block_gain(benv * k, sample_rate, ceiling)
        a, b = gb[:-1], gb[1:]
        g2 = (a * a + a * b + b * b) / 3.0  # mean of the squared linear ramp across each block
        now = _gated_blocks(bpow * g2 * k * k, sample_rate)
        if abs(now - target_lufs) <= 0.05:
            break
        gain_db += target_lufs - now
    g = _expand(gb, n)
    reduction = float(-20 * np.log10(g.min()))
    total = g * 10 ** (gain_db / 20.0)
    out = mix * total[:, None].astype(np.float32)
    tp = true_peak_dbfs(out, sample_rate)
    if tp > ceiling_dbfs:  # not expected; a last static trim keeps the promise
        trim = 10 ** ((ceiling_dbfs - 0.05 - tp) / 20.0)
        out *= np.float32(trim)
        total *= trim
        gain_db += 20 * np.log10(trim)
        tp = true_peak_dbfs(out, sample_rate)
    after = _gated_loudness(power * total * total, sample_rate)
    stats = {"lufs_before": round(before, 2), "lufs": round(after, 2), "true_peak_dbfs": round(tp, 2),
             "gain_db": round(float(gain_db), 2), "limiter_max_reduction_db": round(reduction, 2),
             "target_lufs": target_lufs, "ceiling_dbfs": ceiling_dbfs}
    return out, stats


def _gated_blocks(block_power: np.ndarray, sample_rate: int) -> float:
    """BS.1770 gating on BLOCK-sample power sums (gating-block edges rounded to BLOCK samples)."""
    per = BLOCK / sample_rate
    t_g, step = 0.4, 0.25
    num = int(np.round((block_power.shape[0] * per - t_g) / (t_g * step))) + 1
    if num < 1:
        return SILENCE_LUFS
    j = np.arange(num)
    lo = np.round(t_g * j * step / per).astype(np.int64)
    hi = np.minimum(np.round(t_g * (j * step + 1) / per).astype(np.int64), block_power.shape[0])
    csum = np.concatenate([[0.0], np.cumsum(block_power)])
    return _gate((csum[hi] - csum[lo]) / (t_g * sample_rate))


def _gate(z: np.ndarray) -> float:
    with np.errstate(divide="ignore"):
        lj = -0.691 + 10.0 * np.log10(z)
    above = z[lj >= -70.0]
    if above.size == 0:
        return SILENCE_LUFS
    gamma_r = -0.691 + 10.0 * np.log10(above.mean()) - 10.0
    gated = z[(lj > gamma_r) & (lj > -70.0)]
    if gated.size == 0:
        return SILENCE_LUFS
    value = -0.691 + 10.0 * np.log10(gated.mean())
    return float(value) if np.isfinite(value) else SILENCE_LUFS
