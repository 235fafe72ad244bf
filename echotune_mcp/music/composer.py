"""The symbolic composer: resolved controls in, a deterministic multi-track arrangement out.

An ``Arrangement`` is plain data (seconds, MIDI pitches, velocities) that serialises to JSON and
back exactly, so a stored arrangement can be re-rendered, exported to MIDI, or edited one stem at
a time (``regenerate_stem``, ``add_stem``) long after the request that made it.

How a piece is built, in order:
1. a *plan* from the controls alone: bar grid, sections with an energy curve fitted to the
   requested duration, one chord per bar (each phrase starts on the tonic and every section ends
   on the dominant, so the key is unambiguous and the ending is a V-I cadence);
2. one part per stem, each from its own seeded random stream, so re-composing one stem never
   disturbs another;
3. an ending: a final tonic chord with a kick and crash on the last downbeat, left to ring until
   the requested duration.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .params import (
    GENRES,
    INSTRUMENTS,
    MOODS,
    ROLES,
    SECTIONS,
    ControlError,
    ResolvedParams,
    normalise_instrument,
)
from .theory import (
    SCALE_STEPS,
    chord_pcs,
    key_scale_pcs,
    nearest_pitch_with_pc,
    voice_chord,
)

Note = tuple[float, float, int, int]  # (start_s, end_s, pitch, velocity)
FORMAT_VERSION = 1
_ROUND = 5  # decimals of a second kept in note times (10 µs): exact JSON round trips, tidy files

# General MIDI percussion keys used below
KICK, RIM, SNARE, CLAP, HAT_CLOSED, HAT_PEDAL, HAT_OPEN, CRASH, RIDE = 36, 37, 38, 39, 42, 44, 46, 49, 51
TOM_LOW, TOM_MID, TOM_HIGH, TOM_FLOOR, TAMBOURINE, SHAKER, CONGA_HI, CONGA_LO = 45, 47, 50, 41, 54, 70, 63, 64


# -- data model ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Key:
    tonic: int  # pitch class 0..11
    mode: str  # "major" | "minor"
    name: str  # display name, e.g. "Bb minor"


@dataclass(frozen=True)
class Section:
    name: str
    start_s: float
    end_s: float
    energy: float


@dataclass
class Track:
    """One stem: a GM program (or the drum kit) and its notes, sorted by start time."""

    name: str
    role: str
    program: int
    is_drum: bool
    notes: list[Note]
    volume: int = 100  # MIDI CC7
    pan: int = 64  # MIDI CC10
    options: dict[str, Any] = field(default_factory=dict)  # how it was made (density, octave, seed, ...)


@dataclass
class Arrangement:
    bpm: float
    key: Key
    time_signature: tuple[int, int]
    duration_s: float
    sections: list[Section]
    tracks: list[Track]
    seed: int
    genre: str
    mood: str
    version: int = FORMAT_VERSION

    @property
    def key_name(self) -> str:
        return self.key.name

    def track(self, name: str) -> Track:
        for t in self.tracks:
            if t.name == name:
                return t
        raise ControlError("stem", f"{name!r} is not a stem of this piece; allowed: "
                                   f"{', '.join(t.name for t in self.tracks)}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version, "bpm": self.bpm,
            "key": {"tonic": self.key.tonic, "mode": self.key.mode, "name": self.key.name},
            "time_signature": list(self.time_signature), "duration_s": self.duration_s,
            "seed": self.seed, "genre": self.genre, "mood": self.mood,
            "sections": [{"name": s.name, "start_s": s.start_s, "end_s": s.end_s, "energy": s.energy}
                         for s in self.sections],
            "tracks": [{"name": t.name, "role": t.role, "program": t.program, "is_drum": t.is_drum,
                        "volume": t.volume, "pan": t.pan, "options": t.options,
                        "notes": [list(n) for n in t.notes]} for t in self.tracks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arrangement:
        if d.get("version") != FORMAT_VERSION:
            raise ValueError(f"arrangement format version {d.get('version')!r} is not {FORMAT_VERSION}")
        return cls(
            bpm=d["bpm"], key=Key(**d["key"]), time_signature=tuple(d["time_signature"]),  # type: ignore[arg-type]
            duration_s=d["duration_s"], seed=d["seed"], genre=d["genre"], mood=d["mood"],
            sections=[Section(**s) for s in d["sections"]],
            tracks=[Track(name=t["name"], role=t["role"], program=t["program"], is_drum=t["is_drum"],
                          volume=t["volume"], pan=t["pan"], options=t["options"],
                          notes=[(n[0], n[1], n[2], n[3]) for n in t["notes"]]) for t in d["tracks"]],
            version=d["version"])

    @classmethod
    def from_json(cls, s: str) -> Arrangement:
        return cls.from_dict(json.loads(s))


# -- style: genre + mood -------------------------------------------------------------------------------
_CHORD_RHYTHM = {
    "lofi hip hop": "strum", "house": "stabs", "techno": "stabs_sparse", "rock": "power_eighths",
    "pop": "quarters", "jazz": "charleston", "ambient": "sustain", "cinematic": "sustain", "funk": "funk_stabs",
    "drum and bass": "sustain", "reggae": "skank", "synthwave": "halves",
}
_CHORD_PATTERNS: dict[str, list[tuple[float, float]]] = {  # (step, length in 16ths) within a bar
    "sustain": [(0, 16)], "strum": [(0, 16)], "halves": [(0, 8), (8, 8)],
    "quarters": [(0, 4), (4, 4), (8, 4), (12, 4)],
    "stabs": [(0, 2), (3, 2), (6, 3), (10, 2), (13, 3)], "stabs_sparse": [(0, 1.5), (6, 2), (10, 1.5)],
    "power_eighths": [(s, 2) for s in range(0, 16, 2)], "charleston": [(0, 3), (6, 6)],
    "funk_stabs": [(2, 1), (6, 1), (9, 1), (11, 1), (14, 2)], "skank": [(4, 2), (12, 2)],
}
# Genres whose minor-key V is always major (harmonic minor); others raise it only at cadences.
_HARMONIC_MINOR = {"cinematic", "pop", "rock", "jazz", "funk", "reggae"}


@dataclass(frozen=True)
class Style:
    groove: str
    swing: float
    swing_eighths: bool
    humanize_s: float
    velocity: int
    density: float
    lead_register: int
    sevenths: bool
    texture: str
    bass_style: str
    chord_rhythm: str
    programs: dict[str, int]


# A bright synth lead over a sad or calm song in an acoustic genre sounds wrong; these moods swap it
# for a softer voice (a square lead's strong odd harmonics also blur the minor third).
_SOFT_LEAD = {"sad": 73, "romantic": 73, "calm": 11}
_ELECTRONIC = {"house", "techno", "drum and bass", "synthwave"}


def style_for(params: ResolvedParams) -> Style:
    g, m = GENRES[params.genre], MOODS[params.mood]
    programs = dict(g.programs)
    if params.mood in _SOFT_LEAD and params.genre not in _ELECTRONIC and 80 <= programs["lead"] <= 87:
        programs["lead"] = _SOFT_LEAD[params.mood]
    return Style(groove=g.groove, swing=g.swing, swing_eighths=g.groove == "swing",
                 humanize_s=g.humanize_ms / 1000.0, velocity=max(40, min(118, g.velocity + m.velocity_delta)),
                 density=m.density, lead_register=g.lead_register + m.register_shift, sevenths=g.sevenths,
                 texture=g.texture, bass_style=g.bass_style, chord_rhythm=_CHORD_RHYTHM[params.genre],
                 programs=programs)


# -- the plan: time grid, sections, harmony ----------------------------------------------------------
@dataclass(frozen=True)
class Plan:
    bpm: float
    tonic: int
    mode: str
    duration_s: float
    body_bars: int
    final_s: float  # the last downbeat: the final chord starts here and rings to duration_s
    sections: tuple[tuple[str, int, int, float], ...]  # (name, first bar, bars, energy)
    chords: tuple[tuple[int, tuple[int, ...]], ...]  # per bar: (degree, pitch classes, root first)
    style: Style
    genre: str

    @property
    def beat_s(self) -> float:
        return 60.0 / self.bpm

    @property
    def bar_s(self) -> float:
        return 4 * self.beat_s

    def time(self, bar: int, step: float) -> float:
        """Seconds at a 16th-note step of a bar, with the style's swing applied to off-beats."""
        st = self.style
        shift = 0.0
        if st.swing and float(step).is_integer():
            s = int(step) % 16
            if st.swing_eighths and s % 4 == 2:
                shift = st.swing * 2.0 / 3.0  # triplet swing of the "and"
            elif not st.swing_eighths and s % 2 == 1:
                shift = st.swing / 3.0
        return bar * self.bar_s + (step + shift) * self.beat_s / 4.0

    def section_at(self, bar: int) -> tuple[str, int, int, float]:
        for sec in self.sections:
            if sec[1] <= bar < sec[1] + sec[2]:
                return sec
        return self.sections[-1]


