"""Editing one stem with typed ``changes`` and free text: each change measurably changes that stem's MIDI
and nothing else; the text table; conflicts and ignored changes are reported; bad input names the field."""

from __future__ import annotations

import statistics

import pytest
from pydantic import ValidationError

from echotune_mcp.music.composer import add_stem, compose, edit_stem
from echotune_mcp.music.params import ControlError, resolve_params
from echotune_mcp.music.stem_changes import StemChanges, patterns_for, resolve

SEED = 42


@pytest.fixture(scope="module")
def pop():
    p = resolve_params("pop song in C major, 100 bpm", duration_s=20, seed=3)
    return p, compose(p)


def _edit(piece, stem, changes=None, text=None, seed=SEED):
    p, a = piece
    base, _, _ = edit_stem(a, p, stem, None, seed)
    new, applied, ignored = edit_stem(a, p, stem, text, seed, changes)
    # the other stems are exactly the original ones
    assert [t for t in new.tracks if t.name != stem] == [t for t in a.tracks if t.name != stem]
    return base.track(stem), new.track(stem), applied, ignored


def _body(t, arr_end):
    return [n for n in t.notes if n[0] < arr_end]


def _final_s(piece):
    _, a = piece
    return max(n[0] for n in a.track("drums").notes)  # the last downbeat: kick and crash


def test_octave_shifts_every_pitch_by_twelve(pop):
    base, new, applied, _ = _edit(pop, "lead", {"octave": -1})
    assert [(n[0], n[1], n[2] - 12) for n in base.notes] == [(n[0], n[1], n[2]) for n in new.notes]
    assert applied == [{"change": "octave", "value": -1, "from": "changes"}]
    base, new, _, _ = _edit(pop, "bass", {"octave": 1})
    assert [n[2] + 12 for n in base.notes] == [n[2] for n in new.notes]


@pytest.mark.parametrize("stem", ["drums", "bass", "chords", "lead"])
def test_density_moves_note_count_the_right_way(pop, stem):
    base, sparse, _, _ = _edit(pop, stem, {"density": "sparser"})
    _, busy, _, _ = _edit(pop, stem, {"density": 1.8})
    assert len(sparse.notes) < len(base.notes) < len(busy.notes), (len(sparse.notes), len(base.notes), len(busy.notes))


def test_velocity_shifts_mean_velocity(pop):
    base, new, _, _ = _edit(pop, "chords", {"velocity": -20})
    mean = lambda t: statistics.mean(n[3] for n in t.notes)  # noqa: E731
    assert mean(new) == pytest.approx(mean(base) - 20, abs=1.5)
    _, ff, _, _ = _edit(pop, "chords", {"velocity": "ff"})
    assert mean(ff) > mean(base) + 15
    assert [n[:3] for n in ff.notes] == [n[:3] for n in base.notes]  # loudness only


def _gap(t, end):
    """Mean silence between a note's end and the next later onset in the part."""
    body = _body(t, end)
    starts = sorted({n[0] for n in body})
    gaps = [next(s for s in starts if s > n[0] + 0.01) - n[1] for n in body if starts[-1] > n[0] + 0.01]
    return statistics.mean(gaps)


@pytest.mark.parametrize("stem", ["lead", "chords", "bass"])
def test_articulation_changes_mean_duration(pop, stem):
    end = _final_s(pop)
    dur = lambda t: statistics.mean(n[1] - n[0] for n in _body(t, end))  # noqa: E731
    base, stac, _, _ = _edit(pop, stem, {"articulation": "staccato"})
    _, leg, _, _ = _edit(pop, stem, {"articulation": "legato"})
    assert dur(stac) < 0.6 * dur(base) < 0.6 * dur(leg), (dur(stac), dur(base), dur(leg))
    assert dur(leg) > dur(base) and _gap(leg, end) < 0.5 * _gap(base, end) + 1e-9, (_gap(leg, end), _gap(base, end))
    assert [n[0] for n in stac.notes] == [n[0] for n in base.notes] == [n[0] for n in leg.notes]  # same onsets


