"""Rendering (separate, aligned, bit-identical stems) and mastering (loudness, true peak) on controlled input."""

from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest

from echotune_mcp.music.composer import compose
from echotune_mcp.music.master import (
    integrated_loudness,
    limiter_gain,
    mix_and_master,
    peak_envelope,
    true_peak_dbfs,
)
from echotune_mcp.music.params import resolve_params
from echotune_mcp.music.render import (
    TAIL_S,
    FLUID_R3_PATHS,
    bundled_soundfont,
    default_soundfont,
    render_stems,
    soundfont_info,
)

SR = 44100


@pytest.fixture(scope="module")
def piece():
    return compose(resolve_params("happy house groove, 124 bpm in A major", duration_s=6, seed=3))


def test_stems_are_separate_aligned_and_bit_identical(piece):
    progress: list[tuple[float, str]] = []
    a = render_stems(piece, SR, on_progress=lambda f, m: progress.append((f, m)))
    b = render_stems(piece, SR)
    assert list(a) == [t.name for t in piece.tracks]
    n = round((piece.duration_s + TAIL_S) * SR)
    for name, audio in a.items():
        assert audio.dtype == np.float32 and audio.shape == (n, 2)
        assert np.array_equal(audio, b[name]), f"{name} differs between two renders"
        assert np.sqrt(np.mean(audio ** 2)) > 1e-3, f"{name} is silent"
    assert any(m.startswith("rendering bass: ") for _, m in progress)
    assert all(0 <= f <= 1 for f, _ in progress) and [f for f, _ in progress] == sorted(f for f, _ in progress)


def test_preview_renders_only_the_opening(piece):
    full = render_stems(piece, SR)
    head = render_stems(piece, SR, until_s=2.0)
    for name in full:
        assert head[name].shape == (2 * SR, 2)
        cut = 2 * SR - int(0.02 * SR)
        assert np.array_equal(head[name][:cut], full[name][:cut])


def test_soundfont_info():
    """The default is Debian's FluidR3_GM (MIT) where installed, else the bundled TimGM6mb (GPL); the recorded
    licence is the one of the file actually used."""
    info = soundfont_info(None)
    assert soundfont_info(default_soundfont()) == info and len(info["sha256"]) == 64
    fluid = next((p for p in FLUID_R3_PATHS if p.is_file()), None)
    if fluid is not None:
        assert info["name"] == "FluidR3_GM.sf2" and info["license"]["id"] == "MIT"
    else:
        assert info["name"] == "TimGM6mb.sf2" and info["license"]["id"] == "GPL-2.0-or-later"
    bundled = soundfont_info(bundled_soundfont())
    assert bundled["name"] == "TimGM6mb.sf2" and bundled["license"]["id"] == "GPL-2.0-or-later"


def test_soundfont_licence_follows_content_not_name(tmp_path):
    """A renamed copy of a known soundfont keeps its licence (recognised by its hash)."""
    copy = tmp_path / "my_font.sf2"
    copy.write_bytes(bundled_soundfont().read_bytes())
    assert soundfont_info(copy)["license"]["id"] == "GPL-2.0-or-later"


def _noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (level * rng.standard_normal((int(seconds * SR), 2))).astype(np.float32)


def test_loudness_matches_pyloudnorm():
    y = _noise(5, 0.05)
    y[SR:2 * SR] *= 0.01  # something for the gates to do
    assert integrated_loudness(y, SR) == pytest.approx(pyloudnorm.Meter(SR).integrated_loudness(y.astype(np.float64)),
                                                       abs=0.01)


def test_true_peak_sees_inter_sample_peaks():
    t = np.arange(SR) / SR
    # a tone at fs/4 sampled 45 degrees off its crests: samples at 0.707, true peak at 1.0 (+3 dB)
    y = np.sin(2 * np.pi * (SR / 4) * t + np.pi / 4).astype(np.float64) * 0.5
    assert 20 * np.log10(np.abs(y).max()) == pytest.approx(-9.03, abs=0.05)
    assert true_peak_dbfs(y, SR) == pytest.approx(-6.02, abs=0.3)


def test_limiter_gain_never_lets_a_peak_through():
    rng = np.random.default_rng(1)
    env = np.abs(rng.standard_normal(SR)) * 0.3
    env[1000] = 3.0
    env[5000:5100] = 2.0
    g = limiter_gain(env, SR, 0.8)
    assert np.all(env * g <= 0.8 + 1e-9) and g.max() <= 1.0
    assert np.all(np.abs(np.diff(g)) < 0.05), "gain must move smoothly"


def test_master_hits_target_and_ceiling_on_peaky_material():
    y = _noise(8, 0.02, seed=2)
    y[::SR // 2] = 0.9  # clicks: crest factor far above what the ceiling allows
    mix, stats = mix_and_master({"a": y[:, :], "b": y[::-1].copy()}, SR)
    assert mix.dtype == np.float32 and mix.shape == y.shape
    assert pyloudnorm.Meter(SR).integrated_loudness(mix.astype(np.float64)) == pytest.approx(-14, abs=0.5)
    assert true_peak_dbfs(mix, SR) <= -1.0 + 0.05
    assert stats["lufs"] == pytest.approx(-14, abs=0.5) and stats["true_peak_dbfs"] <= -1.0 + 1e-6
    assert stats["limiter_max_reduction_db"] > 3


def test_master_of_silence_does_not_explode():
    mix, stats = mix_and_master({"a": np.zeros((SR, 2), np.float32)}, SR)
    assert not np.any(mix) and stats["silent"]


def test_peak_envelope_matches_full_oversampling_above_the_floor():
    from scipy.signal import upfirdn

    from echotune_mcp.music import master

    y = _noise(1, 0.2, seed=4).astype(np.float64)
    env = peak_envelope(y, 0.0)
    up = np.abs(np.vstack([upfirdn(master._TP_FIR, y[:, c], up=4)[master._DELAY: master._DELAY + 4 * SR]
                           for c in range(2)])).max(axis=0).reshape(-1, 4).max(axis=1)
    ref = np.maximum(up, np.concatenate([[0], up[:-1]]))
    assert np.allclose(env[1:-1], np.maximum(ref[1:-1], np.abs(y[1:-1]).max(axis=1)), atol=1e-4)
