"""The arrangement itself: determinism, JSON round trip, structure, ending, harmony, and one-stem edits."""

from __future__ import annotations

import io

import mido
import pytest

from echotune_mcp.music.composer import (
    Arrangement,
    add_stem,
    compose,
    edit_stem,
    parse_instruction,
)
from echotune_mcp.music.midi import arrangement_to_midi_bytes
from echotune_mcp.music.params import ControlError, resolve_params
from echotune_mcp.music.theory import key_scale_pcs

from .cases import CASES


@pytest.fixture(scope="module")
def funk():
    p = resolve_params("funk groove in E minor, 100 bpm", duration_s=20, seed=5)
    return p, compose(p)


def test_same_params_same_arrangement_and_midi(funk):
    p, a = funk
    b = compose(p)
    assert a.to_json() == b.to_json()
    assert arrangement_to_midi_bytes(a) == arrangement_to_midi_bytes(b)
    other = compose(resolve_params("funk groove in E minor, 100 bpm", duration_s=20, seed=6))
    assert other.to_json() != a.to_json()


def test_json_round_trip_is_exact(funk):
    _, a = funk
    s = a.to_json()
    b = Arrangement.from_json(s)
    assert b == a and b.to_json() == s and b.key_name == "E minor"


def test_structure_fills_the_duration_and_ends_on_the_tonic(funk):
    p, a = funk
    assert a.sections[0].start_s == 0 and a.sections[-1].end_s == pytest.approx(p.duration_s)
    assert all(x.end_s == pytest.approx(y.start_s) for x, y in zip(a.sections, a.sections[1:]))
    assert 0 < min(s.energy for s in a.sections) <= max(s.energy for s in a.sections) <= 1
    names = [t.name for t in a.tracks]
    assert {"drums", "bass", "chords", "lead"} <= set(names) and len(set(names)) == len(names)
    last_start = max(n[0] for t in a.tracks for n in t.notes)
    assert p.duration_s - last_start >= 60 / p.bpm  # the final chord rings at least a beat
    for t in a.tracks:
        assert t.notes and max(n[1] for n in t.notes) <= p.duration_s + 1e-6
        final = [n for n in t.notes if n[0] == pytest.approx(last_start, abs=1e-3)]
        assert final, f"{t.name} has no final hit"
        if not t.is_drum:
            assert {n[2] % 12 for n in final} <= {4, 7, 11}, (t.name, final)  # E minor tonic triad
            if t.role in ("bass", "lead"):
                assert all(n[2] % 12 == 4 for n in final)
    drums = a.track("drums")
    assert drums.is_drum and any(n[2] == 49 and n[0] == pytest.approx(last_start, abs=1e-3) for n in drums.notes)


def test_drums_have_a_backbeat_and_humanised_timing():
    p = resolve_params("indie rock in D major at 118 bpm", duration_s=20, seed=2)
    a = compose(p)
    beat = 60 / p.bpm
    snares = [n for n in a.track("drums").notes if n[2] == 38]
    assert snares
    beats = [(n[0] / beat) % 4 for n in snares]
    on_backbeat = sum(1 for b in beats if min(abs(b - 1), abs(b - 3)) < 0.1)
    assert on_backbeat / len(snares) > 0.6
    offsets = {round(((n[0] / beat) * 4) % 1, 3) for n in a.track("lead").notes}
    assert len(offsets) > 3, "timing is not humanised"


def test_bass_and_chords_stay_in_the_key():
    """Bass and chord notes in the key's scale (minor keys include the raised leading tone of the
    V chord, counted separately); nothing else chromatic is written."""
    total = in_scale = leading = 0
    for prompt, _, _ in CASES:
        p = resolve_params(prompt, duration_s=30)
        a = compose(p)
        scale = key_scale_pcs(p.key_tonic, p.key_mode)
        lt = (p.key_tonic + 11) % 12
        for t in a.tracks:
            if t.role in ("bass", "chords") and not t.is_drum:
                for n in t.notes:
                    total += 1
                    if n[2] % 12 in scale:
                        in_scale += 1
                    elif p.key_mode == "minor" and n[2] % 12 == lt:
                        leading += 1
    frac = in_scale / total
    print(f"bass+chord notes: {total}, in natural scale {frac:.1%}, minor leading tones {leading}")
    assert (in_scale + leading) / total >= 0.95 and frac >= 0.9


def test_very_short_and_long_pieces():
    for d in (1.0, 3.0, 4.0, 60.0):
        a = compose(resolve_params("ambient pad", duration_s=d, seed=1))
        assert a.duration_s == d and all(t.notes for t in a.tracks)
        assert max(n[1] for t in a.tracks for n in t.notes) <= d + 1e-6


def test_structure_argument_is_followed_when_it_fits():
    p = resolve_params("pop", duration_s=60, bpm=120, structure=["intro", "verse", "chorus", "outro"], seed=1)
    assert [s.name for s in compose(p).sections] == ["intro", "verse", "chorus", "outro"]


def test_instruments_choose_programs():
    p = resolve_params("pop with piano and strings", duration_s=8, seed=1)
    a = compose(p)
    assert a.track("chords").program == 0 and a.track("texture").program == 48


def test_regenerate_stem_keeps_the_others(funk):
    p, a = funk
    b = edit_stem(a, p, "drums", "busier drums", 99)[0]
    for x, y in zip(a.tracks, b.tracks):
        if x.name == "drums":
            assert x.notes != y.notes and len(y.notes) > len(x.notes)
        else:
            assert x is y or x == y
    ja, jb = a.to_dict(), b.to_dict()
    assert [t for t in ja["tracks"] if t["name"] != "drums"] == [t for t in jb["tracks"] if t["name"] != "drums"]
    assert a.to_json() == compose(p).to_json(), "the original arrangement was modified"


