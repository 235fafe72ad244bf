"""How song requests in plain English are understood: a table of real-world prompts, then the rules
behind it (negation, places vs keys, blends, unknown genres, arguments over text, part limits)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from echotune_mcp.music.interpret import (
    _UNKNOWN_GENRES,
    interpret_request,
    limit_parts,
    nearest_styles,
    read_prompt,
    unknown_genre_target,
)
from echotune_mcp.music.params import ControlError, parse_prompt, resolve_params
from echotune_mcp.music.styles import STYLES

CASES = json.loads((Path(__file__).parent / "prompts.json").read_text())["cases"]
FIELDS = ("genre", "mood", "tempo", "key", "meter", "feel", "instruments", "structure")
SOURCES = {"argument", "prompt", "default", "style default"}


def test_the_table_is_big_and_varied():
    assert len(CASES) >= 60
    assert len({c["prompt"] for c in CASES}) == len(CASES)
    named = {c["genre"] for c in CASES if "genre" in c}
    assert len(named) >= 20, named


@pytest.mark.parametrize("case", CASES, ids=[c["prompt"][:48] for c in CASES])
def test_prompt_table(case):
    p, it = interpret_request(case["prompt"], duration_s=30)
    for f in FIELDS:
        rec = it[f]
        assert set(rec) >= {"value", "source", "words", "note"} and rec["source"] in SOURCES, (f, rec)
    for f in ("genre", "mood", "meter", "feel"):
        if f in case:
            assert it[f]["value"] == case[f], (f, it[f])
            assert getattr(p, f) == case[f]
    for f in ("genre", "mood", "tempo", "key", "meter", "feel"):
        if f + "_source" in case:
            assert it[f]["source"] == case[f + "_source"], (f, it[f])
    if "genre_not" in case:
        assert p.genre != case["genre_not"]
    if "genre_note" in case:
        assert case["genre_note"] in (it["genre"]["note"] or ""), it["genre"]
    if "bpm" in case:
        assert p.bpm == case["bpm"] and it["tempo"]["source"] == "prompt"
    if "tempo_max" in case:
        assert p.bpm <= case["tempo_max"]
    if "key" in case:
        assert p.key == case["key"] and it["key"]["source"] == "prompt"
    if "key_mode" in case:
        assert p.key_mode == case["key_mode"]
    if "instruments" in case:
        assert set(case["instruments"]) <= set(p.instruments), p.instruments
        if not case["instruments"]:
            assert p.instruments == ()
    for inst in case.get("instruments_exclude", []):
        assert inst not in p.instruments
    if "instruments_note" in case:
        assert case["instruments_note"] in (it["instruments"]["note"] or ""), it["instruments"]
    if "negated" in case:
        got = [[n["field"], n["value"]] for n in it["negated"]]
        assert sorted(got) == sorted(case["negated"]), it["negated"]
        assert all(n["words"] and n["effect"] for n in it["negated"])
    if "not_understood" in case:
        texts = " | ".join(n["text"] for n in it["not_understood"])
        if not case["not_understood"]:
            assert not it["not_understood"], it["not_understood"]
        for piece in case["not_understood"]:
            assert piece in texts, it["not_understood"]
        assert all(n["why"] for n in it["not_understood"])
    if "structure" in case:
        assert list(p.structure) == case["structure"] and it["structure"]["source"] == "prompt"
    for sec in case.get("structure_has", []):
        assert sec in p.structure
    for sec in case.get("structure_lacks", []):
        assert sec not in p.structure, p.structure
    if "verse_count" in case:
        assert p.structure.count("verse") == case["verse_count"], p.structure
    if "only" in case:
        assert sorted(p.only) == sorted(case["only"])
    if "without" in case:
        assert sorted(p.without) == sorted(case["without"])


# -- places are settings, keys need key syntax ---------------------------------------------------------
@pytest.mark.parametrize("prompt", ["in a coffee shop", "music in a bar", "something at a wedding", "in a club",
                                    "a song in a day", "jazz in a cozy cabin", "in an airport lounge"])
def test_in_a_place_is_never_a_key(prompt):
    p, it = interpret_request(prompt, duration_s=10)
    assert it["key"]["source"] == "default", it["key"]
    assert read_prompt(prompt).key is None


@pytest.mark.parametrize("prompt,key", [("in A minor", "A minor"), ("key of F#", "F# major"),
                                        ("in the key of E", "E major"), ("Bb major groove", "Bb major"),
                                        ("in c# minor", "C# minor"), ("in F sharp minor", "F# minor"),
                                        ("in E flat", "Eb major"), ("in Am", "A minor"), ("in D", "D major")])
def test_real_key_syntax_is_a_key(prompt, key):
    p, it = interpret_request(prompt, duration_s=10)
    assert p.key == key and it["key"]["source"] == "prompt" and it["key"]["words"], it["key"]


def test_a_minor_key_sets_only_the_mode():
    p, it = interpret_request("a minor key piano piece", duration_s=10)
    assert p.key_mode == "minor" and "mode only" in it["key"]["note"]


# -- negation ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("prompt,mood", [("not sad", "sad"), ("nothing too dark", "dark"),
                                         ("I don't want it to be sad", "sad"), ("no spooky stuff", "dark"),
                                         ("less gloomy please", "sad")])
def test_a_negated_mood_is_never_the_mood(prompt, mood):
    p, it = interpret_request(prompt, duration_s=10)
    assert p.mood != mood
    assert [n["value"] for n in it["negated"] if n["field"] == "mood"] == [mood]
    assert "sad" not in it["mood"]["words"]


def test_negating_the_style_default_mood_picks_the_opposite_and_says_so():
    assert STYLES["blues"].default_mood  # whatever blues' own mood is, ruling it out gives another one
    own = STYLES["blues"].default_mood
    p, it = interpret_request(f"blues, not {own}", duration_s=10)
    assert p.mood != own and "rules out" in it["mood"]["note"]


def test_negation_scope_ends_at_contrast_and_punctuation():
    p, it = interpret_request("no drums, but with piano and a happy mood", duration_s=10)
    assert p.without == ("drums",) and "piano" in p.instruments and p.mood == "happy"
    p2, _ = interpret_request("without drums or bass, calm", duration_s=10)
    assert set(p2.without) == {"drums", "bass"} and p2.mood == "calm"
    p3, _ = interpret_request("not sad and upbeat", duration_s=10)
    assert p3.mood == "happy"


def test_a_ruled_out_genre_is_not_used_even_as_default():
    for prompt in ("anything but pop", "not pop", "no pop please"):
        p, it = interpret_request(prompt, duration_s=10)
        assert p.genre != "pop" and it["negated"][0]["field"] == "genre"


# -- blends and unknown genres ----------------------------------------------------------------------------
@pytest.mark.parametrize("prompt,genre,influence", [
    ("funky disco house", "house", "funk"), ("jazzy hip hop", "lofi hip hop", "jazz"),
    ("reggae-inspired pop", "pop", "reggae"), ("rock with blues influences", "rock", "blues"),
    ("country waltz", "country", None), ("jazz waltz", "jazz", None), ("orchestral dubstep", "dubstep", "orchestral"),
])
def test_blends_take_the_head_noun_and_record_influences(prompt, genre, influence):
    p, it = interpret_request(prompt, duration_s=10)
    assert p.genre == genre, it["genre"]
    if influence:
        assert influence in it["genre"]["note"]
    if "waltz" in prompt:
        assert p.meter == "3/4"


def test_an_influence_lends_its_feel():
    p, it = interpret_request("jazzy house", duration_s=10)
    assert p.genre == "house" and p.feel == "swing" and "jazz influence" in it["feel"]["note"]


@pytest.mark.parametrize("word", sorted(_UNKNOWN_GENRES))
def test_unknown_genres_map_to_a_near_style_and_say_so(word):
    traits, why, prefer = _UNKNOWN_GENRES[word]
    target, _ = unknown_genre_target(word)
    assert target in STYLES and (prefer is None or prefer == target)
    assert target in nearest_styles(traits, 6), "the curated choice must be backed by the traits"
    p, it = interpret_request(f"a {word} track", duration_s=10)
    assert p.genre == target
    if it["genre"]["note"] and "unknown genre" in it["genre"]["note"]:
        assert f"nearest style '{target}'" in it["genre"]["note"]
    else:  # the composer lists it as an alias of a style itself
        assert it["genre"]["source"] == "prompt"


@pytest.mark.parametrize("word", ["shoegaze", "grunge", "emo", "sea shanty", "polka", "j-pop", "cumbia",
                                  "hyperpop", "baroque", "chiptune", "metal", "trap", "waltz", "tango",
                                  "zydeco", "vaporcore", "glitchhop"])
def test_never_silently_pop(word):
    p, it = interpret_request(f"some {word}", duration_s=10)
    assert it["genre"]["source"] == "prompt" and it["genre"]["words"], it["genre"]
    if p.genre == "pop":
        assert it["genre"]["note"], "pop must be explained"


def test_no_genre_at_all_is_the_default_and_says_so():
    p, it = interpret_request("make me something nice", duration_s=10)
    assert it["genre"]["source"] == "default" and it["genre"]["note"]


# -- tempo, meter, feel, structure --------------------------------------------------------------------------
@pytest.mark.parametrize("prompt,bpm", [("at 90", 90), ("around 100 bpm", 100), ("90-ish", 90), ("95ish bpm", 95),
                                        ("100-110 bpm", 105), ("between 80 and 90 bpm", 85), ("tempo 128", 128),
                                        ("120BPM", 120), ("~75 bpm", 75)])
def test_tempo_numbers(prompt, bpm):
    p, it = interpret_request(f"house {prompt}", duration_s=10)
    assert p.bpm == bpm and it["tempo"]["source"] == "prompt"


def test_decades_and_lengths_are_not_tempos():
    p, it = interpret_request("a 30 second 90s hip hop beat", duration_s=10)
    assert it["tempo"]["source"] != "prompt"
    assert {"30 second", "90s"} <= {n["text"] for n in it["not_understood"]}


def test_half_and_double_time():
    base = interpret_request("drum and bass", duration_s=10)[0].bpm
    half = interpret_request("half-time drum and bass", duration_s=10)[0].bpm
    assert abs(half - base / 2) <= 1


@pytest.mark.parametrize("prompt,meter,feel", [("in 3/4", "3/4", None), ("6/8 ballad", "6/8", None),
                                                ("12/8 blues", "12/8", None), ("a shuffle", None, "shuffle"),
                                                ("swing feel", None, "swing"), ("triplet feel", None, "shuffle"),
                                                ("in three", "3/4", None), ("2/4 march", "4/4", None)])
def test_meter_and_feel_words(prompt, meter, feel):
    p, it = interpret_request(prompt, duration_s=10)
    if meter:
        assert p.meter == meter and it["meter"]["source"] == "prompt"
    if feel:
        assert p.feel == feel and it["feel"]["source"] == "prompt"


def test_arguments_win_and_say_argument():
    p, it = interpret_request("shoegaze in 6/8 with a swing feel at 80 bpm in A minor", duration_s=10,
                              genre="metal", meter="4/4", feel="straight", bpm=150, key="E minor", mood="dark",
                              instruments=["piano"], structure=["verse", "chorus"])
    assert (p.genre, p.meter, p.feel, p.bpm, p.key, p.mood) == ("metal", "4/4", "straight", 150, "E minor", "dark")
    assert all(it[f]["source"] == "argument" for f in FIELDS)
    assert p.from_text == ()


@pytest.mark.parametrize("kwargs,field", [({"meter": "5/4"}, "meter"), ({"feel": "bouncy"}, "feel"),
                                          ({"genre": "shoegaze"}, "genre")])
def test_bad_arguments_name_the_field(kwargs, field):
    with pytest.raises(ControlError) as exc:
        interpret_request("x", duration_s=10, **kwargs)
    assert exc.value.field == field and "allowed" in str(exc.value)


def test_structure_words():
    p, it = interpret_request("house with no intro and a long outro", duration_s=30)
    assert "intro" not in p.structure and p.structure[-1] == "outro"
    assert any(n["value"] == "intro" for n in it["negated"])
    p2, _ = interpret_request("pop song with three choruses", duration_s=30)
    assert p2.structure.count("chorus") == 3


def test_vocals_are_said_not_to_be_sung():
    p, it = interpret_request("pop song with lyrics about summer", duration_s=10)
    assert any("lyrics" in n["text"] for n in it["not_understood"])


# -- compatibility: the old entry points ------------------------------------------------------------------
def test_parse_prompt_and_resolve_params_are_views_of_the_interpreter():
    said = parse_prompt("warm lofi hip hop with piano, 84 bpm in D minor")
    assert said == {"genre": "lofi hip hop", "mood": "calm", "bpm": 84.0, "key": "D minor",
                    "instruments": ["piano"]}
    assert parse_prompt("slow dreamy pad")["tempo_word"] == "slow"
    r = resolve_params("a waltz, not sad, no drums", duration_s=10)
    assert r.meter == "3/4" and r.mood != "sad" and r.without == ("drums",)
    assert type(r).from_dict(r.to_dict()) == r


def test_old_records_without_part_limits_load():
    r = resolve_params("pop", duration_s=5)
    d = r.to_dict()
    for k in ("without", "only", "meter", "feel"):
        d.pop(k)
    old = type(r).from_dict(d)
    assert old.without == () and old.only == () and old.meter == "4/4"


# -- part limits on a real arrangement ----------------------------------------------------------------------
def test_limit_parts_on_a_composed_piece():
    from echotune_mcp.music.composer import compose

    p = resolve_params("pop with piano, no drums", duration_s=6, seed=3)
    arr = compose(p)
    assert any(t.is_drum for t in arr.tracks)
    done = limit_parts(arr, p.without, p.only)
    assert not any(t.is_drum for t in arr.tracks) and done["left_out"]
    solo = resolve_params("solo piano, calm", duration_s=6, seed=3)
    arr2 = compose(solo)
    limit_parts(arr2, solo.without, solo.only)
    assert arr2.tracks and all(t.program == 0 and not t.is_drum for t in arr2.tracks)
    nop = resolve_params("pop, no piano", duration_s=6, seed=3)
    arr3 = compose(nop)
    before = {t.name for t in arr3.tracks}
    done3 = limit_parts(arr3, nop.without, nop.only)
    assert {t.name for t in arr3.tracks} == before and all(t.program != 0 or t.is_drum for t in arr3.tracks)
    assert done3.get("reprogrammed")


def test_any_text_resolves_or_names_the_field():
    """Word salad from the lexicon, punctuation and stray characters: always a complete, valid reading
    (or a ControlError naming bpm when the text asks for an impossible tempo), never a crash."""
    import random
    import string

    from echotune_mcp.music.interpret import _LEXICON

    words = sorted(_LEXICON) + ["not", "no", "without", "in", "a", "A", "minor", "key", "of", "at", "90", "3/4",
                                "bpm", ",", ".", "-ish", "like", "Daft", "C#", "Bb", "♭", "solo", "just", "two",
                                "1000 bpm", "100-110", "~", "'", "(", "😀", "\n"]
    rng = random.Random(17)
    for _ in range(400):
        prompt = " ".join(rng.choice(words) for _ in range(rng.randint(0, 14)))
        if rng.random() < 0.1:
            prompt = "".join(rng.choice(string.printable) for _ in range(rng.randint(0, 60)))
        try:
            p, it = interpret_request(prompt, duration_s=10)
        except ControlError as exc:
            assert exc.field == "bpm", prompt
            continue
        assert p.genre in STYLES and p.structure and 40 <= p.bpm <= 240, prompt
        assert all(it[f]["source"] in SOURCES for f in FIELDS), prompt


def test_generic_names_rule_out_a_family_or_a_part():
    from echotune_mcp.music.composer import compose

    rock = resolve_params("rock, no guitar", duration_s=6, seed=1)
    arr = compose(rock)
    limit_parts(arr, rock.without, rock.only)
    assert not any(24 <= t.program <= 31 for t in arr.tracks if not t.is_drum)
    house = resolve_params("house, no bass", duration_s=6, seed=1)
    arr2 = compose(house)
    done = limit_parts(arr2, house.without, house.only)
    assert not any(t.role == "bass" for t in arr2.tracks) and done["left_out"] == ["bass"]
    both = resolve_params("nothing but drums and bass", duration_s=6, seed=1)
    arr3 = compose(both)
    limit_parts(arr3, both.without, both.only)
    assert sorted(t.role for t in arr3.tracks) == ["bass", "drums"]


def test_parse_prompt_reports_an_impossible_text_tempo_instead_of_raising():
    # generate_music(bpm=120, backend=musicgen) with '900 bpm' in the text compares the two
    assert parse_prompt("house at 900 bpm in A minor") == {"genre": "house", "key": "A minor", "bpm": 900.0}
    with pytest.raises(ControlError):
        resolve_params("house at 900 bpm", duration_s=5)
