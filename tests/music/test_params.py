"""Controls: what the prompt text says, explicit arguments winning, and impossible controls refused by field."""

from __future__ import annotations

import pytest

from echotune_mcp.music.params import (
    GENRES,
    INSTRUMENTS,
    MOODS,
    ControlError,
    ResolvedParams,
    resolve_params,
)


def test_tables_are_big_enough():
    assert len(GENRES) >= 10 and len(MOODS) >= 6
    for g in ("lofi hip hop", "house", "techno", "rock", "pop", "jazz", "ambient", "cinematic", "funk", "drum and bass"):
        assert g in GENRES
    assert all(0 <= spec.program <= 127 for spec in INSTRUMENTS.values())


@pytest.mark.parametrize("prompt,expect", [
    ("warm lofi hip hop with piano, 84 bpm in D minor",
     {"genre": "lofi hip hop", "mood": "calm", "bpm": 84, "key": "D minor", "instruments": ("piano",)}),
    ("dark drum and bass with synth bass in F# minor", {"genre": "drum and bass", "mood": "dark", "key": "F# minor",
                                                        "instruments": ("synth bass",)}),
    ("happy pop in Bb major with piano and strings", {"genre": "pop", "mood": "happy", "key": "Bb major",
                                                      "instruments": ("piano", "strings")}),
    ("slow sad cinematic piece, key of C# minor, cello and choir",
     {"genre": "cinematic", "mood": "sad", "key": "C# minor", "instruments": ("cello", "choir")}),
    ("jazz in Eb", {"genre": "jazz", "key": "Eb major"}),
    ("techno, 130BPM", {"genre": "techno", "bpm": 130}),
])
def test_text_extraction(prompt, expect):
    r = resolve_params(prompt, duration_s=10)
    for field, value in expect.items():
        assert getattr(r, field) == value, (field, getattr(r, field))
    assert set(r.from_text) >= set(expect) - {"instruments"} | ({"instruments"} if "instruments" in expect else set())


def test_tempo_words_move_within_the_genre_range():
    lo, hi = GENRES["house"].tempo
    fast = resolve_params("fast house", duration_s=5).bpm
    slow = resolve_params("slow house", duration_s=5).bpm
    assert slow < fast and "bpm" in resolve_params("fast house", duration_s=5).from_text
    assert lo * 0.85 <= slow <= fast <= hi * 1.15


def test_explicit_arguments_win_and_are_not_marked_from_text():
    r = resolve_params("jazz in D minor at 90 bpm with flute", duration_s=8, genre="house", bpm=125, key="F# major",
                       instruments=["rhodes"], mood="dark")
    assert (r.genre, r.bpm, r.key, r.key_tonic, r.key_mode, r.instruments, r.mood) == \
        ("house", 125.0, "F# major", 6, "major", ("rhodes",), "dark")
    assert r.from_text == ()


def test_unknown_words_are_fine_and_defaults_resolve():
    r = resolve_params("something nice with zorblax vibes", duration_s=5)
    assert r.genre in GENRES and r.mood in MOODS and 40 <= r.bpm <= 240 and r.key_mode in ("major", "minor")


def test_seed_is_derived_reproducibly_and_recorded():
    a = resolve_params("upbeat house", duration_s=6)
    b = resolve_params("upbeat house", duration_s=6)
    c = resolve_params("upbeat house!", duration_s=6)
    assert a.seed == b.seed and isinstance(a.seed, int) and a.seed != c.seed
    assert resolve_params("upbeat house", duration_s=6, seed=5).seed == 5


def test_round_trip_through_dict():
    r = resolve_params("piano and strings, sad, 70 bpm in Ab minor", duration_s=12, structure=["intro", "chorus"])
    d = r.to_dict()
    assert isinstance(d["from_text"], list) and ResolvedParams.from_dict(d) == r


@pytest.mark.parametrize("kwargs,field", [
    ({"bpm": 900}, "bpm"), ({"bpm": 39.9}, "bpm"), ({"key": "H major"}, "key"), ({"key": "C lydian-ish"}, "key"),
    ({"duration_s": 0}, "duration_s"), ({"duration_s": -3}, "duration_s"), ({"duration_s": 301}, "duration_s"),
    ({"genre": "polka-metal"}, "genre"), ({"mood": "hangry"}, "mood"), ({"instruments": ["kazoo-of-doom"]}, "instruments"),
    ({"structure": ["verse", "yodel"]}, "structure"), ({"structure": []}, "structure"),
])
def test_impossible_controls_raise_control_error_naming_the_field(kwargs, field):
    args = {"duration_s": 10.0, **kwargs}
    with pytest.raises(ControlError) as exc:
        resolve_params("something", **args)
    assert isinstance(exc.value, ValueError) and exc.value.field == field and field in str(exc.value)
    if field in ("genre", "mood", "instruments", "structure"):
        assert "allowed" in str(exc.value)


def test_text_tempo_out_of_range_is_refused():
    with pytest.raises(ControlError) as exc:
        resolve_params("house at 900 bpm", duration_s=5)
    assert exc.value.field == "bpm"


def test_max_duration_is_the_callers():
    resolve_params("x", duration_s=100, max_duration_s=120)
    with pytest.raises(ControlError):
        resolve_params("x", duration_s=130, max_duration_s=120)