@pytest.mark.parametrize("instruction,check", [
    ("an octave lower", lambda old, new: _mean_pitch(new) == pytest.approx(_mean_pitch(old) - 12, abs=2.5)),
    ("octave higher please", lambda old, new: _mean_pitch(new) == pytest.approx(_mean_pitch(old) + 12, abs=2.5)),
    ("sparser", lambda old, new: len(new.notes) < len(old.notes)),
    ("more notes", lambda old, new: len(new.notes) > len(old.notes)),
    ("softer", lambda old, new: _mean_vel(new) < _mean_vel(old) - 8 and new.volume < old.volume),
    ("louder", lambda old, new: _mean_vel(new) > _mean_vel(old) + 4 and new.volume > old.volume),
    ("different rhythm", lambda old, new: [n[0] for n in new.notes] != [n[0] for n in old.notes]),
    ("make it more purple", lambda old, new: new.notes != old.notes),
    (None, lambda old, new: new.notes != old.notes),
])
def test_instructions(funk, instruction, check):
    p, a = funk
    b = edit_stem(a, p, "bass", instruction, 42)[0]
    assert check(a.track("bass"), b.track("bass")), instruction


def _mean_pitch(t):
    return sum(n[2] for n in t.notes) / len(t.notes)


def _mean_vel(t):
    return sum(n[3] for n in t.notes) / len(t.notes)


def test_parse_instruction():
    assert parse_instruction("busier drums, an octave lower and louder") == \
        {"density": 1.6, "octave": -1, "velocity_delta": 14, "volume_delta": 14}
    assert parse_instruction("whatever") == {} and parse_instruction(None) == {}


def test_regenerate_unknown_stem_names_the_field(funk):
    p, a = funk
    with pytest.raises(ControlError) as exc:
        edit_stem(a, p, "theremin", None, 1)
    assert exc.value.field == "stem" and "drums" in str(exc.value)


def test_add_stem_adds_one_unique_track(funk):
    p, a = funk
    b = add_stem(a, p, "strings", None, 7)[0]
    assert len(b.tracks) == len(a.tracks) + 1 and b.tracks[:-1] == a.tracks
    new = b.tracks[-1]
    assert new.name == "strings" and new.program == 48 and new.role == "pad" and new.notes
    c = add_stem(b, p, "strings pad", None, 8)[0]
    assert c.tracks[-1].name == "strings_2" and c.tracks[-1].role == "pad"
    d = add_stem(c, p, "arpeggio synth", None, 9)[0]
    assert d.tracks[-1].role == "arpeggio" and d.tracks[-1].name == "arpeggio_synth"
    e = add_stem(d, p, "percussion", None, 1)[0]
    assert e.tracks[-1].is_drum and e.tracks[-1].name == "percussion"
    f = add_stem(e, p, "cello", "counter", 1)[0]
    assert f.tracks[-1].role == "counter"
    names = [t.name for t in f.tracks]
    assert len(names) == len(set(names))
    with pytest.raises(ControlError) as exc:
        add_stem(a, p, "kazoo", None, 1)
    assert exc.value.field == "instrument"
    with pytest.raises(ControlError) as exc:
        add_stem(a, p, "piano", "yodel", 1)
    assert exc.value.field == "role"


def test_midi_export(funk):
    _, a = funk
    mid = mido.MidiFile(file=io.BytesIO(arrangement_to_midi_bytes(a)))
    assert mid.type == 1 and len(mid.tracks) == len(a.tracks) + 1
    metas = {m.type: m for m in mid.tracks[0] if m.is_meta}
    assert mido.tempo2bpm(metas["set_tempo"].tempo) == pytest.approx(100) and metas["key_signature"].key == "Em"
    for track, mt in zip(a.tracks, mid.tracks[1:]):
        assert mt.name == track.name
        ons = [m for m in mt if m.type == "note_on" and m.velocity > 0]
        assert len(ons) == len(track.notes)
        channels = {m.channel for m in mt if hasattr(m, "channel")}
        assert channels == ({9} if track.is_drum else channels - {9})
        if not track.is_drum:
            assert any(m.type == "program_change" and m.program == track.program for m in mt)
    assert abs(mid.length - a.duration_s) < 0.05


def test_many_control_combinations_compose_cleanly():
    """A seeded sweep over genres, moods, instruments, structures, tempi and lengths (edge cases included)."""
    import random

    from echotune_mcp.music.params import GENRES, INSTRUMENTS, MOODS, SECTIONS

    rng = random.Random(0)
    for i in range(80):
        d = rng.choice([0.3, 1.0, 2.5, 9.0, 33.0, 300.0])
        p = resolve_params("x", duration_s=d, genre=rng.choice(list(GENRES)), mood=rng.choice(list(MOODS)),
                           instruments=rng.sample(list(INSTRUMENTS), rng.randint(0, 3)),
                           structure=rng.choice([None, rng.choices(list(SECTIONS), k=rng.randint(1, 10))]),
                           bpm=rng.choice([None, 40, 63.5, 180, 240]), key=rng.choice([None, "a#m", "Gb major"]),
                           seed=i)
        a = compose(p)
        names = [t.name for t in a.tracks]
        assert len(set(names)) == len(names) and Arrangement.from_json(a.to_json()) == a
        assert a.sections[-1].end_s == pytest.approx(d)
        for t in a.tracks:
            assert t.notes
            assert all(0 <= s < e <= d + 1e-6 and 0 <= p_ <= 127 and 1 <= v <= 127 for s, e, p_, v in t.notes)
        edited = edit_stem(a, p, names[-1], "two octaves lower, octave lower", i)[0]
        assert all(24 <= n[2] <= 108 for n in edited.tracks[-1].notes) or edited.tracks[-1].is_drum
