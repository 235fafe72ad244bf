"""A waveform + spectrogram picture of an audio artifact, so an agent (or person) can see it.

Uses matplotlib's object API (no pyplot global state), so pictures can be drawn from worker
threads concurrently; the spectrogram is computed here in numpy so silence or DC cannot break it.
"""

from __future__ import annotations

import io

import numpy as np


def _spectrogram_db(mono: np.ndarray, n_fft: int = 2048, hop: int = 1024, max_cols: int = 1200) -> np.ndarray:
    if len(mono) < n_fft:
        mono = np.pad(mono, (0, n_fft - len(mono)))
    frames = 1 + (len(mono) - n_fft) // hop
    step = max(1, frames // max_cols)  # thin long files so drawing stays fast
    idx = np.arange(0, frames, step)[:, None] * hop + np.arange(n_fft)[None, :]
    spec = np.abs(np.fft.rfft(mono[idx] * np.hanning(n_fft), axis=1)) ** 2
    return 10 * np.log10(np.maximum(spec, 1e-12)).T


def waveform_png(samples: np.ndarray, sample_rate: int, title: str = "") -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    seconds = max(len(mono) / sample_rate, 1e-3)
    fig = Figure(figsize=(10, 5), dpi=100)
    FigureCanvasAgg(fig)
    ax_w, ax_s = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2]})
    # Peak envelope per pixel column: what a DAW shows, at a fixed cost however long the file.
    n = max(1, len(mono) // 1000)
    usable = (len(mono) // n) * n or len(mono)
    cols = mono[:usable].reshape(-1, n) if usable >= n else mono.reshape(1, -1)
    t = np.arange(cols.shape[0]) * n / sample_rate
    ax_w.fill_between(t, cols.min(axis=1), cols.max(axis=1), color="#2b6cb0", linewidth=0)
    ax_w.set_ylim(-1, 1)
    ax_w.set_ylabel("amplitude")
    ax_w.set_title(title or "waveform")
    spec = _spectrogram_db(mono.astype(np.float64))
    top = spec.max()
    ax_s.imshow(spec, origin="lower", aspect="auto", cmap="magma", vmin=top - 90, vmax=top,
                extent=(0, seconds, 0, sample_rate / 2))
    ax_s.set_yscale("symlog", linthresh=500)
    ax_s.set_ylim(20, sample_rate / 2)
    ax_s.set_ylabel("Hz")
    ax_s.set_xlabel("seconds")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