_PRIORITY = {"chorus": 10, "drop": 10, "hook": 10, "head": 9, "verse": 8, "solo": 6, "build": 5, "intro": 4,
             "outro": 4, "prechorus": 3, "bridge": 2, "breakdown": 2, "interlude": 1}
_MOOD_ENERGY = {"energetic": 0.08, "epic": 0.08, "calm": -0.1, "sad": -0.08, "romantic": -0.05}


def _fit_sections(structure: tuple[str, ...], body_bars: int, mood: str) -> list[tuple[str, int, int, float]]:
    """Fit the section list into ``body_bars`` whole bars, dropping the least important sections first."""
    names = list(structure)
    while len(names) > 1 and body_bars < 2 * len(names):
        seen: dict[str, int] = {}
        scores = []
        for i, n in enumerate(names):
            seen[n] = seen.get(n, 0) + 1
            scores.append((_PRIORITY.get(n, 1) - 10 * (seen[n] - 1), -i))
        names.pop(-min(scores)[1])
    unit = 4 if body_bars >= 4 * len(names) else (2 if body_bars >= 2 * len(names) else 1)
    units = body_bars // unit
    nominal = [SECTIONS[n][1] for n in names]
    total = sum(nominal)
    raw = [units * w / total for w in nominal]
    alloc = [max(1, int(r)) for r in raw]
    while sum(alloc) > units and max(alloc) > 1:
        alloc[alloc.index(max(alloc))] -= 1
    order = sorted(range(len(names)), key=lambda i: (-(raw[i] - int(raw[i])), -_PRIORITY.get(names[i], 1), i))
    k = 0
    while sum(alloc) < units:
        alloc[order[k % len(order)]] += 1
        k += 1
    bars = [a * unit for a in alloc]
    bars[-1] += body_bars - sum(bars)
    out, start = [], 0
    for i, (n, b) in enumerate(zip(names, bars)):
        energy = SECTIONS[n][0] + _MOOD_ENERGY.get(mood, 0.0)
        if n in ("chorus", "drop", "hook") and i == max(j for j, m in enumerate(names) if m == n) and \
                names.count(n) > 1:
            energy += 0.05  # the last chorus lifts
        out.append((n, start, b, round(min(1.0, max(0.15, energy)), 3)))
        start += b
    return out


def _family(section: str) -> int:
    if section in ("chorus", "drop", "hook", "solo"):
        return 1
    if section in ("bridge", "breakdown", "interlude"):
        return 2
    return 0


def make_plan(params: ResolvedParams) -> Plan:
    """Everything shared by all stems; a pure function of the controls (never of a stem's seed)."""
    style = style_for(params)
    genre = GENRES[params.genre]
    beat = 60.0 / params.bpm
    bar = 4 * beat
    ring_min = min(params.duration_s, max(1.0, 2 * beat))
    body_bars = max(0, math.floor((params.duration_s - ring_min) / bar + 1e-9))
    sections = _fit_sections(params.structure, body_bars, params.mood) if body_bars else []
    chords: list[tuple[int, tuple[int, ...]]] = []
    for si, (name, first, n, _) in enumerate(sections):
        prog = genre.progressions[_family(name)]
        last_section = si == len(sections) - 1
        for i in range(n):
            degree = prog[i % len(prog)]
            if last_section and i == n - 1 and body_bars >= 2:
                degree = 4  # the body ends on the dominant: a V-I cadence into the final tonic chord
            elif last_section and i == n - 2:
                degree = 3  # preceded by the subdominant (IV-V-I), which also pins the key down
            cadence = (last_section and i == n - 1) or params.genre in _HARMONIC_MINOR
            pcs = chord_pcs(params.key_tonic, params.key_mode, degree, seventh=style.sevenths and degree != 0,
                            raise_leading_tone=cadence)
            chords.append((degree, pcs))
    return Plan(bpm=params.bpm, tonic=params.key_tonic, mode=params.key_mode, duration_s=params.duration_s,
                body_bars=body_bars, final_s=body_bars * bar, sections=tuple(sections), chords=tuple(chords),
                style=style, genre=params.genre)