def _share(t, beat_s, end, lo, hi):
    """Share of the body's notes whose position within the beat (0..1) lies in [lo, hi]."""
    ph = [(n[0] / beat_s) % 1.0 for n in t.notes if n[0] < end]
    return sum(lo <= x <= hi for x in ph) / len(ph)


def test_swing_delays_offbeat_eighths_on_this_stem_only(pop):
    p, a = pop
    beat = 60.0 / a.bpm
    base, swung, applied, _ = _edit(pop, "drums", {"swing": 1.0})
    end = _final_s(pop)
    # straight: the "and" sits at half the beat; shuffled, it moves to 2/3 (a triplet)
    assert _share(base, beat, end, 0.45, 0.55) > 0.2 and _share(base, beat, end, 0.62, 0.72) < 0.05
    assert _share(swung, beat, end, 0.45, 0.55) < 0.05 and _share(swung, beat, end, 0.62, 0.72) > 0.2
    assert applied == [{"change": "swing", "value": 1.0, "from": "changes"}]


def test_pattern_changes_the_rhythm(pop):
    base, walk, _, _ = _edit(pop, "bass", {"pattern": "walking"})
    _, sixteenths, _, _ = _edit(pop, "bass", {"pattern": "sixteenths"})
    _, root, _, _ = _edit(pop, "bass", {"pattern": "root"})
    onsets = lambda t: [n[0] for n in t.notes]  # noqa: E731
    assert onsets(walk) != onsets(base)
    assert len(root.notes) < len(walk.notes) < len(sixteenths.notes)
    _, rock, _, _ = _edit(pop, "drums", {"pattern": "bossa_nova"})
    assert onsets(rock) != onsets(base)


def test_register_moves_the_mean_pitch(pop):
    mean = lambda t: statistics.mean(n[2] for n in t.notes)  # noqa: E731
    base, high, _, _ = _edit(pop, "lead", {"register": "high"})
    _, low, _, _ = _edit(pop, "lead", {"register": "low"})
    assert mean(low) < mean(base) <= mean(high) or mean(low) <= mean(base) < mean(high)
    assert mean(high) - mean(low) >= 24
    _, at, _, _ = _edit(pop, "lead", {"register": 50})
    assert abs(mean(at) - 50) <= 6


def test_humanize_adds_timing_spread(pop):
    p, a = pop
    grid = 60.0 / a.bpm / 4
    end = _final_s(pop)

    def spread(t):
        return statistics.pstdev(((n[0] / grid + 0.5) % 1.0) - 0.5 for n in t.notes if n[0] < end)

    base, human, _, _ = _edit(pop, "chords", {"humanize": 1.0})
    assert spread(human) > spread(base) + 0.05, (spread(base), spread(human))


def test_half_and_double_time(pop):
    end = _final_s(pop)
    base, half, _, _ = _edit(pop, "drums", {"feel": "half-time"})
    _, double, _, _ = _edit(pop, "drums", {"feel": "double-time"})
    n = lambda t: len(_body(t, end))  # noqa: E731
    assert 0.3 * n(base) < n(half) < 0.7 * n(base) and n(double) > 1.6 * n(base)


