"""Transcription fixtures: composer pieces rendered part by part (their own MIDI is the ground truth)."""

from __future__ import annotations

import pytest

TOOLSETS = ("jobs", "artifacts", "audio", "licensing")


@pytest.fixture(scope="module")
def funk_piece():
    """A 10 s funk piece (drums, bass, chords, lead) and each part rendered alone through FluidSynth.

    Rendered with TimGM6mb (ships inside pretty_midi, so always present) rather than the composer's default,
    which may become FluidR3 where installed: the F1 floors were measured on this exact audio.
    """
    pytest.importorskip("fluidsynth")
    from pathlib import Path

    import pretty_midi

    from tools.bench_transcription import composer_case

    return composer_case("funk groove in E minor", 10.0, seed=7,
                         soundfont=Path(pretty_midi.__file__).parent / "TimGM6mb.sf2")


@pytest.fixture
def allowed(tmp_path):
    """The settings fixture's allowed root (local files are read only inside it)."""
    return tmp_path / "allowed"