# -- helpers shared by the part writers -------------------------------------------------------------
def _vel(base: float, energy: float, accent: float = 0.0) -> int:
    return int(max(1, min(127, round(base * (0.72 + 0.4 * energy) + accent))))


def _rng(seed: int, stem: str, salt: str = "") -> random.Random:
    return random.Random(f"{seed}:{stem}:{salt}")


def _humanize(notes: list[Note], rng: random.Random, sigma_s: float, vel_jitter: int, limit_s: float,
              keep_first_beat: bool = False) -> list[Note]:
    """Seeded timing and velocity variation: what makes a grid sound played."""
    out: list[Note] = []
    for s, e, p, v in notes:
        dt = 0.0
        if sigma_s > 0:
            dt = max(-2.5 * sigma_s, min(2.5 * sigma_s, rng.gauss(0.0, sigma_s)))
            if keep_first_beat:
                dt *= 0.4
        dv = rng.randint(-vel_jitter, vel_jitter) if vel_jitter else 0
        s2 = max(0.0, s + dt)
        e2 = min(limit_s, max(s2 + 0.01, e + dt))
        out.append((s2, e2, p, max(1, min(127, v + dv))))
    return out


def _finish(notes: list[Note]) -> list[Note]:
    cleaned = [(round(s, _ROUND), round(e, _ROUND), int(p), int(v)) for s, e, p, v in notes if e > s]
    return sorted(cleaned, key=lambda n: (n[0], n[2], n[1]))


def _clip_end(plan: Plan, end: float) -> float:
    return min(end, plan.final_s) if plan.body_bars else end


def _chord_tone(plan: Plan, pcs: tuple[int, ...], tone: str, root: int, next_root_pc: int | None,
                rng: random.Random) -> int:
    if tone == "R":
        return root
    if tone == "8":
        return root + 12
    if tone == "5":
        return root + ((pcs[2] - pcs[0]) % 12)
    if tone == "3":
        return root + ((pcs[1] - pcs[0]) % 12)
    if tone == "7":
        return root + ((pcs[3] - pcs[0]) % 12 if len(pcs) > 3 else (pcs[2] - pcs[0]) % 12)
    # "A": a diatonic step leading into the next bar's root
    target_pc = next_root_pc if next_root_pc is not None else pcs[0]
    target = nearest_pitch_with_pc(target_pc, root)
    scale = sorted(key_scale_pcs(plan.tonic, plan.mode))
    above = next(p for p in range(target + 1, target + 4) if p % 12 in scale)
    below = next(p for p in range(target - 1, target - 4, -1) if p % 12 in scale)
    return below if rng.random() < 0.6 else above


# -- drums -----------------------------------------------------------------------------------------------
_V = {"X": 118, "x": 100, "o": 78, "g": 46, ".": 0}
# groove -> layers of (GM key, 16-step pattern, minimum section energy)
_GROOVES: dict[str, list[tuple[int, str, float]]] = {
    "four_on_floor": [(KICK, "x...x...x...x...", 0), (CLAP, "....x.......x...", 0.5),
                      (HAT_OPEN, "..o...o...o...o.", 0.45), (SHAKER, "gggggggggggggggg", 0.75)],
    "techno": [(KICK, "X...X...X...X...", 0), (CLAP, "....o.......o...", 0.6), (HAT_CLOSED, "gg.ggg.ggg.ggg.g", 0.5),
               (HAT_OPEN, "..o...o...o...o.", 0.4), (RIM, "......o.....o..o", 0.8)],
    "boombap": [(KICK, "x......x..x.....", 0), (SNARE, "....x.......x...", 0.4),
                (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3), (HAT_OPEN, "..............g.", 0.8)],
    "rock": [(KICK, "x.......x.x.....", 0), (SNARE, "....X.......X...", 0.45), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3)],
    "pop": [(KICK, "x.....x...x.....", 0), (SNARE, "....x.......x...", 0.45), (CLAP, "....o.......o...", 0.8),
            (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3), (SHAKER, ".g.g.g.g.g.g.g.g", 0.75)],
    "swing": [(RIDE, "x...x.o.x...x.o.", 0), (HAT_PEDAL, "....x.......x...", 0), (KICK, "o...g...o...g...", 0),
              (SNARE, "..........g.....", 0.6)],
    "ambient": [(KICK, "x.......x.......", 0), (RIM, "....o.......o...", 0.3), (SHAKER, "g.g.g.g.g.g.g.g.", 0.5)],
    "cinematic": [(KICK, "x.......x.x.....", 0), (TOM_FLOOR, "....x.......x...", 0.3), (SNARE, "....o.......o...", 0.7),
                  (HAT_CLOSED, "g.g.g.g.g.g.g.g.", 0.85)],
    "funk": [(KICK, "x.....x...x..x..", 0), (SNARE, "....x..g.g..x..g", 0.4), (HAT_CLOSED, "xgxgxgxgxgxgxg.g", 0.3),
             (HAT_OPEN, "..............o.", 0.7)],
    "dnb": [(KICK, "x.........x.....", 0), (SNARE, "....X.......X...", 0.35), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.4),
            (RIDE, "x...x...x...x...", 0.5),
            (SNARE, ".......g.g....g.", 0.85), (SHAKER, "gggggggggggggggg", 0.7)],
    "one_drop": [(KICK, "........x.......", 0), (RIM, "........x.......", 0), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3),
                 (HAT_OPEN, "......g.......g.", 0.8)],
    "synthwave": [(KICK, "x.......x.......", 0), (SNARE, "....X.......X...", 0.4), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.35),
                  (CLAP, "....o.......o...", 0.85)],
}
# alternative kick lines per groove ("different rhythm" and seeded variety), all keeping beat 1
_KICK_VARIANTS: dict[str, list[str]] = {
    "boombap": ["x......x..x.....", "x.........x..x..", "x..x......x....."],
    "rock": ["x.......x.x.....", "x.....x.x.......", "x.......x...x..."],
    "pop": ["x.....x...x.....", "x.......x.......", "x..x....x.x....."],
    "funk": ["x.....x...x..x..", "x..x......x.....", "x.x.......x..x.."],
    "dnb": ["x.........x.....", "x.x.......x.....", "x.........x..x.."],
    "synthwave": ["x.......x.......", "x.......x.x.....", "x.....x.x......."],
    "cinematic": ["x.......x.x.....", "x..x....x.......", "x.......x..x...."],
    "four_on_floor": ["x...x...x...x...", "x...x...x...x.x.", "x...x...x..xx..."],
    "techno": ["X...X...X...X...", "X...X...X...X..x", "X..xX...X...X..."],
}
_FILL_TOMS = {"rock", "pop", "funk", "cinematic", "synthwave", "one_drop"}