# -- free text ---------------------------------------------------------------------------------------------
TEXT = [
    ("lower the volume", "bass", {"velocity": -14}),
    ("turn it down a bit", "lead", {"velocity": -14}),
    ("louder", "drums", {"velocity": 14}),
    ("softer please", "chords", {"velocity": -14}),
    ("not so loud", "lead", {"velocity": -14}),
    ("pianissimo", "lead", {"velocity": "pp"}),
    ("an octave lower", "bass", {"octave": -1}),
    ("take it up an octave", "lead", {"octave": 1}),
    ("two octaves higher", "lead", {"octave": 2}),
    ("more legato", "lead", {"articulation": "legato"}),
    ("choppier", "chords", {"articulation": "staccato"}),
    ("less legato", "lead", {"articulation": "staccato"}),
    ("swing it", "drums", {"feel": "swing"}),
    ("straighten it out", "drums", {"feel": "straight"}),
    ("don't swing", "drums", {"feel": "straight"}),
    ("half-time drums", "drums", {"feel": "half-time"}),
    ("double time", "drums", {"feel": "double-time"}),
    ("shuffle feel", "drums", {"feel": "shuffle"}),
    ("walking bass", "bass", {"pattern": "walking"}),
    ("root and fifth", "bass", {"pattern": "root_fifth"}),
    ("bossa groove", "drums", {"pattern": "bossa_nova"}),
    ("sparser", "lead", {"density": "sparser"}),
    ("busier", "drums", {"density": "busier"}),
    ("not so busy", "drums", {"density": "sparser"}),
    ("more human", "drums", {"humanize": 0.6}),
    ("tighter", "drums", {"humanize": 0.0}),
    ("higher register", "lead", {"register": "high"}),
    ("play it in the low register", "chords", {"register": "low"}),
    ("sparser and quieter, more legato", "lead", {"density": "sparser", "velocity": -14, "articulation": "legato"}),
    ("a different rhythm", "bass", {"variant": 1}),
    ("make it lower", "lead", {"octave": -1}),
    ("bring the level down", "drums", {"velocity": -14}),
    ("lower register, quieter", "bass", {"register": "low", "velocity": -14}),
    ("trap beat", "drums", {"pattern": "trap"}),
]


@pytest.mark.parametrize("text,role,expected", TEXT)
def test_text_maps_onto_changes(text, role, expected):
    req, applied, ignored = resolve(None, text, role, "4/4")
    assert req == expected, (text, applied, ignored)
    assert all(a["from"].startswith("text: ") for a in applied)
    assert not ignored, ignored


def test_lower_the_volume_is_never_an_octave(pop):
    base, new, applied, _ = _edit(pop, "bass", text="lower the volume")
    assert [a["change"] for a in applied] == ["velocity"]
    assert [n[2] for n in new.notes] == [n[2] for n in base.notes]
    assert statistics.mean(n[3] for n in new.notes) < statistics.mean(n[3] for n in base.notes) - 10


def test_explicit_changes_override_text_and_the_conflict_is_reported():
    req, applied, ignored = resolve({"velocity": 10, "octave": 1}, "softer and an octave lower, busier", "lead", "4/4")
    assert req == {"velocity": 10, "octave": 1, "density": "busier"}
    assert {(a["change"], a["from"]) for a in applied} == {("velocity", "changes"), ("octave", "changes"),
                                                           ("density", "text: busier")}
    over = {i["field"]: i for i in ignored if "field" in i}
    assert set(over) == {"velocity", "octave"} and "overrides the text" in over["velocity"]["reason"]


def test_what_cannot_apply_is_ignored_with_why():
    _, applied, ignored = resolve({"swing": 0.5, "octave": 1}, "walking", "drums", "12/8")
    assert applied == []
    reasons = " | ".join(i["reason"] for i in ignored)
    assert "nothing to swing" in reasons and "unpitched" in reasons
    assert "walking" in reasons and "allowed:" in reasons and "metal" in reasons  # metal has a 12/8 groove
    _, _, ignored = resolve(None, "more cowbell", "drums", "4/4")
    assert ignored and "not a change the composer knows" in ignored[0]["reason"]


def test_bad_changes_name_the_field():
    with pytest.raises(ValidationError, match="octave"):
        StemChanges(octave=3)
    with pytest.raises(ValidationError, match="density"):
        StemChanges(density=5)
    with pytest.raises(ValidationError, match="velocity"):
        StemChanges(velocity="fff")
    with pytest.raises(ValidationError):
        StemChanges(tempo=120)  # unknown fields are refused, not dropped
    with pytest.raises(ControlError) as e:
        resolve({"pattern": "polka"}, None, "bass", "4/4")
    assert e.value.field == "changes.pattern" and "walking" in str(e.value)
    assert patterns_for("lead", "4/4") == []


