"""The DSP fallback against the scaled mixture on every stem of the dev songs, with the margins measured.

bss_eval SDR with a 512-tap filter scores the best filtered copy of an estimate, so "the mixture as the
estimate" is the scaled-mixture baseline: a separator that is no better than handing back the mix scores
the same. Margins measured on these 12 s excerpts (docs/BENCHMARKS.md, issue #17): lithium drums +3.9,
bass +6.0, other +5.2, vocals +4.6; potassium drums +8.5, bass +1.6, other +6.6, vocals +16.3 dB. The
floors leave room for library round-off, not for a regression.
"""

from __future__ import annotations

import time

import fast_bss_eval  # dev extra; the score is the point of this test
import numpy as np
import pytest

from echotune_mcp.music.dsp_separation import SOURCES, repeating_background, separate_dsp

from .conftest import dev_excerpt

FLOORS = {  # dB above the scaled mixture
    "lithium": {"drums": 3.0, "bass": 5.0, "other": 4.0, "vocals": 3.5},
    "potassium": {"drums": 7.5, "bass": 1.0, "other": 5.5, "vocals": 14.0},
}


def _sdr(ref: np.ndarray, est: np.ndarray) -> float:
    return float(np.mean(fast_bss_eval.sdr(ref.T, est.T, filter_length=512)))


@pytest.mark.parametrize("song", sorted(FLOORS))
def test_every_stem_beats_the_scaled_mixture(song):
    mix, sr, refs = dev_excerpt(song, 12.0, start_s=4.0)
    t0 = time.perf_counter()
    est = separate_dsp(mix, sr)
    took = time.perf_counter() - t0
    assert np.abs(sum(est.values()) - mix).max() < 1e-4  # still masks that sum to one
    margins = {s: _sdr(refs[s], est[s]) - _sdr(refs[s], mix) for s in SOURCES}
    print(f"\n{song}: " + ", ".join(f"{s} {m:+.2f} dB" for s, m in margins.items())
          + f"; {took / 12.0:.2f} x real time")
    for s in SOURCES:
        assert margins[s] >= FLOORS[song][s], (song, s, margins[s])
    assert took < 12.0 * 3  # bounded: well under 3x real time even on a loaded 2-core machine


def test_a_loop_is_background_and_a_new_line_is_foreground():
    """REPET-SIM on a magnitude grid: a bar that recurs is background, a note heard once stands out."""
    rng = np.random.default_rng(0)
    sr, n_fft, hop = 22050, 4096, 2048
    bar = np.abs(rng.standard_normal((2049, 5))) + 0.1
    mag = np.tile(bar, (1, 60))  # the same bar sixty times (~28 s): every frame has 20+ copies 2 s away
    mag[300, 150:153] += 50.0  # a "vocal" note once
    bg = repeating_background(mag, sr, n_fft, hop)
    assert np.all(bg <= mag + 1e-9)
    assert bg[300, 150:153].max() < 5.0  # the once-only note is not in the background
    assert np.allclose(bg[:, :150], mag[:, :150])  # the loop is


def test_too_short_to_repeat_is_all_foreground():
    mag = np.ones((513, 10))
    assert not repeating_background(mag, 22050, 1024, 256).any()
