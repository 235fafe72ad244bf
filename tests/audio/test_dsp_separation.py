"""The DSP fallback scored like a separator: SDR / SI-SDR against the true stems of the dev songs."""

from __future__ import annotations

import fast_bss_eval  # dev extra; the score is the point of this test
import numpy as np
import pytest

from echotune_mcp.music.dsp_separation import SOURCES, separate_dsp

from .conftest import dev_excerpt


def _scores(ref: np.ndarray, est: np.ndarray) -> tuple[float, float]:
    """(bss_eval SDR, SI-SDR) in dB, averaged over channels."""
    sdr = float(np.mean(fast_bss_eval.sdr(ref.T, est.T, filter_length=512)))
    si = float(np.mean(fast_bss_eval.si_sdr(ref.T, est.T, zero_mean=False)))
    return sdr, si


@pytest.mark.parametrize("song", ["lithium", "potassium"])
def test_dsp_beats_the_mixture_on_drums_and_bass(song):
    mix, sr, refs = dev_excerpt(song, 12.0, start_s=4.0)
    est = separate_dsp(mix, sr)
    assert set(est) == set(SOURCES)
    assert np.abs(sum(est.values()) - mix).max() < 1e-4  # masks sum to one
    print(f"\n{song}: stem   SDR(dsp) SDR(mix)  SI-SDR(dsp) SI-SDR(mix)")
    for s in SOURCES:
        dsp, base = _scores(refs[s], est[s]), _scores(refs[s], mix)
        print(f"  {s:7s} {dsp[0]:7.2f} {base[0]:7.2f}  {dsp[1]:9.2f} {base[1]:9.2f}")
        if s in ("drums", "bass"):
            assert dsp[0] > base[0] and dsp[1] > base[1], (s, dsp, base)


def test_mono_and_short_input():
    rng = np.random.default_rng(0)
    for shape in ((22050, 1), (300, 2)):
        x = 0.1 * rng.standard_normal(shape).astype(np.float32)
        est = separate_dsp(x, 22050)
        assert all(v.shape == shape for v in est.values())
        assert np.abs(sum(est.values()) - x).max() < 1e-4