def _drum_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    groove = plan.style.groove
    layers = list(_GROOVES[groove])
    variants = _KICK_VARIANTS.get(groove)
    if variants:
        idx = int(opts.get("variant", 0)) % len(variants)
        layers = [(KICK, variants[idx], 0) if k == KICK and lvl == 0 else (k, pat, lvl) for k, pat, lvl in layers]
    density = float(opts.get("density", 1.0)) * plan.style.density
    base = plan.style.velocity + 8
    hit_len = plan.beat_s / 4
    notes: list[Note] = []
    for name, first, nbars, energy in plan.sections:
        for b in range(first, first + nbars):
            last_bar = b == first + nbars - 1 and b != plan.body_bars - 1
            fill = last_bar and energy >= 0.5 and nbars >= 2
            roll = last_bar and name == "build"
            used: set[tuple[int, int]] = set()
            for key, pat, min_e in layers:
                if energy + 1e-9 < min_e:
                    continue
                for step, ch in enumerate(pat):
                    v = _V[ch]
                    if not v or (key, step) in used:
                        continue
                    if (fill or roll) and step >= 12 and key not in (KICK, RIDE):
                        continue
                    if ch == "g" and density < 1.0 and rng.random() > density:
                        continue  # sparser: ghost notes thin out
                    if key in (HAT_CLOSED, SHAKER) and density < 0.75 and step % 4 == 2 and rng.random() < 0.5:
                        continue
                    used.add((key, step))
                    t = plan.time(b, step)
                    notes.append((t, t + hit_len, key, _vel(v * base / 100, energy)))
            if density > 1.15:  # busier: extra 16th hats and ghost snares where the grid is empty
                for step in range(16):
                    if (HAT_CLOSED, step) not in used and (RIDE, step) not in used and rng.random() < 0.55 * (density - 1):
                        t = plan.time(b, step)
                        notes.append((t, t + hit_len, HAT_CLOSED if groove != "swing" else RIDE, _vel(40, energy)))
                    if step % 4 in (1, 3) and rng.random() < 0.25 * (density - 1):
                        t = plan.time(b, step)
                        notes.append((t, t + hit_len, SNARE, _vel(38, energy)))
            if b == first and b > 0 and energy >= 0.6:
                t = plan.time(b, 0)
                notes.append((t, t + plan.beat_s, CRASH, _vel(base, energy)))
            if fill:
                toms = (TOM_HIGH, TOM_MID, TOM_LOW, TOM_FLOOR) if groove in _FILL_TOMS and rng.random() < 0.6 else None
                for i, step in enumerate(range(12, 16)):
                    t = plan.time(b, step)
                    key = toms[i] if toms else SNARE
                    notes.append((t, t + hit_len, key, _vel(base * (0.6 + 0.12 * i), energy)))
            if roll:
                for step in range(8, 16):
                    for half in (0.0, 0.5) if step >= 12 else (0.0,):
                        t = plan.time(b, step + half)
                        notes.append((t, t + hit_len / 2, SNARE, _vel(base * (0.45 + 0.04 * (step - 8)), energy)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.5, 5, plan.final_s if plan.body_bars else plan.duration_s)
    t = plan.final_s
    end = min(plan.duration_s, t + 1.5)
    notes += [(t, end, KICK, 118), (t, end, CRASH, 112)]
    if groove in ("rock", "pop", "cinematic", "funk"):
        notes.append((t, end, TOM_FLOOR, 100))
    return notes


def _percussion_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    """Hand percussion layered over the kit: shaker 16ths, tambourine backbeat, a conga figure."""
    density = float(opts.get("density", 1.0))
    conga = rng.choice(["..o.x..o..x.o...", "o..x..o...x.o..x", "..x.o.x...o.x.o."])
    layers = [(SHAKER, "gogogogogogogogo", 0.0), (TAMBOURINE, "....x.......x...", 0.5),
              (CONGA_HI, conga.replace("x", "."), 0.4), (CONGA_LO, conga.replace("o", "."), 0.4)]
    notes: list[Note] = []
    for _, first, nbars, energy in plan.sections:
        for b in range(first, first + nbars):
            for key, pat, min_e in layers:
                if energy < min_e:
                    continue
                for step, ch in enumerate(pat):
                    if _V[ch] and (density >= 1 or ch != "g" or rng.random() < density):
                        t = plan.time(b, step)
                        notes.append((t, t + plan.beat_s / 4, key, _vel(_V[ch] * 0.85, energy)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.6 + 0.002, 8, plan.final_s or plan.duration_s)
    notes.append((plan.final_s, min(plan.duration_s, plan.final_s + 1.0), TAMBOURINE, 100))
    return notes


# -- bass -----------------------------------------------------------------------------------------------
_BASS_PATTERNS: dict[str, list[tuple[float, float, str]]] = {  # (step, length, tone)
    "root_eighths": [(s, 2, "R") for s in range(0, 16, 2)],
    "offbeat": [(2, 2, "R"), (6, 2, "R"), (10, 2, "R"), (14, 2, "8")],
    "rolling": [(s, 1, "R") for s in range(16) if s % 4],
    "pop": [(0, 6, "R"), (6, 2, "R"), (8, 4, "5"), (12, 4, "R")],
    "walking": [(0, 4, "R"), (4, 4, "3"), (8, 4, "5"), (12, 4, "A")],
    "drone": [(0, 16, "R")],
    "pedal": [(s, 2, "R") for s in range(0, 16, 2)],
    "funk": [(0, 3, "R"), (3, 1, "8"), (6, 2, "R"), (8, 1, "5"), (10, 2, "7"), (11, 1, "8"), (14, 2, "5")],
    "dnb": [(0, 10, "R"), (10, 6, "R")],
    "reggae": [(0, 3, "R"), (3, 1, "3"), (4, 4, "5"), (10, 2, "R"), (12, 4, "3")],
    "octave_eighths": [(s, 2, "R" if (s // 2) % 2 == 0 else "8") for s in range(0, 16, 2)],
}
_BASS_LIGHT = [(0, 8, "R"), (8, 8, "R")]
_BASS_LOFI = [(0, 6, "R"), (7, 3, "R"), (10, 4, "5"), (14, 2, "8")]


def _bass_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    style = plan.style.bass_style
    pattern = _BASS_LOFI if plan.genre == "lofi hip hop" else _BASS_PATTERNS[style]
    if opts.get("variant", 0) % 2 == 1 and style not in ("walking", "drone"):
        pattern = [(0, 3, "R"), (3, 3, "R"), (6, 2, "5"), (8, 3, "R"), (11, 3, "8"), (14, 2, "5")]
    density = float(opts.get("density", 1.0))
    octave = int(opts.get("octave", 0))
    base = plan.style.velocity + 4
    notes: list[Note] = []
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        pcs = plan.chords[bar][1]
        nxt = plan.chords[bar + 1][1][0] if bar + 1 < plan.body_bars else plan.tonic
        root = nearest_pitch_with_pc(pcs[0], 40) + 12 * octave
        pat = pattern
        if energy < 0.45 and style not in ("drone", "dnb", "walking"):
            pat = _BASS_LIGHT
        if density < 0.8:
            pat = [p for p in pat if p[0] % 8 == 0] or pat[:1]
            pat = [(s, max(length, 8.0 if density < 0.6 else length), t) for s, length, t in pat]
        elif density > 1.2:
            split = []
            for s, length, t in pat:
                if length >= 4:
                    split += [(s, length / 2, t), (s + length / 2, length / 2, "8" if t == "R" else t)]
                else:
                    split.append((s, length, t))
            pat = split
        for step, length, tone in pat:
            if style == "walking" and tone in ("3", "5") and rng.random() < 0.35:
                tone = rng.choice(["3", "5", "8"])
            pitch = _chord_tone(plan, pcs, tone, root, nxt, rng)
            start = plan.time(bar, step)
            end = _clip_end(plan, plan.time(bar, step + length) - 0.02 * plan.beat_s)
            accent = 8 if step % 4 == 0 else 0
            notes.append((start, end, pitch, _vel(base, energy, accent)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.5, 6, plan.final_s if plan.body_bars else plan.duration_s)
    tonic_bass = nearest_pitch_with_pc(plan.tonic, 40) + 12 * octave
    notes.append((plan.final_s, plan.duration_s, tonic_bass, 110))
    return notes


# -- chords, pads, arpeggios, counter-lines --------------------------------------------------------
def _voicings(plan: Plan, center: int, low: int, high: int, power: bool = False) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    prev: tuple[int, ...] | None = None
    for _, pcs in plan.chords:
        if power:
            root = nearest_pitch_with_pc(pcs[0], center - 3)
            v: tuple[int, ...] = (root, root + ((pcs[2] - pcs[0]) % 12), root + 12)
        else:
            v = voice_chord(pcs, prev, center, low, high)
        out.append(v)
        prev = v
    return out


def _final_chord(plan: Plan, prev: tuple[int, ...] | None, center: int, low: int, high: int,
                 velocity: int, power: bool = False) -> list[Note]:
    pcs = chord_pcs(plan.tonic, plan.mode, 0)
    if power:
        root = nearest_pitch_with_pc(plan.tonic, center - 3)
        voicing: tuple[int, ...] = (root, root + 7, root + 12)
    else:
        voicing = voice_chord(pcs, prev if prev and len(prev) == 3 else None, center, low, high)
    return [(plan.final_s, plan.duration_s, p, velocity) for p in voicing]


def _chord_part(plan: Plan, rng: random.Random, opts: dict[str, Any], program: int) -> list[Note]:
    power = program in (29, 30) and plan.style.chord_rhythm == "power_eighths"
    octave = int(opts.get("octave", 0))
    center = 60 + 12 * octave
    voicings = _voicings(plan, center, center - 11, center + 15, power)
    rhythm = plan.style.chord_rhythm
    density = float(opts.get("density", 1.0))
    variant = int(opts.get("variant", 0))
    strum = rhythm == "strum" or program in range(24, 32) or program in range(8)
    base = plan.style.velocity - 6
    notes: list[Note] = []
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        pattern = _CHORD_PATTERNS[rhythm]
        if variant % 3 == 1:
            pattern = _CHORD_PATTERNS["halves" if rhythm in ("sustain", "strum") else "quarters"]
        elif variant % 3 == 2:
            pattern = _CHORD_PATTERNS["charleston" if rhythm != "charleston" else "halves"]
        if energy < 0.45 and rhythm not in ("skank", "charleston"):
            pattern = _CHORD_PATTERNS["sustain"]
        if density < 0.8:
            pattern = pattern[::2]
        elif density > 1.2 and len(pattern) < 8:
            pattern = sorted(set(pattern + [(s + 8, length) for s, length in pattern if s + 8 < 16]))
        for step, length in pattern:
            start = plan.time(bar, step)
            end = _clip_end(plan, plan.time(bar, step + length) - 0.03 * plan.beat_s)
            for i, p in enumerate(voicings[bar]):
                off = i * rng.uniform(0.008, 0.018) if strum and length >= 4 else 0.0
                notes.append((start + off, end, p, _vel(base, energy, 4 if step == 0 else 0)))
    notes = _humanize(notes, rng, plan.style.humanize_s, 6, plan.final_s if plan.body_bars else plan.duration_s)
    notes += _final_chord(plan, voicings[-1] if voicings else None, center, center - 11, center + 15,
                          min(120, base + 16), power)
    return notes


def _pad_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    """Sustained voicings above the chords, held across bars where a tone stays (no re-attacks)."""
    octave = int(opts.get("octave", 0))
    center = 67 + 12 * octave
    voicings = _voicings(plan, center, center - 10, center + 14)
    base = plan.style.velocity - 14
    density = float(opts.get("density", 1.0))
    held: dict[int, list[float]] = {}
    notes: list[Note] = []
    per_bar = 2 if density > 1.2 else 1
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        vel = _vel(base, energy)
        for half in range(per_bar):
            t0 = plan.time(bar, 16 * half / per_bar)
            current = set(voicings[bar])
            for p in list(held):
                if p not in current or per_bar > 1:
                    s, v = held.pop(p)
                    notes.append((s, t0, p, int(v)))
            for p in voicings[bar]:
                if p not in held:
                    held[p] = [t0, vel]
    end = plan.final_s
    for p, (s, v) in held.items():
        notes.append((s, end, p, int(v)))
    notes = _humanize(notes, rng, 0.0, 4, plan.final_s if plan.body_bars else plan.duration_s)
    notes += _final_chord(plan, voicings[-1] if voicings else None, center, center - 10, center + 14, base + 10)
    return notes


def _arp_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    octave = int(opts.get("octave", 0))
    center = 72 + 12 * octave
    voicings = _voicings(plan, center, center - 8, center + 10)
    density = float(opts.get("density", 1.0)) * plan.style.density
    shape = rng.choice(["up", "updown", "down", "pendulum"]) if opts.get("variant") is None else \
        ["up", "updown", "down", "pendulum"][int(opts["variant"]) % 4]
    step_len = 1 if (plan.bpm < 125 and density >= 0.8) or density > 1.3 else 2
    base = plan.style.velocity - 12
    notes: list[Note] = []
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        tones = list(voicings[bar]) + [voicings[bar][0] + 12]
        if shape == "down":
            seq = tones[::-1]
        elif shape == "updown":
            seq = tones + tones[-2:0:-1]
        elif shape == "pendulum":
            seq = [tones[0], tones[2], tones[1], tones[3] if len(tones) > 3 else tones[2]]
        else:
            seq = tones
        sl = step_len if energy >= 0.45 else 2 * step_len
        for k, step in enumerate(range(0, 16, sl)):
            start = plan.time(bar, step)
            end = _clip_end(plan, plan.time(bar, step + sl * 0.9))
            accent = 10 if step % 4 == 0 else 0
            notes.append((start, end, seq[(bar * 16 // sl + k) % len(seq)], _vel(base, energy, accent)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.3, 5, plan.final_s if plan.body_bars else plan.duration_s)
    notes += _final_chord(plan, voicings[-1] if voicings else None, center, center - 8, center + 10, base + 6)
    return notes


def _counter_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    """A slow line under the melody: half notes on chord tones, moving by the smallest step."""
    octave = int(opts.get("octave", 0))
    density = float(opts.get("density", 1.0))
    center = 57 + 12 * octave
    prev = center
    base = plan.style.velocity - 8
    notes: list[Note] = []
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        pcs = plan.chords[bar][1]
        steps = (0, 8) if density >= 0.8 else (0,)
        if density > 1.2:
            steps = (0, 4, 8, 12)
        for st in steps:
            cands = [nearest_pitch_with_pc(pc, prev) for pc in pcs[1:3]]
            cands = [c for c in cands if c != prev] or cands
            pitch = min(cands, key=lambda c: (abs(c - prev) + 0.3 * abs(c - center), c))
            if rng.random() < 0.2:
                pitch = rng.choice(cands)
            length = 16 // len(steps)
            notes.append((plan.time(bar, st), _clip_end(plan, plan.time(bar, st + length) - 0.03 * plan.beat_s),
                          pitch, _vel(base, energy)))
            prev = pitch
    notes = _humanize(notes, rng, plan.style.humanize_s, 6, plan.final_s if plan.body_bars else plan.duration_s)
    third = chord_pcs(plan.tonic, plan.mode, 0)[1]
    notes.append((plan.final_s, plan.duration_s, nearest_pitch_with_pc(third, prev), base + 10))
    return notes


# -- melody ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Motif:
    rhythm: tuple[tuple[int, int], ...]  # (step, length) in 16ths within one bar
    contour: tuple[int, ...]  # scale-step offsets, one per note, relative to the anchor


def _make_motif(rng: random.Random, density: float) -> Motif:
    n = max(2, min(8, round(2.5 + 3.5 * density + rng.uniform(-0.7, 0.7))))
    weights = {s: (3.0 if s % 4 == 0 else 1.8 if s % 2 == 0 else 0.5 * density) for s in range(15)}
    steps = {0 if rng.random() < 0.75 else 2}
    while len(steps) < n:
        cands = [s for s in weights if s not in steps]
        steps.add(rng.choices(cands, [weights[c] for c in cands])[0])
    ordered = sorted(steps)
    rhythm = tuple((s, max(1, min(6, (ordered[i + 1] if i + 1 < len(ordered) else 16) - s)))
                   for i, s in enumerate(ordered))
    contour = [0]
    for _ in range(len(rhythm) - 1):
        move = rng.choices([-2, -1, 1, 2, 3, -3, 0], [2, 4, 4, 2, 1, 1, 1])[0]
        contour.append(max(-4, min(5, contour[-1] + move)))
    return Motif(rhythm, tuple(contour))


def _vary(m: Motif, rng: random.Random) -> Motif:
    """Keep the rhythm, bend the tail: the variation that makes a motif feel developed, not looped."""
    contour = list(m.contour)
    if len(contour) >= 3 and rng.random() < 0.5:
        contour = contour[:2] + [2 * contour[1] - c for c in contour[2:]]  # mirror the tail
    else:
        contour[-1] += rng.choice([-2, -1, 1, 2])
    return Motif(m.rhythm, tuple(max(-5, min(6, c)) for c in contour))


def _lead_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    steps = SCALE_STEPS[plan.mode]
    octave = int(opts.get("octave", 0))
    register = plan.style.lead_register + 12 * octave
    density = float(opts.get("density", 1.0)) * plan.style.density
    motifs = {fam: _make_motif(rng, density * (0.8, 1.1, 0.7)[fam]) for fam in range(3)}
    tonic_anchor = register - ((register - plan.tonic) % 12)  # scale index 0 = this pitch

    def pitch_of(idx: int) -> int:
        o, d = divmod(idx, 7)
        return tonic_anchor + 12 * o + steps[d]

    def chord_idx(pcs: tuple[int, ...], near: int) -> int:
        """Scale index of the chord tone nearest ``near`` (chord tones outside the scale snap to it)."""
        best = None
        for i in range(near - 4, near + 5):
            if pitch_of(i) % 12 in pcs[:3] and (best is None or abs(i - near) < abs(best - near)):
                best = i
        return best if best is not None else near

    base = plan.style.velocity + 2
    notes: list[Note] = []
    plays = [s for s in plan.sections if not (s[0] == "intro" and len(plan.sections) > 1)]
    prev_idx = 2
    for name, first, nbars, energy in plan.sections:
        if (name, first, nbars, energy) not in plays:
            continue
        fam = _family(name)
        motif = motifs[fam]
        lift = 2 if fam == 1 else 0
        for b in range(first, first + nbars):
            pos = (b - first) % 4
            pcs = plan.chords[b][1]
            m = motif if pos in (0, 1) else _vary(motif, rng)
            rhythm = list(m.rhythm)
            is_last = b == first + nbars - 1
            if pos == 3 or is_last:
                rhythm = [r for r in rhythm if r[0] < 8][:3] + [(8, 8)]
            anchor = chord_idx(pcs, prev_idx if pos else 2 + lift)
            for i, (step, length) in enumerate(rhythm):
                if energy < 0.5 and step % 4 and rng.random() < 0.5:
                    continue
                c = m.contour[min(i, len(m.contour) - 1)]
                idx = anchor + c
                if step % 4 == 0:
                    idx = chord_idx(pcs, idx)
                if (pos == 3 or is_last) and step == 8:
                    idx = chord_idx(pcs, idx)
                while idx > 9:
                    idx -= 7
                while idx < -3:
                    idx += 7
                start = plan.time(b, step)
                end = _clip_end(plan, plan.time(b, step + length) - 0.06 * plan.beat_s)
                notes.append((start, end, pitch_of(idx), _vel(base, energy, 8 if step % 8 == 0 else 0)))
                prev_idx = idx
    notes = _humanize(notes, rng, plan.style.humanize_s, 7, plan.final_s if plan.body_bars else plan.duration_s)
    final_idx = 7 if prev_idx >= 4 else 0
    notes.append((plan.final_s, plan.duration_s, pitch_of(final_idx), base + 6))
    return notes


# -- stems: roles, programs, generation --------------------------------------------------------------------
_DEFAULT_VOLUME = {"drums": 112, "percussion": 84, "bass": 94, "chords": 100, "lead": 94, "pad": 84,
                   "arpeggio": 72, "texture": 72, "counter": 80}
_DEFAULT_PAN = {"chords": 52, "pad": 76, "arpeggio": 80, "texture": 78, "counter": 44, "percussion": 84}


def _part(plan: Plan, role: str, program: int, seed: int, stem: str, opts: dict[str, Any]) -> list[Note]:
    rng = _rng(seed, stem, str(opts.get("variant", "")))
    writers: dict[str, Callable[[], list[Note]]] = {
        "drums": lambda: _drum_part(plan, rng, opts),
        "percussion": lambda: _percussion_part(plan, rng, opts),
        "bass": lambda: _bass_part(plan, rng, opts),
        "chords": lambda: _chord_part(plan, rng, opts, program),
        "lead": lambda: _lead_part(plan, rng, opts),
        "pad": lambda: _pad_part(plan, rng, opts),
        "texture": lambda: _pad_part(plan, rng, opts),
        "arpeggio": lambda: _arp_part(plan, rng, opts),
        "counter": lambda: _counter_part(plan, rng, opts),
    }
    notes = writers[role]()
    if role not in ("drums", "percussion"):  # octave edits must not leave the audible, playable range
        notes = [(st, en, _fold(p), v) for st, en, p, v in notes]
    return _finish(_apply_gain(notes, int(opts.get("velocity_delta", 0))))


def _fold(pitch: int, low: int = 24, high: int = 108) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return pitch


def _apply_gain(notes: list[Note], delta: int) -> list[Note]:
    if not delta:
        return notes
    return [(s, e, p, max(1, min(127, v + delta))) for s, e, p, v in notes]


def _make_track(plan: Plan, name: str, role: str, program: int, is_drum: bool, seed: int,
                opts: dict[str, Any]) -> Track:
    opts = {"seed": seed, **opts}
    volume = max(0, min(127, _DEFAULT_VOLUME.get(role, 90) + int(opts.get("volume_delta", 0))))
    return Track(name=name, role=role, program=program, is_drum=is_drum,
                 notes=_part(plan, role, program, seed, name, opts), volume=volume,
                 pan=_DEFAULT_PAN.get(role, 64), options=opts)


def _stem_layout(params: ResolvedParams, style: Style) -> list[tuple[str, str, int, bool]]:
    """(stem name, role, GM program, is_drum) for the default stems plus requested instruments."""
    layout: dict[str, list[Any]] = {
        "drums": ["drums", 0, True], "bass": ["bass", style.programs["bass"], False],
        "chords": ["chords", style.programs["chords"], False], "lead": ["lead", style.programs["lead"], False],
    }
    if style.texture != "none":
        layout["texture"] = [style.texture, style.programs["texture"], False]
    claimed: set[str] = set()
    extra: list[tuple[str, str, int, bool]] = []
    for inst in params.instruments:
        spec = INSTRUMENTS[inst]
        stem = {"pad": "texture", "arpeggio": "texture", "texture": "texture"}.get(spec.role, spec.role)
        if stem in ("drums",):
            continue
        if stem in layout and stem not in claimed:
            role = spec.role if stem == "texture" else layout[stem][0]
            layout[stem] = [role, spec.program, spec.is_drum]
            claimed.add(stem)
        elif stem == "texture" and stem not in layout:
            layout["texture"] = [spec.role, spec.program, False]
            claimed.add(stem)
        else:
            name = _unique_name(inst.replace(" ", "_"), set(layout) | {e[0] for e in extra})
            role = "pad" if spec.role == "chords" and stem in claimed else spec.role
            extra.append((name, role, spec.program, spec.is_drum))
    return [(k, v[0], v[1], v[2]) for k, v in layout.items()] + extra


def _unique_name(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    i = 2
    while f"{base}_{i}" in taken:
        i += 1
    return f"{base}_{i}"


def compose(params: ResolvedParams) -> Arrangement:
    """The full arrangement for these controls; identical controls give an identical arrangement."""
    plan = make_plan(params)
    tracks = [_make_track(plan, name, role, program, is_drum, params.seed, {})
              for name, role, program, is_drum in _stem_layout(params, plan.style)]
    return _arrangement(params, plan, tracks)


def _arrangement(params: ResolvedParams, plan: Plan, tracks: list[Track]) -> Arrangement:
    bar = plan.bar_s
    sections = [Section(name, round(first * bar, _ROUND),
                        round(params.duration_s if i == len(plan.sections) - 1 else (first + n) * bar, _ROUND),
                        energy) for i, (name, first, n, energy) in enumerate(plan.sections)]
    if not sections:
        sections = [Section("outro", 0.0, params.duration_s, 0.5)]
    return Arrangement(bpm=params.bpm, key=Key(params.key_tonic, params.key_mode, params.key), time_signature=(4, 4),
                       duration_s=params.duration_s, sections=sections, tracks=tracks, seed=params.seed,
                       genre=params.genre, mood=params.mood)


# -- editing one stem -----------------------------------------------------------------------------------------
_INSTRUCTIONS: list[tuple[str, dict[str, Any]]] = [
    (r"\b(busier|more notes|denser|more active|more complex|fuller)\b", {"density": 1.6}),
    (r"\b(sparser|simpler|fewer notes|less busy|minimal|thinner|calmer)\b", {"density": 0.55}),
    (r"\b(octave|8va) (lower|down)\b|\blower\b", {"octave": -1}),
    (r"\b(octave|8va) (higher|up)\b|\bhigher\b", {"octave": 1}),
    (r"\b(louder|stronger|more prominent|up front)\b", {"velocity_delta": 14, "volume_delta": 14}),
    (r"\b(softer|quieter|gentler|more subtle|in the background)\b", {"velocity_delta": -14, "volume_delta": -18}),
    (r"\b(different rhythm|new rhythm|another rhythm|change the rhythm|different groove)\b", {"variant": 1}),
]


_KNOWN_INSTRUCTIONS = ("busier/denser/sparser/simpler, an octave lower/higher, louder/softer, "
                       "different rhythm")
_PART_SPLIT = re.compile(r"\s*(?:[,;.!]|\band\b|\bbut\b|\bthen\b|&)\s*", re.IGNORECASE)


def explain_instruction(instruction: str | None) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    """(option changes, understood parts, ignored parts) for an instruction such as
    'busier drums, an octave lower and more cowbell'.

    The text is split at commas, 'and', 'but', 'then'; each part either maps to changes the composer
    knows or is reported as ignored with the reason (unknown words, or a change an earlier part already
    set, as in 'louder ... softer').
    """
    changes: dict[str, Any] = {}
    understood: list[dict[str, Any]] = []
    ignored: list[dict[str, str]] = []
    for part in (p.strip() for p in _PART_SPLIT.split(instruction or "")):
        if not part:
            continue
        low = part.lower()
        found = {k: v for pattern, change in _INSTRUCTIONS if re.search(pattern, low) for k, v in change.items()}
        if not found:
            ignored.append({"text": part, "reason": f"not a change the composer knows ({_KNOWN_INSTRUCTIONS})"})
            continue
        clash = [k for k in found if k in changes]
        if clash:
            ignored.append({"text": part, "reason": "conflicts with an earlier part of the instruction"})
            continue
        changes.update(found)
        understood.append({"text": part, "changes": found})
    return changes, understood, ignored


def parse_instruction(instruction: str | None) -> dict[str, Any]:
    """Instruction text → option changes; parts it does not know leave the options alone."""
    return explain_instruction(instruction)[0]


def _merge_options(old: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    opts = {k: v for k, v in old.items() if k != "seed"}
    if "density" in change:
        opts["density"] = round(max(0.3, min(2.5, float(opts.get("density", 1.0)) * change["density"])), 4)
    if "octave" in change:
        opts["octave"] = max(-2, min(2, int(opts.get("octave", 0)) + change["octave"]))
    for k in ("velocity_delta", "volume_delta"):
        if k in change:
            opts[k] = max(-60, min(40, int(opts.get(k, 0)) + change[k]))
    if "variant" in change:
        opts["variant"] = int(opts.get("variant", 0)) + 1
    return opts


def regenerate_stem(arr: Arrangement, params: ResolvedParams, stem: str, instruction: str | None,
                    seed: int) -> Arrangement:
    """Re-compose one stem with a new seed (and the instruction's changes); every other track is reused as is."""
    old = arr.track(stem)
    plan = make_plan(params)
    opts = _merge_options(old.options, parse_instruction(instruction))
    new = _make_track(plan, old.name, old.role, old.program, old.is_drum, int(seed), opts)
    if new.notes == old.notes:  # a seed that happens to reproduce the old part would be a no-op edit
        opts["variant"] = int(opts.get("variant", 0)) + 1
        new = _make_track(plan, old.name, old.role, old.program, old.is_drum, int(seed), opts)
    return replace(arr, tracks=[new if t.name == stem else t for t in arr.tracks],
                   sections=list(arr.sections))


_ROLE_WORDS = {"pad": "pad", "arpeggio": "arpeggio", "arp": "arpeggio", "lead": "lead", "melody": "lead",
               "bass": "bass", "percussion": "percussion", "texture": "texture", "counter": "counter",
               "countermelody": "counter", "chords": "chords", "comping": "chords", "drums": "drums"}


def add_stem(arr: Arrangement, params: ResolvedParams, instrument: str, role: str | None, seed: int) -> Arrangement:
    """Add one new part (e.g. 'strings' as a pad, 'arpeggio synth', 'percussion') under a unique stem name."""
    words = instrument.strip().lower().split()
    implied_role = None
    try:
        inst = normalise_instrument(instrument)
    except ControlError:
        # "strings pad" = instrument "strings" playing the pad role
        kept = [w for w in words if w not in _ROLE_WORDS or w in ("bass", "percussion", "drums", "pad")]
        implied = [w for w in words if w in _ROLE_WORDS]
        inst = None
        for i in range(len(kept), 0, -1):
            try:
                inst = normalise_instrument(" ".join(kept[:i]))
                break
            except ControlError:
                continue
        if inst is None:
            raise ControlError("instrument", f"unknown instrument {instrument!r}; allowed: {', '.join(INSTRUMENTS)}")
        implied_role = _ROLE_WORDS[implied[-1]] if implied else None
    spec = INSTRUMENTS[inst]
    r = (role or implied_role or spec.role).lower()
    if r not in ROLES:
        raise ControlError("role", f"unknown role {role!r}; allowed: {', '.join(ROLES)}")
    is_drum = r in ("drums", "percussion")
    program = 0 if is_drum else spec.program
    plan = make_plan(params)
    name = _unique_name(inst.replace(" ", "_") if not is_drum else r, {t.name for t in arr.tracks})
    track = _make_track(plan, name, r, program, is_drum, int(seed), {})
    return replace(arr, tracks=[*arr.tracks, track], sections=list(arr.sections))