def test_same_seed_same_take_and_new_seed_new_take(pop):
    p, a = pop
    one = edit_stem(a, p, "bass", "busier", 7, {"articulation": "staccato"})[0]
    two = edit_stem(a, p, "bass", "busier", 7, {"articulation": "staccato"})[0]
    three = edit_stem(a, p, "bass", "busier", 8, {"articulation": "staccato"})[0]
    assert one.to_json() == two.to_json() != three.to_json()


def test_add_stem_takes_changes(pop):
    p, a = pop
    plain, _, _ = add_stem(a, p, "strings", "pad", 5)
    new, applied, _ = add_stem(a, p, "strings", "pad", 5, {"register": "high", "velocity": -20})
    added, ref = new.tracks[-1], plain.tracks[-1]
    assert statistics.mean(n[3] for n in added.notes) < statistics.mean(n[3] for n in ref.notes) - 15
    assert statistics.mean(n[2] for n in added.notes) > statistics.mean(n[2] for n in ref.notes)
    assert {x["change"] for x in applied} == {"register", "velocity"}


# -- through the MCP tools -------------------------------------------------------------------------------------
def _text(result) -> str:
    return " ".join(b.text for b in result.content if getattr(b, "type", "") == "text")


async def _job(client, tool, args):
    r = await client.call_tool(tool, {**args, "wait_seconds": 25})
    assert not r.is_error, _text(r)
    data = r.structured_content
    while data["status"] in ("queued", "running"):
        data = (await client.call_tool("get_job", {"job_id": data["job_id"], "wait_seconds": 25})).structured_content
    assert data["status"] == "succeeded", data
    return data


async def test_tools_report_applied_and_ignored_and_refuse_bad_changes(make_client):
    async with make_client(toolsets=("jobs", "artifacts", "compose")) as (client, app):
        first = await _job(client, "generate_music", {"prompt": "pop song, 100 bpm", "duration_s": 4, "seed": 5})
        mix = first["result"]["mix_artifact_id"]
        regen = await _job(client, "regenerate_stem", {
            "artifact": mix, "stem": "bass", "instruction": "lower the volume, with more cowbell",
            "changes": {"pattern": "walking", "articulation": "legato"}})
        res = regen["result"]
        assert {(x["change"], x["value"]) for x in res["applied"]} == {
            ("pattern", "walking"), ("articulation", "legato"), ("velocity", -14)}
        assert any("cowbell" in i["text"] for i in res["ignored"])
        before = len((await client.call_tool("list_artifacts", {})).structured_content["artifacts"])
        for bad, field in [({"pattern": "polka"}, "changes.pattern"), ({"octave": 5}, "octave")]:
            r = await client.call_tool("regenerate_stem", {"artifact": mix, "stem": "bass", "changes": bad})
            assert r.is_error and field in _text(r), _text(r)
        r = await client.call_tool("add_stem", {"artifact": mix, "instrument": "strings", "role": "pad",
                                                "changes": {"pattern": "walking"}})
        assert r.is_error and "changes.pattern" in _text(r) and "none" in _text(r), _text(r)
        after = len((await client.call_tool("list_artifacts", {})).structured_content["artifacts"])
        assert after == before  # nothing stored for refused edits
        a = await _job(client, "add_stem", {"artifact": mix, "instrument": "strings", "changes": {"velocity": "p"}})
        b = await _job(client, "add_stem", {"artifact": mix, "instrument": "strings", "changes": {"velocity": "p"}})
        assert a["result"]["seed"] != b["result"]["seed"]  # a new take per call
        assert a["result"]["applied"] == [{"change": "velocity", "value": "p", "from": "changes"}]
