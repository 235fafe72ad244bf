"""The analyser against real recordings with a published tempo and key, not only the composer's own renders.

The dev songs (``../shared/data/separation/dev``) are 20 s excerpts of two CC0 releases by
Software-Entwicklungskit (album *Everything is Free*). Their tempo and key are the artist's own, from the
README of each song in github.com/ichbinsoftware/everythingisfree (``src/2.Lithium/README.md``: "BPM 124,
Key G minor"; ``src/4.Potassium/README.md``: "BPM 90, Key C Major"); both are constant-tempo productions.
The held-out songs are not read here (they are kept for independent evaluation).
"""

from __future__ import annotations

import pytest
import soundfile as sf

from echotune_mcp.music.analysis import estimate_key, estimate_tempo, key_pitch_class
from echotune_mcp.music.features import analyze
from echotune_mcp.music.theory import parse_key
from tests.conftest import shared_path

PUBLISHED = {  # song: (bpm, key) as published by the artist
    "lithium": (124.0, "G minor"),
    "potassium": (90.0, "C major"),
}


def _mixture(song: str):
    y, sr = sf.read(str(shared_path("data", "separation", "dev", song, "mixture.flac")), dtype="float32")
    assert sr == 44100 and y.shape == (882_000, 2)  # the excerpt documented in ../shared/data/SOURCES.md
    return y, sr


@pytest.mark.parametrize("song", sorted(PUBLISHED))
def test_tempo_and_key_of_a_real_song_match_the_published_ones(song):
    bpm, key = PUBLISHED[song]
    y, sr = _mixture(song)
    a = analyze(y, sr)
    print(f"\n{song}: {a['tempo']['bpm']} bpm (published {bpm:g}), {a['key']['name']} (published {key}), "
          f"confidences {a['tempo']['confidence']} / {a['key']['confidence']}")
    assert a["tempo"]["bpm"] == pytest.approx(bpm, rel=0.02)
    tonic, mode, _ = parse_key(key)
    assert (key_pitch_class(a["key"]["tonic"]), a["key"]["mode"]) == (tonic, mode)


@pytest.mark.parametrize("song", sorted(PUBLISHED))
def test_half_excerpts_keep_the_beat_level_or_an_octave_of_it_and_the_tonic(song):
    """On 10 s, less evidence: measured (see the report of issue #13) Lithium's second half reads 62 bpm (half
    tempo) and Lithium's first half / Potassium's first half read the parallel mode. The tonic and the tempo up
    to an octave must still hold; anything else (a fifth, a 3:2 tempo) is a real regression."""
    bpm, key = PUBLISHED[song]
    tonic, _, _ = parse_key(key)
    y, sr = _mixture(song)
    for start in (0, 10):
        part = y[start * sr:(start + 10) * sr]
        est, _ = estimate_tempo(part, sr)
        assert min(abs(est / (bpm * f) - 1) for f in (0.5, 1.0, 2.0)) <= 0.02, (song, start, est)
        name, _mode, _ = estimate_key(part, sr)
        assert key_pitch_class(name) == tonic, (song, start, name)
