"""The 28 styles: each rendered and measured (tempo, key, meter), harmony per seed, cadences, form per length,
and arrangements written before meters (format 1) still loading and editing."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import mido
import numpy as np
import pytest

from echotune_mcp.music.analysis import estimate_key, estimate_tempo, key_pitch_class
from echotune_mcp.music.composer import (
    FORMAT_VERSION,
    PHRASE_BARS,
    Arrangement,
    add_stem,
    compose,
    edit_stem,
    make_plan,
)
from echotune_mcp.music.master import mix_and_master
from echotune_mcp.music.midi import arrangement_to_midi_bytes
from echotune_mcp.music.params import GENRES, ResolvedParams, resolve_params
from echotune_mcp.music.render import render_stems
from echotune_mcp.music.styles import METERS, STYLES, beat_steps, steps_per_bar
from echotune_mcp.music.theory import CADENCES

SR = 22050  # the analysis runs at 22.05 kHz anyway: rendering at it halves the cost
DURATION = 10.0
KEYS = ["C", "D", "Eb", "E", "F", "G", "A", "Bb", "B"]

SPEC_IDS = {"lofi hip hop", "house", "techno", "rock", "pop", "jazz", "ambient", "cinematic", "funk",
            "drum and bass", "reggae", "synthwave", "metal", "trap", "drill", "country", "reggaeton", "dubstep",
            "afrobeats", "bossa nova", "waltz", "gospel", "blues", "k-pop", "orchestral", "disco", "r&b", "folk"}


def test_the_28_styles_each_hold_all_their_data():
    assert set(STYLES) == SPEC_IDS and GENRES is STYLES
    for name, st in STYLES.items():
        assert st.meters and set(st.meters) <= set(METERS), name
        for meter in st.meters:  # a groove, a bass line and a comping rhythm of its own for every meter it allows
            assert meter in st.grooves and meter in st.bass and meter in st.chord_rhythm, (name, meter)
        assert {"bass", "chords", "lead", "texture"} <= set(st.programs), name
        assert st.tempo[0] < st.tempo[1] and st.default_mood and st.structure and st.traits["tags"], name
    # each style is its own: no two share groove, bass, harmony and instrumentation all at once
    sigs = {(st.grooves[st.meters[0]], st.bass[st.meters[0]], st.harmony, tuple(sorted(st.programs.items())))
            for st in STYLES.values()}
    assert len(sigs) == len(STYLES)
    assert {m for st in STYLES.values() for m in st.meters} == set(METERS)
    assert {st.feel for st in STYLES.values()} == {"straight", "swing", "shuffle"}


def _case(i: int, name: str) -> ResolvedParams:
    st = STYLES[name]
    lo, hi = st.tempo
    bpm = float(round(lo + (hi - lo) * (0.3 + 0.4 * ((i * 7) % 5) / 4)))
    mode = "minor" if st.mode == "minor" else "major"
    key = f"{KEYS[i % len(KEYS)]} {mode}"
    return resolve_params(f"{name} piece", duration_s=DURATION, genre=name, bpm=bpm, key=key, seed=100 + i)


def _fold(env: np.ndarray, frames_per_step: float, steps: int) -> np.ndarray:
    """Mean onset strength at each 16th-note position of a bar of ``steps`` 16ths (the piece starts on a
    downbeat at 0 s)."""
    pos = np.floor(np.arange(len(env)) / frames_per_step + 0.5).astype(int) % steps
    return np.bincount(pos, weights=env, minlength=steps) / np.maximum(1, np.bincount(pos, minlength=steps))


def _contrast(profile: np.ndarray) -> float:
    """How sharply a folded profile is accented: a pattern folded at its own bar length lines up (high), one
    folded at a wrong length smears (low)."""
    return float(profile.std() / (profile.mean() + 1e-12))


@pytest.fixture(scope="module")
def measured():
    import librosa

    rows = {}
    t0 = time.perf_counter()
    for i, name in enumerate(sorted(STYLES)):
        p = _case(i, name)
        arr = compose(p)
        stems = render_stems(arr, SR)
        mix, _ = mix_and_master(stems, SR)
        est_bpm, _ = estimate_tempo(mix, SR)
        tonic, mode, _ = estimate_key(mix, SR)
        mono = mix.mean(axis=1) if mix.ndim == 2 else mix
        env = librosa.onset.onset_strength(y=mono.astype(np.float32), sr=SR, hop_length=256)
        fps = SR / 256
        step = 60.0 / p.bpm * fps / 4  # frames per 16th note
        folds = {n: _fold(env, step, n) for n in (12, 16, 24)}  # bars of 3, 4 and 6 quarters
        # the bar is heard in the low end (kick and bass mark the downbeat: "OOM-pah-pah")
        low = librosa.onset.onset_strength(y=mono.astype(np.float32), sr=SR, hop_length=256, fmax=150.0, n_mels=24)
        low_folds = {n: _fold(low, step, n) for n in (12, 16, 24)}
        # ... and in the harmony: chords change on the downbeat
        chroma = librosa.feature.chroma_stft(y=mono.astype(np.float32), sr=SR, hop_length=256)
        flux = np.concatenate([[0.0], np.maximum(0.0, np.diff(chroma, axis=1)).sum(axis=0)])
        chroma_folds = {n: _fold(flux, step, n) for n in (12, 16, 24)}
        mid = mido.MidiFile(file=io.BytesIO(arrangement_to_midi_bytes(arr)))
        ts = next(m for m in mid.tracks[0] if m.type == "time_signature")
        rows[name] = {"p": p, "arr": arr, "est_bpm": est_bpm, "key": (key_pitch_class(tonic), mode),
                      "folds": folds, "contrast": {n: _contrast(low_folds[n]) + _contrast(chroma_folds[n]) for n in low_folds},
                      "ts": (ts.numerator, ts.denominator)}
    print(f"\nrendered and measured {len(rows)} styles of {DURATION:g} s in {time.perf_counter() - t0:.1f} s")
    for name, r in rows.items():
        p = r["p"]
        print(f"  {name:<14}{p.meter:>5} {p.feel:<8}{p.bpm:6.0f} -> {r['est_bpm']:7.2f} | {p.key:>9} -> "
              f"{r['key']} | bar contrast 3q {r['contrast'][12]:.2f} 4q {r['contrast'][16]:.2f} "
              f"6q {r['contrast'][24]:.2f}")
    return rows


def _tempo_level(meter: str, bpm: float, est: float) -> str:
    """'quarter' within 3 % of the quarter-note tempo; 'octave' at half or double it, or in 6/8 and 12/8 at
    the dotted-quarter beat (2/3) and its double/half; 'three-two' at 2/3 or 4/3 of it in a simple meter
    (a 3+3+2 figure, as in bossa nova's clave, heard as the beat); else 'wrong'."""
    def near(f: float) -> bool:
        return abs(est / (bpm * f) - 1) <= 0.03

    if near(1.0):
        return "quarter"
    if any(near(f) for f in ([0.5, 2.0] + ([2 / 3, 4 / 3, 1 / 3] if beat_steps(meter) == 6 else []))):
        return "octave"
    return "three-two" if any(near(f) for f in (2 / 3, 4 / 3)) else "wrong"


def test_every_style_plays_its_tempo(measured):
    levels = {n: _tempo_level(r["p"].meter, r["p"].bpm, r["est_bpm"]) for n, r in measured.items()}
    by = {lv: [(n, measured[n]["p"].bpm, round(measured[n]["est_bpm"], 1)) for n in levels if levels[n] == lv]
          for lv in ("quarter", "octave", "three-two", "wrong")}
    print(f"tempo: {len(by['quarter'])}/{len(measured)} at the quarter-note tempo; half/double {by['octave']}; "
          f"3:2 {by['three-two']}; wrong {by['wrong']}")
    assert not by["wrong"] and len(by["three-two"]) <= 2
    assert len(by["quarter"]) >= 0.7 * len(measured)


def test_every_style_is_in_its_key(measured):
    misses = [(n, r["p"].key, r["key"]) for n, r in measured.items()
              if r["key"] != (r["p"].key_tonic, r["p"].key_mode)]
    print(f"key: {len(measured) - len(misses)}/{len(measured)} exact; misses {misses}")
    assert len(misses) <= 3, misses


def test_every_style_is_in_its_meter(measured):
    """The MIDI file states the meter, and the audio is accented that way: folded at the meter's bar length
    the low-end onsets (kick, bass) and the chord changes line up more sharply than at the other candidate
    (3 vs 4 quarters; 12/8: 6 vs 4; a four-on-the-floor groove with one chord per bar may tie), and within the bar the dotted-quarter positions outweigh the quarter ones in 6/8 and 12/8, the
    other way round in 3/4 (syncopated 4/4 styles accent off-beats on purpose, so 4/4 is judged by its bar)."""
    bad, ties = [], []
    for name, r in measured.items():
        meter = r["p"].meter
        assert r["ts"] == METERS[meter], (name, r["ts"])
        c = r["contrast"]
        own, other = {"4/4": (16, 12), "3/4": (12, 16), "6/8": (12, 16), "12/8": (24, 16)}[meter]
        if c[other] > 1.03 * c[own]:
            bad.append((name, meter, "bar", round(c[own], 2), round(c[other], 2)))
        elif c[other] >= c[own] / 1.03:
            ties.append((name, meter, round(c[own], 2), round(c[other], 2)))
        steps = steps_per_bar(meter)
        prof = r["folds"][steps]
        dotted = [s for s in range(6, steps, 6) if s % 4]
        quarter = [s for s in range(4, steps, 4) if s % 6]
        if dotted and quarter and meter != "4/4":  # 3/4 vs 6/8 (same bar): where the beats fall inside it
            d, q = prof[dotted].mean(), prof[quarter].mean()
            if (beat_steps(meter) == 6) != (d > q):
                bad.append((name, meter, "beat", round(float(d), 3), round(float(q), 3)))
    print(f"meter: clearly wrong {bad}; too close to call (within 3 %) {ties}")
    assert not bad and len(ties) <= 3, (bad, ties)


@pytest.mark.parametrize("meter", list(METERS))
def test_forced_meters_write_their_grid(meter):
    """Any style can be asked for any meter: bars have the meter's length and the MIDI file says so."""
    p = resolve_params("x", duration_s=20, genre="pop", bpm=120, key="C major", seed=3, meter=meter, feel="straight")
    arr = compose(p)
    plan = make_plan(p)
    assert arr.meter == meter and plan.bar_s == pytest.approx(steps_per_bar(meter) * 0.5 / 4)
    mid = mido.MidiFile(file=io.BytesIO(arrangement_to_midi_bytes(arr)))
    ts = next(m for m in mid.tracks[0] if m.type == "time_signature")
    assert (ts.numerator, ts.denominator) == METERS[meter]
    kicks = [n[0] for n in arr.track("drums").notes if n[2] == 36 and n[0] < plan.final_s]
    assert all(any(abs(k - b * plan.bar_s) < 0.03 for k in kicks) for b in range(plan.body_bars))  # beat 1


def test_swing_and_shuffle_move_the_offbeats():
    def offbeats(feel):
        p = resolve_params("x", duration_s=12, genre="rock", bpm=120, key="C major", seed=3, feel=feel)
        plan = make_plan(p)
        return plan.time(0, 2) - plan.time(0, 0)

    eighth = 0.25
    assert offbeats("straight") == pytest.approx(eighth)
    assert offbeats("swing") > eighth * 1.15 and offbeats("shuffle") == pytest.approx(eighth * 4 / 3)


@pytest.mark.parametrize("name", ["pop", "jazz", "trap", "gospel", "folk", "house", "bossa nova", "metal"])
def test_harmony_differs_across_seeds(name):
    progs = set()
    for seed in range(8):
        p = resolve_params("x", duration_s=60, genre=name, key="C major" if STYLES[name].mode == "major"
                           else "A minor", bpm=sum(STYLES[name].tempo) / 2, seed=seed)
        progs.add(tuple(c.label for c in make_plan(p).chords[:16]))
    assert len(progs) >= 4, progs


def test_harmonic_language_is_used():
    """Across seeds the functional styles reach secondary dominants and borrowed chords; blues plays the
    12-bar form; a style with a key change lifts its last chorus."""
    functions = set()
    for seed in range(12):
        p = resolve_params("x", duration_s=90, genre="jazz", key="F major", bpm=120, seed=seed)
        functions |= {c.function for c in make_plan(p).chords}
    assert {"T", "PD", "D", "sec", "bor"} <= functions
    p = resolve_params("x", duration_s=120, genre="blues", key="A major", bpm=96, seed=1, meter="4/4")
    labels = [c.label for c in make_plan(p).chords]
    assert labels[:12].count("IV7") >= 2 and labels[8] == "V7" and labels[11] == "V7", labels[:12]
    p = resolve_params("x", duration_s=180, genre="pop", key="C major", bpm=110, seed=1)
    plan, arr = make_plan(p), compose(p)
    assert plan.modulation and plan.modulation[1] == 2 and arr.key_changes[0]["key"] == "D major"
    at = plan.modulation[0]
    assert plan.section_at(at)[0] == "chorus" and plan.chords[at - 1].label.startswith("V7")
    assert arr.track("bass").notes[-1][2] % 12 == 2  # the final chord is in the new key


def _cadence_ok(kind, pen, fin) -> bool:
    return {"authentic": pen.degree == 4 and pen.function in ("D", "bor") and fin.degree == 0,
            "half": fin.degree == 4,
            "plagal": pen.degree == 3 and fin.degree == 0,
            "deceptive": pen.degree == 4 and fin.degree == 5,
            "pivot": fin.label.startswith("V")}[kind]


@pytest.mark.parametrize("name", sorted(STYLES))
def test_every_phrase_ends_in_a_cadence(name):
    seen = set()
    for seed in (1, 2):
        p = resolve_params("x", duration_s=75, genre=name, seed=seed)
        plan = make_plan(p)
        assert plan.phrases and sum(n for _, n, _ in plan.phrases) == plan.body_bars
        for i, (first, n, cadence) in enumerate(plan.phrases):
            assert cadence in (*CADENCES, "pivot")
            last = first + n - 1
            seen.add(cadence)
            if STYLES[name].harmony.kind == "blues":
                continue  # the 12-bar form: its own turnaround, checked in test_harmonic_language_is_used
            if i == len(plan.phrases) - 1:  # the body ends on V; the final tonic chord rings after it
                assert plan.chords[last].degree == 4, (name, [c.label for c in plan.chords[first:last + 1]])
                continue
            assert _cadence_ok(cadence, plan.chords[last - 1], plan.chords[last]), \
                (name, cadence, [c.label for c in plan.chords[first:last + 1]])
    assert seen


@pytest.mark.parametrize("name", ["pop", "house", "jazz", "waltz", "blues", "trap", "orchestral"])
def test_form_scales_with_length_in_whole_phrases(name):
    counts = []
    for seconds in (15, 30, 60, 180):
        p = resolve_params("x", duration_s=seconds, genre=name, seed=4)
        plan = make_plan(p)
        secs = plan.sections
        assert sum(s[2] for s in secs) == plan.body_bars
        if plan.body_bars < PHRASE_BARS:
            assert len(secs) == 1
            secs_checked = []
        else:
            secs_checked = secs
        for j, (sname, first, bars, _) in enumerate(secs_checked):
            tag = plan.body_bars % PHRASE_BARS if j == len(secs) - 1 else 0
            assert bars - tag >= PHRASE_BARS and (bars - tag) % PHRASE_BARS == 0, (name, seconds, secs)
        arr = compose(p)
        assert [s.name for s in arr.sections] == [s[0] for s in secs]
        assert all(s.start_s == pytest.approx(first * plan.bar_s, abs=1e-4) for s, (_, first, _, _) in
                   zip(arr.sections, secs))
        counts.append(len(secs))
    assert counts == sorted(counts) and counts[0] <= 2 and counts[-1] >= 4, counts


def test_melody_develops_a_motif():
    """Bar 2 of a phrase answers bar 1 in the same rhythm (call and response) with other pitches."""
    p = resolve_params("x", duration_s=40, genre="pop", bpm=100, key="C major", mood="energetic", seed=11)
    plan = make_plan(p)
    lead = compose(p).track("lead").notes
    name, first, nbars, _ = next(s for s in plan.sections if s[0] == "chorus")
    step_s = plan.beat_s / 4

    def bar(b):
        ns = [n for n in lead if b * plan.bar_s - 0.03 <= n[0] < (b + 1) * plan.bar_s - 0.03]
        return {round((n[0] - b * plan.bar_s) / step_s) for n in ns}, [n[2] for n in ns]

    (r1, p1), (r2, p2) = bar(first), bar(first + 1)
    assert len(r1 & r2) >= 0.6 * max(len(r1), len(r2)) and p1 != p2


def test_format_1_arrangements_still_load_and_edit():
    """A real arrangement written by the composer before meters (format 1, params without meter/feel)."""
    data = json.loads((Path(__file__).parent / "data" / "arrangement_v1.json").read_text())
    arr = Arrangement.from_dict(data["arrangement"])
    params = ResolvedParams.from_dict(data["params"])
    assert arr.version == 1 and arr.meter == "4/4" and arr.feel == "straight" and not arr.harmony
    assert params.meter == "4/4" and params.feel == "straight"
    again = Arrangement.from_json(arr.to_json())
    assert again.tracks == arr.tracks and again.sections == arr.sections
    new = edit_stem(arr, params, "bass", "busier", 77)[0]
    assert [t for t in new.tracks if t.name != "bass"] == [t for t in arr.tracks if t.name != "bass"]
    # the new bass plays the roots of the chords the old chord track sounds, bar by bar
    bar_s = 4 * 60 / arr.bpm
    chords = arr.track("chords").notes
    for b in range(int(arr.sections[-1].end_s // bar_s) - 1):
        pcs = {n[2] % 12 for n in chords if b * bar_s - 0.03 <= n[0] < (b + 1) * bar_s - 0.03}
        first = min((n for n in new.track("bass").notes if n[0] >= b * bar_s - 0.03), key=lambda n: n[0])
        if pcs:
            assert first[2] % 12 in pcs, (b, first, pcs)
    added = add_stem(arr, params, "strings", None, 5)[0]
    assert len(added.tracks) == len(arr.tracks) + 1 and added.tracks[-1].notes


def test_format_2_round_trip_keeps_meter_harmony_and_key_changes():
    p = resolve_params("x", duration_s=180, genre="gospel", key="Eb major", bpm=90, seed=2, meter="12/8")
    arr = compose(p)
    d = json.loads(arr.to_json())
    assert d["version"] == FORMAT_VERSION == 2 and d["meter"] == "12/8" and d["time_signature"] == [12, 8]
    assert len(d["harmony"]) == make_plan(p).body_bars and d["key_changes"]
    back = Arrangement.from_json(arr.to_json())
    assert back == arr
    edited = edit_stem(back, p, "chords", None, 9)[0]
    assert edited.meter == "12/8" and edited.harmony == arr.harmony
