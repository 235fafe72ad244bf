"""The composer backend end to end: compose → render stems → master → encode, with progress.

Pure functions over arrays and bytes (no MCP, no storage) so the toolset stays thin and the
benchmark and tests can drive the same path. Runs in a worker thread: ``progress`` is called from
that thread and may raise to cancel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio_io import encode_audio

Progress = Callable[[float, str], None]
PREVIEW_SECONDS = 8.0


@dataclass
class RenderedPiece:
    """Everything one generation produced, ready to become artifacts."""

    arrangement: Any
    stems: dict[str, np.ndarray]
    mix: np.ndarray
    master_stats: dict[str, Any]
    sample_rate: int
    midi: bytes
    extra: dict[str, Any] = field(default_factory=dict)


def _scaled(progress: Progress | None, lo: float, hi: float) -> Callable[[float, str], None] | None:
    if progress is None:
        return None
    return lambda f, msg: progress(lo + (hi - lo) * max(0.0, min(1.0, f)), msg)


def render_preview(arrangement: Any, *, sample_rate: int, soundfont: Path | None,
                   seconds: float = PREVIEW_SECONDS) -> tuple[np.ndarray, dict[str, Any]]:
    """The first few seconds, mixed and mastered: published before the full piece is done."""
    from .master import mix_and_master
    from .render import render_stems

    stems = render_stems(arrangement, sample_rate=sample_rate, soundfont=soundfont, until_s=seconds)
    return mix_and_master(stems, sample_rate)


def render_piece(arrangement: Any, *, sample_rate: int, soundfont: Path | None, progress: Progress | None = None,
                 reuse_stems: dict[str, np.ndarray] | None = None) -> RenderedPiece:
    """Render every stem (or only those not in ``reuse_stems``), then mix and master."""
    from .master import mix_and_master
    from .midi import arrangement_to_midi_bytes
    from .render import render_stems

    reuse = reuse_stems or {}
    todo = [t for t in arrangement.tracks if t.name not in reuse]
    if todo:
        partial = _partial_arrangement(arrangement, {t.name for t in todo})
        rendered = render_stems(partial, sample_rate=sample_rate, soundfont=soundfont,
                                on_progress=_scaled(progress, 0.0, 0.9))
    else:
        rendered = {}
    stems = {t.name: (rendered[t.name] if t.name in rendered else reuse[t.name]) for t in arrangement.tracks}
    stems = _align(stems)
    if progress:
        progress(0.92, "mixing and mastering")
    mix, stats = mix_and_master(stems, sample_rate)
    return RenderedPiece(arrangement=arrangement, stems=stems, mix=mix, master_stats=stats,
                         sample_rate=sample_rate, midi=arrangement_to_midi_bytes(arrangement))


def _partial_arrangement(arrangement: Any, names: set[str]) -> Any:
    import copy

    part = copy.copy(arrangement)
    part.tracks = [t for t in arrangement.tracks if t.name in names]
    return part


def _align(stems: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Stems reused from an earlier render may differ in length by a tail; pad all to the longest."""
    n = max(s.shape[0] for s in stems.values())
    return {k: (v if v.shape[0] == n else np.pad(v, ((0, n - v.shape[0]), (0, 0)))) for k, v in stems.items()}


def encode(samples: np.ndarray, sample_rate: int, fmt: str, tags: dict[str, str] | None = None) -> bytes:
    return encode_audio(samples, sample_rate, fmt, tags)
