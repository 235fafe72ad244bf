"""The symbolic composer: resolved controls in, a deterministic multi-track arrangement out.

An ``Arrangement`` is plain data (seconds, MIDI pitches, velocities) that serialises to JSON and
back exactly, so a stored arrangement can be re-rendered, exported to MIDI, or edited one stem at
a time (``regenerate_stem``, ``add_stem``) long after the request that made it.

How a piece is built, in order:
1. a *plan* from the controls alone: the bar grid of the meter (4/4, 3/4, 6/8, 12/8), sections made
   of whole 4-bar phrases fitted to the requested duration (a short piece has fewer sections, never
   2-bar ones), and harmony generated per seed from the style's harmonic language (functional
   grammar, loops or the 12-bar blues; secondary dominants, borrowed chords, a last-chorus key
   change where the style uses one), each phrase ending in a cadence; the body ends on the dominant
   and the final tonic chord rings to the end, so the key is unambiguous;
2. one part per stem, each from its own seeded random stream, so re-composing one stem never
   disturbs another; the melody develops one motif per section family (call, response, sequence,
   cadence in each phrase);
3. an ending: a final tonic chord with a kick and crash on the last downbeat, left to ring until
   the requested duration.
Everything a style decides is data in ``styles.py``.
"""

from __future__ import annotations

import json
import math
import random
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
from .styles import (
    CONGA_HI,
    CONGA_LO,
    CRASH,
    GENERIC_BASS,
    GENERIC_CHORDS,
    GENERIC_GROOVES,
    HAT_CLOSED,
    KICK,
    METERS,
    RIDE,
    SHAKER,
    SNARE,
    TAMBOURINE,
    TOM_FLOOR,
    TOM_HIGH,
    TOM_LOW,
    TOM_MID,
    BassPattern,
    ChordPattern,
    Groove,
    beat_steps,
    steps_per_bar,
)
from .styles import Style as StyleData
from .stem_changes import ARP_SHAPES, BASS_PATTERNS, CHORD_PATTERNS, DRUM_PATTERNS, StemChanges
from .stem_changes import parse_text as _parse_change_text
from .stem_changes import resolve as _resolve_changes
from .stem_changes import to_options as _change_options
from .theory import (
    SCALE_STEPS,
    Chord,
    blues_progression,
    chord_pcs,
    choose_cadence,
    key_display_name,
    key_scale_pcs,
    modulation_pivot,
    nearest_pitch_with_pc,
    phrase_progression,
    pick_loop,
    voice_chord,
)

Note = tuple[float, float, int, int]  # (start_s, end_s, pitch, velocity)
FORMAT_VERSION = 2  # 2: meter, feel, per-bar harmony and key changes; version 1 (always 4/4) still loads
_ROUND = 5  # decimals of a second kept in note times (10 µs): exact JSON round trips, tidy files


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
    """A composed piece. ``harmony`` holds one chord per bar (label, pitch classes, degree, function) so a
    later stem edit plays over exactly the chords the other stems were written on; ``key_changes`` lists
    modulations ({"at_s", "key"}). Arrangements of format 1 (before meters) load with an empty harmony,
    which the editing functions recover from the chord and bass tracks."""

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
    feel: str = "straight"
    harmony: list[dict[str, Any]] = field(default_factory=list)
    key_changes: list[dict[str, Any]] = field(default_factory=list)

    @property
    def key_name(self) -> str:
        return self.key.name

    @property
    def meter(self) -> str:
        return f"{self.time_signature[0]}/{self.time_signature[1]}"

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
            "time_signature": list(self.time_signature), "meter": self.meter, "feel": self.feel,
            "duration_s": self.duration_s, "seed": self.seed, "genre": self.genre, "mood": self.mood,
            "sections": [{"name": s.name, "start_s": s.start_s, "end_s": s.end_s, "energy": s.energy}
                         for s in self.sections],
            "harmony": self.harmony, "key_changes": self.key_changes,
            "tracks": [{"name": t.name, "role": t.role, "program": t.program, "is_drum": t.is_drum,
                        "volume": t.volume, "pan": t.pan, "options": t.options,
                        "notes": [list(n) for n in t.notes]} for t in self.tracks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Arrangement:
        version = d.get("version")
        if version not in (1, FORMAT_VERSION):
            raise ValueError(f"arrangement format version {version!r} is not 1 or {FORMAT_VERSION}")
        return cls(
            bpm=d["bpm"], key=Key(**d["key"]), time_signature=tuple(d["time_signature"]),  # type: ignore[arg-type]
            duration_s=d["duration_s"], seed=d["seed"], genre=d["genre"], mood=d["mood"],
            sections=[Section(**s) for s in d["sections"]],
            tracks=[Track(name=t["name"], role=t["role"], program=t["program"], is_drum=t["is_drum"],
                          volume=t["volume"], pan=t["pan"], options=t["options"],
                          notes=[(n[0], n[1], n[2], n[3]) for n in t["notes"]]) for t in d["tracks"]],
            version=version, feel=d.get("feel", "straight"), harmony=list(d.get("harmony") or []),
            key_changes=list(d.get("key_changes") or []))

    @classmethod
    def from_json(cls, s: str) -> Arrangement:
        return cls.from_dict(json.loads(s))


# -- the style of one piece: the style's data bent by the mood and the chosen meter/feel ------------------
@dataclass(frozen=True)
class PieceStyle:
    data: StyleData
    groove: Groove
    bass: BassPattern
    chord_rhythm: ChordPattern
    swing: float
    swing_eighths: bool
    humanize_s: float
    velocity: int
    density: float
    lead_register: int
    sevenths: bool
    texture: str
    programs: dict[str, int]


# A bright synth lead over a sad or calm song in an acoustic style sounds wrong; these moods swap it
# for a softer voice (a square lead's strong odd harmonics also blur the minor third).
_SOFT_LEAD = {"sad": 73, "romantic": 73, "calm": 11}


def style_for(params: ResolvedParams) -> PieceStyle:
    g, m = GENRES[params.genre], MOODS[params.mood]
    meter = params.meter if params.meter in METERS else "4/4"
    programs = dict(g.programs)
    if params.mood in _SOFT_LEAD and not g.electronic and 80 <= programs["lead"] <= 87:
        programs["lead"] = _SOFT_LEAD[params.mood]
    compound = beat_steps(meter) == 6
    feel = params.feel if params.feel in ("straight", "swing", "shuffle") else "straight"
    if compound:  # 6/8 and 12/8 already divide the beat in three: nothing to swing
        swing, eighths = 0.0, False
    elif feel == "shuffle":
        swing, eighths = 1.0, True
    elif feel == "swing":
        swing, eighths = (g.swing if g.feel == "swing" and g.swing else 0.66), True
    else:
        swing, eighths = (g.swing if g.feel == "straight" else 0.0), False
    return PieceStyle(data=g, groove=g.grooves.get(meter) or GENERIC_GROOVES[meter],
                      bass=g.bass.get(meter) or GENERIC_BASS[meter],
                      chord_rhythm=g.chord_rhythm.get(meter) or GENERIC_CHORDS[meter], swing=swing,
                      swing_eighths=eighths, humanize_s=g.humanize_ms / 1000.0,
                      velocity=max(40, min(118, g.velocity + m.velocity_delta)), density=m.density,
                      lead_register=g.lead_register + m.register_shift, sevenths=g.harmony.sevenths,
                      texture=g.texture, programs=programs)


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
    chords: tuple[Chord, ...]  # one per bar: (degree, pitch classes root first, label, function)
    style: PieceStyle
    genre: str
    meter: str = "4/4"
    phrases: tuple[tuple[int, int, str], ...] = ()  # (first bar, bars, cadence that ends it)
    modulation: tuple[int, int] | None = None  # (first bar in the new key, semitones up)

    @property
    def steps(self) -> int:
        """16th steps per bar."""
        return steps_per_bar(self.meter)

    @property
    def beat(self) -> int:
        """16th steps per felt beat (4, or 6 in 6/8 and 12/8)."""
        return beat_steps(self.meter)

    @property
    def half(self) -> int:
        """Steps to the bar's secondary strong beat (3/4 has none: the whole bar)."""
        return self.steps if self.meter == "3/4" else self.steps // 2

    @property
    def beat_s(self) -> float:
        """Seconds per quarter note (bpm counts quarters in every meter)."""
        return 60.0 / self.bpm

    @property
    def bar_s(self) -> float:
        return self.steps * self.beat_s / 4.0

    def tonic_at(self, bar: int) -> int:
        if self.modulation and bar >= self.modulation[0]:
            return (self.tonic + self.modulation[1]) % 12
        return self.tonic

    @property
    def final_tonic(self) -> int:
        return self.tonic_at(self.body_bars)

    def time(self, bar: int, step: float) -> float:
        """Seconds at a 16th-note step of a bar, with the feel's swing applied to off-beats."""
        st = self.style
        shift = 0.0
        if st.swing and float(step).is_integer():
            s = int(step) % 4
            if st.swing_eighths and s == 2:
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
PHRASE_BARS = 4
_MAX_SECTION_PHRASES = 4  # 16 bars


def _grow_pair(names: list[str]) -> tuple[str, ...]:
    if "drop" in names:
        return ("build", "drop")
    if "head" in names or "solo" in names:
        return ("solo",)
    if "hook" in names:
        return ("verse", "hook")
    return ("verse", "chorus")


def _fit_sections(structure: tuple[str, ...], body_bars: int, mood: str,
                  grow: bool = True) -> list[tuple[str, int, int, float]]:
    """Sections of whole 4-bar phrases filling ``body_bars``.

    Too short for every section: the least important go first (a repeated section before a new one),
    so a 30 s piece is intro-verse-chorus, not eight 2-bar scraps. Long enough for more: sections
    grow toward their nominal length (verse and chorus 8 bars, intro 4), then the style's core pair
    (verse+chorus, build+drop, a solo) is repeated before the ending, then sections grow up to 16
    bars. Bars left over after whole phrases (1-3) extend the last section as a tag.
    """
    if body_bars <= 0:
        return []
    names = list(structure)
    phrases, tag = divmod(body_bars, PHRASE_BARS)
    if phrases == 0:
        best = max(names, key=lambda n: _PRIORITY.get(n, 1))
        return [(best, 0, body_bars, _energy(best, mood, False))]
    def nominal(n: str) -> int:
        return max(1, SECTIONS[n][1] // PHRASE_BARS)

    # drop sections until each has a phrase, and until the rest can come near their nominal length
    while len(names) > phrases or (len(names) > 2 and sum(nominal(n) for n in names) > 1.5 * phrases):
        seen: dict[str, int] = {}
        scores = []
        for i, n in enumerate(names):
            seen[n] = seen.get(n, 0) + 1
            scores.append((_PRIORITY.get(n, 1) - 10 * (seen[n] - 1), -i))
        names.pop(-min(scores)[1])
        names = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]  # no chorus right after a chorus

    pair = _grow_pair(names)
    if grow and phrases >= sum(nominal(n) for n in names) + sum(nominal(n) for n in pair) + 2:
        at = len(names) - 1 if names[-1] == "outro" and len(names) > 1 else len(names)
        if "bridge" in names[:at] and names.index("bridge") > 1:
            at = names.index("bridge")
        names[at:at] = list(pair)
    alloc = [1] * len(names)
    extra = phrases - len(names)
    while extra > 0:
        short = [i for i in range(len(names)) if alloc[i] < nominal(names[i])]
        if short:
            i = max(short, key=lambda j: (nominal(names[j]) - alloc[j], _PRIORITY.get(names[j], 1), -j))
        else:
            room = [j for j in range(len(names)) if alloc[j] < _MAX_SECTION_PHRASES] or list(range(len(names)))
            i = min(room, key=lambda j: (alloc[j] / nominal(names[j]), -_PRIORITY.get(names[j], 1), j))
        alloc[i] += 1
        extra -= 1
    bars = [a * PHRASE_BARS for a in alloc]
    bars[-1] += tag
    out, start = [], 0
    for i, (n, b) in enumerate(zip(names, bars)):
        last_of_kind = names.count(n) > 1 and i == max(j for j, m in enumerate(names) if m == n)
        out.append((n, start, b, _energy(n, mood, last_of_kind and n in ("chorus", "drop", "hook"))))
        start += b
    return out


def _energy(name: str, mood: str, lift: bool) -> float:
    energy = SECTIONS[name][0] + _MOOD_ENERGY.get(mood, 0.0) + (0.05 if lift else 0.0)  # the last chorus lifts
    return round(min(1.0, max(0.15, energy)), 3)


def _family(section: str) -> int:
    if section in ("chorus", "drop", "hook", "solo"):
        return 1
    if section in ("bridge", "breakdown", "interlude"):
        return 2
    return 0


def _harmony(params: ResolvedParams, style: PieceStyle, sections: list[tuple[str, int, int, float]],
             body_bars: int) -> tuple[list[Chord], list[tuple[int, int, str]], tuple[int, int] | None]:
    """One chord per bar, the phrases with their cadences, and the key change (if any).

    Drawn from the piece's seed (never a stem's), one progression per section family and phrase
    position, so a second verse repeats the first verse's harmony as songs do, while another seed
    gives other progressions.
    """
    h = style.data.harmony
    tonic, mode = params.key_tonic, params.key_mode
    bpc = max(1, h.bars_per_chord)
    chords: list[Chord] = []
    phrases: list[tuple[int, int, str]] = []
    cache: dict[tuple[Any, ...], list[Chord]] = {}
    loops: dict[int, tuple[int, ...]] = {}
    for si, (name, first, nbars, _) in enumerate(sections):
        fam = _family(name)
        last_section = si == len(sections) - 1
        next_name = sections[si + 1][0] if not last_section else None
        plen = PHRASE_BARS * bpc if nbars >= PHRASE_BARS * bpc else PHRASE_BARS
        bounds = list(range(0, max(1, nbars - nbars % PHRASE_BARS), plen)) or [0]
        for pi, p0 in enumerate(bounds):
            p_last = pi == len(bounds) - 1
            p_bars = (nbars - p0) if p_last else min(plen, nbars - p0)
            rng = random.Random(f"{params.seed}:harmony:{fam}:{pi}:{p_bars}")
            if last_section and p_last:
                cadence = "final"
            elif p_last:
                conclusive = next_name not in ("chorus", "drop", "hook")
                cadence = choose_cadence(rng, h.cadences, conclusive=conclusive)
            else:
                cadence = choose_cadence(rng, h.cadences)
            key = (fam, pi, p_bars, cadence) if h.kind != "blues" else (first + p0, p_bars, cadence)
            if key not in cache:
                if h.kind == "blues":
                    prog = blues_progression(random.Random(f"{params.seed}:blues"), tonic, mode, p_bars,
                                             start=(first + p0) % 12)
                    if cadence == "final" and p_bars >= 2:
                        prog[-1] = blues_progression(random.Random(0), tonic, mode, 1, start=11)[0]
                    per_bar = prog
                else:
                    if fam not in loops:
                        loops[fam] = pick_loop(random.Random(f"{params.seed}:loop:{fam}"), h.kind, mode)
                    rate = bpc if p_bars >= 2 * bpc else 1  # a phrase too short for slow harmony changes every bar
                    slots = math.ceil(p_bars / rate)
                    prog = phrase_progression(rng, h, tonic, mode, slots, cadence, loop=loops[fam])
                    per_bar = [prog[i // rate] for i in range(p_bars)]
                    if rate > 1 and cadence in ("authentic", "plagal", "deceptive", "final") and p_bars >= 2:
                        # the cadence's two chords take the phrase's last two bars
                        per_bar[-2], per_bar[-1] = prog[-2], prog[-1]
                cache[key] = per_bar
            chords.extend(cache[key])
            phrases.append((first + p0, p_bars, "authentic" if cadence == "final" else cadence))
    chords = chords[:body_bars]
    modulation = None
    if h.key_change and len(sections) >= 4:
        lifts = [s for s in sections if s[0] in ("chorus", "hook", "drop")]
        if len(lifts) >= 2 and lifts[-1][1] >= 2:
            at, shift = lifts[-1][1], h.key_change
            modulation = (at, shift)
            new_tonic = (tonic + shift) % 12
            chords = [c if b < at else Chord(c.degree, tuple((p + shift) % 12 for p in c.pcs), c.label, c.function)
                      for b, c in enumerate(chords)]
            chords[at - 1] = modulation_pivot(new_tonic, mode, h.sevenths or True)
            # the phrase before the new key now ends on the new key's dominant: a pivot, not its own cadence
            phrases = [(f, n, "pivot" if f <= at - 1 < f + n else c) for f, n, c in phrases]
    return chords, phrases, modulation


def make_plan(params: ResolvedParams) -> Plan:
    """Everything shared by all stems; a pure function of the controls (never of a stem's seed)."""
    style = style_for(params)
    meter = params.meter if params.meter in METERS else "4/4"
    beat = 60.0 / params.bpm
    bar = steps_per_bar(meter) * beat / 4.0
    ring_min = min(params.duration_s, max(1.0, 2 * beat))
    body_bars = max(0, math.floor((params.duration_s - ring_min) / bar + 1e-9))
    sections = _fit_sections(params.structure, body_bars, params.mood) if body_bars else []
    chords, phrases, modulation = _harmony(params, style, sections, body_bars)
    return Plan(bpm=params.bpm, tonic=params.key_tonic, mode=params.key_mode, duration_s=params.duration_s,
                body_bars=body_bars, final_s=body_bars * bar, sections=tuple(sections), chords=tuple(chords),
                style=style, genre=params.genre, meter=meter, phrases=tuple(phrases), modulation=modulation)


# -- helpers shared by the part writers -------------------------------------------------------------
def _vel(base: float, energy: float, accent: float = 0.0) -> int:
    """Velocity from a part's base, the section's energy (0..1) and an accent; full energy leaves headroom
    under 127 so "louder" still has somewhere to go."""
    return int(max(1, min(127, round(base * (0.68 + 0.32 * energy) + accent))))


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


def _chord_tone(plan: Plan, bar: int, pcs: tuple[int, ...], tone: str, root: int, next_root_pc: int | None,
                rng: random.Random) -> int:
    if tone == "R":
        return root
    if tone == "8":
        return root + 12
    if tone == "5":
        return root + ((pcs[2] - pcs[0]) % 12)
    if tone == "3":
        return root + ((pcs[1] - pcs[0]) % 12)
    if tone == "b3":
        return root + 3
    if tone == "6":
        return root + 9
    if tone == "7":
        return root + ((pcs[3] - pcs[0]) % 12 if len(pcs) > 3 else (pcs[2] - pcs[0]) % 12)
    # "A": a diatonic step leading into the next bar's root
    target_pc = next_root_pc if next_root_pc is not None else pcs[0]
    target = nearest_pitch_with_pc(target_pc, root)
    scale = sorted(key_scale_pcs(plan.tonic_at(bar), plan.mode))
    above = next(p for p in range(target + 1, target + 4) if p % 12 in scale)
    below = next(p for p in range(target - 1, target - 4, -1) if p % 12 in scale)
    return below if rng.random() < 0.6 else above


# -- drums -----------------------------------------------------------------------------------------------
_V = {"X": 118, "x": 100, "o": 78, "g": 46, ".": 0}


def _drum_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    groove = plan.style.groove
    layers = list(groove.layers)
    if groove.kicks:
        idx = int(opts.get("variant", 0)) % len(groove.kicks)
        first_kick = next((i for i, (k, _, lvl) in enumerate(layers) if k == KICK and lvl == 0), None)
        if first_kick is not None:
            layers[first_kick] = (KICK, groove.kicks[idx], 0)
    ride_led = any(k == RIDE and lvl == 0 for k, _, lvl in layers)
    density = float(opts.get("density", 1.0)) * plan.style.density
    base = plan.style.velocity + 8
    hit_len = plan.beat_s / 4
    steps, beat = plan.steps, plan.beat
    notes: list[Note] = []
    for name, first, nbars, energy in plan.sections:
        for b in range(first, first + nbars):
            last_bar = b == first + nbars - 1 and b != plan.body_bars - 1
            fill = last_bar and energy >= 0.5 and nbars >= 2
            roll = last_bar and name == "build"
            fill_from = steps - beat
            used: set[tuple[int, int]] = set()
            for key, pat, min_e in layers:
                if energy + 1e-9 < min_e:
                    continue
                for step, ch in enumerate(pat):
                    v = _V[ch]
                    if not v or (key, step) in used:
                        continue
                    if (fill or roll) and step >= fill_from and key not in (KICK, RIDE):
                        continue
                    if ch == "g" and density < 1.0 and rng.random() > density:
                        continue  # sparser: ghost notes thin out
                    if key in (HAT_CLOSED, SHAKER) and density < 0.75 and step % 4 == 2 and rng.random() < 0.5:
                        continue
                    used.add((key, step))
                    t = plan.time(b, step)
                    notes.append((t, t + hit_len, key, _vel(v * base / 100, energy)))
            if density > 1.15:  # busier: extra 16th hats and ghost snares where the grid is empty
                for step in range(steps):
                    if (HAT_CLOSED, step) not in used and (RIDE, step) not in used and rng.random() < 0.55 * (density - 1):
                        t = plan.time(b, step)
                        notes.append((t, t + hit_len, RIDE if ride_led else HAT_CLOSED, _vel(40, energy)))
                    if step % 4 in (1, 3) and rng.random() < 0.25 * (density - 1):
                        t = plan.time(b, step)
                        notes.append((t, t + hit_len, SNARE, _vel(38, energy)))
            if b == first and b > 0 and energy >= 0.6:
                t = plan.time(b, 0)
                notes.append((t, t + plan.beat_s, CRASH, _vel(base, energy)))
            if fill:
                toms = (TOM_HIGH, TOM_MID, TOM_LOW, TOM_FLOOR) if groove.toms and rng.random() < 0.6 else None
                fill_steps = list(range(fill_from, steps, 1 if beat == 4 else 2 if steps == 12 else 1))[:6]
                for i, step in enumerate(fill_steps):
                    t = plan.time(b, step)
                    key = toms[min(i, 3)] if toms else SNARE
                    notes.append((t, t + hit_len, key, _vel(base * (0.6 + 0.1 * i), energy)))
            if roll:
                for step in range(plan.half, steps):
                    for half in (0.0, 0.5) if step >= steps - beat else (0.0,):
                        t = plan.time(b, step + half)
                        notes.append((t, t + hit_len / 2, SNARE,
                                      _vel(base * (0.45 + 0.3 * (step - plan.half) / max(1, steps - plan.half)),
                                           energy)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.5, 5, plan.final_s if plan.body_bars else plan.duration_s)
    t = plan.final_s
    end = min(plan.duration_s, t + 1.5)
    notes += [(t, end, KICK, 118), (t, end, CRASH, 112)]
    if groove.toms:
        notes.append((t, end, TOM_FLOOR, 100))
    return notes


def _percussion_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    """Hand percussion layered over the kit: shaker 16ths, tambourine on the backbeats, a conga figure."""
    density = float(opts.get("density", 1.0))
    steps = plan.steps
    backbeats = {"4/4": (4, 12), "3/4": (4, 8), "6/8": (6,), "12/8": (6, 18)}[plan.meter]
    tamb = "".join("x" if s in backbeats else "." for s in range(steps))
    if steps == 16:
        conga = rng.choice(["..o.x..o..x.o...", "o..x..o...x.o..x", "..x.o.x...o.x.o."])
    else:  # on eighths: a seeded figure that avoids the downbeat
        conga = "".join("." if s == 0 or s % 2 else rng.choice("ox.") for s in range(steps))
    layers = [(SHAKER, "go" * (steps // 2), 0.0), (TAMBOURINE, tamb, 0.5),
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
_BASS_VARIANT_44: BassPattern = ((0, 3, "R"), (3, 3, "R"), (6, 2, "5"), (8, 3, "R"), (11, 3, "8"), (14, 2, "5"))


def _bass_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    pattern = list(plan.style.bass)
    walking = any(t == "A" for _, _, t in pattern) and len(pattern) >= 3
    sustained = len(pattern) <= 2
    if opts.get("variant", 0) % 2 == 1 and not walking and not (len(pattern) == 1) and not opts.get("pattern"):
        alt = _BASS_VARIANT_44 if plan.steps == 16 else GENERIC_BASS[plan.meter]
        pattern = list(alt) if list(alt) != pattern else list(GENERIC_BASS[plan.meter] if plan.steps != 16 else
                                                              ((0, 8, "R"), (8, 4, "5"), (12, 4, "8")))
    density = float(opts.get("density", 1.0))
    octave = int(opts.get("octave", 0))
    base = plan.style.velocity + 4
    steps, half = plan.steps, plan.half
    light = [(0.0, float(half), "R")] + ([(float(half), float(steps - half), "R")] if half < steps else [])
    notes: list[Note] = []
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        pcs = plan.chords[bar][1]
        nxt = plan.chords[bar + 1][1][0] if bar + 1 < plan.body_bars else plan.final_tonic
        root = nearest_pitch_with_pc(pcs[0], 40) + 12 * octave
        pat = pattern
        if energy < 0.45 and not sustained and not walking:
            pat = light
        if density < 0.8:
            pat = [p for p in pat if p[0] % half == 0] or pat[:1]
            pat = [(s, max(length, float(half) if density < 0.6 else length), t) for s, length, t in pat]
        elif density > 1.2:
            split = []
            for s, length, t in pat:
                if length >= 4:
                    split += [(s, length / 2, t), (s + length / 2, length / 2, "8" if t == "R" else t)]
                else:
                    split.append((s, length, t))
            # and pickups into the gaps: an octave or fifth on the 8th before the next note
            ends = [(s + length, nxt_s) for (s, length, _), (nxt_s, _, _) in
                    zip(split, split[1:] + [(float(steps), 0.0, "R")])]
            for gap_start, gap_end in ends:
                if gap_end - gap_start >= 2:
                    split.append((gap_end - 2, 1.5, "8" if rng.random() < 0.6 else "5"))
            pat = sorted(split)
        for step, length, tone in pat:
            if walking and tone in ("3", "5") and rng.random() < 0.35:
                tone = rng.choice(["3", "5", "8"])
            pitch = _chord_tone(plan, bar, pcs, tone, root, nxt, rng)
            start = plan.time(bar, step)
            end = _clip_end(plan, plan.time(bar, step + length) - 0.02 * plan.beat_s)
            accent = 8 if step % plan.beat == 0 else 0
            notes.append((start, end, pitch, _vel(base, energy, accent)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.5, 6, plan.final_s if plan.body_bars else plan.duration_s)
    tonic_bass = nearest_pitch_with_pc(plan.final_tonic, 40) + 12 * octave
    notes.append((plan.final_s, plan.duration_s, tonic_bass, 110))
    return notes


# -- chords, pads, arpeggios, counter-lines --------------------------------------------------------
def _voicings(plan: Plan, center: int, low: int, high: int, power: bool = False) -> list[tuple[int, ...]]:
    out: list[tuple[int, ...]] = []
    prev: tuple[int, ...] | None = None
    for chord in plan.chords:
        pcs = chord[1]
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
    pcs = chord_pcs(plan.final_tonic, plan.mode, 0)
    if power:
        root = nearest_pitch_with_pc(plan.final_tonic, center - 3)
        voicing: tuple[int, ...] = (root, root + 7, root + 12)
    else:
        voicing = voice_chord(pcs, prev if prev and len(prev) == 3 else None, center, low, high)
    return [(plan.final_s, plan.duration_s, p, velocity) for p in voicing]


def _comp_patterns(plan: Plan) -> dict[str, list[tuple[float, float]]]:
    steps, beat, half = plan.steps, plan.beat, plan.half
    return {
        "sustain": [(0.0, float(steps))],
        "halves": [(0.0, float(half)), (float(half), float(steps - half))] if half < steps else
        [(float(s), float(beat)) for s in range(0, steps, beat)],
        "beats": [(float(s), float(beat)) for s in range(0, steps, beat)],
        "push": [(0.0, 3.0), (float(beat + 2), float(steps - beat - 2))],
    }


def _chord_part(plan: Plan, rng: random.Random, opts: dict[str, Any], program: int) -> list[Note]:
    power = program in (29, 30)
    octave = int(opts.get("octave", 0))
    center = 60 + 12 * octave
    voicings = _voicings(plan, center, center - 11, center + 15, power)
    own = [(float(s), float(n)) for s, n in plan.style.chord_rhythm]
    generic = _comp_patterns(plan)
    density = float(opts.get("density", 1.0))
    variant = int(opts.get("variant", 0))
    strum = program in range(24, 32) or program in range(8)
    offbeat = own[0][0] != 0  # skanks, stabs and chops keep their rhythm even when quiet
    base = plan.style.velocity - 6
    notes: list[Note] = []
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        pattern = own
        if opts.get("pattern"):
            pass  # a named pattern asked for by an edit is kept; variants only vary the style's own
        elif variant % 3 == 1:
            pattern = generic["halves"] if len(own) == 1 else generic["beats"]
        elif variant % 3 == 2:
            pattern = generic["push"]
        if energy < 0.45 and not offbeat:
            pattern = generic["sustain"]
        if density < 0.8:
            pattern = pattern[::2]
        elif density > 1.2 and len(pattern) < 8:
            grown = sorted(set(pattern + [(s + plan.half, length) for s, length in pattern
                                          if s + plan.half + length <= plan.steps]))
            if len(grown) == len(pattern):  # already on every half bar (quarters): split each hit in two
                grown = sorted({(s + k * length / 2, length / 2) for s, length in pattern for k in (0, 1)
                                if length >= 2} | {(s, length) for s, length in pattern if length < 2})
            pattern = grown
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
    splits = [0.0, float(plan.half)] if density > 1.2 and plan.half < plan.steps else [0.0]
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        vel = _vel(base, energy)
        for at in splits:
            t0 = plan.time(bar, at)
            current = set(voicings[bar])
            for p in list(held):
                if p not in current or len(splits) > 1:
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
    if opts.get("pattern") in ARP_SHAPES:
        shape = str(opts["pattern"])
    step_len = 1 if (plan.bpm < 125 and density >= 0.8) or density > 1.3 else 2
    if plan.beat == 6:
        step_len = 2  # compound meters arpeggiate in eighths (three to the beat)
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
        for k, step in enumerate(range(0, plan.steps, sl)):
            start = plan.time(bar, step)
            end = _clip_end(plan, plan.time(bar, step + sl * 0.9))
            accent = 10 if step % plan.beat == 0 else 0
            notes.append((start, end, seq[(bar * plan.steps // sl + k) % len(seq)], _vel(base, energy, accent)))
    notes = _humanize(notes, rng, plan.style.humanize_s * 0.3, 5, plan.final_s if plan.body_bars else plan.duration_s)
    notes += _final_chord(plan, voicings[-1] if voicings else None, center, center - 8, center + 10, base + 6)
    return notes


def _counter_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    """A slow line under the melody: chord tones on the strong beats, moving by the smallest step."""
    octave = int(opts.get("octave", 0))
    density = float(opts.get("density", 1.0))
    center = 57 + 12 * octave
    prev = center
    base = plan.style.velocity - 8
    notes: list[Note] = []
    halves = [0, plan.half] if plan.half < plan.steps else [0, plan.beat * 2]
    for bar in range(plan.body_bars):
        _, _, _, energy = plan.section_at(bar)
        pcs = plan.chords[bar][1]
        starts = halves if density >= 0.8 else [0]
        if density > 1.2:
            starts = list(range(0, plan.steps, plan.beat))
        bounds = starts + [plan.steps]
        for i, st in enumerate(starts):
            cands = [nearest_pitch_with_pc(pc, prev) for pc in pcs[1:3]]
            cands = [c for c in cands if c != prev] or cands
            pitch = min(cands, key=lambda c: (abs(c - prev) + 0.3 * abs(c - center), c))
            if rng.random() < 0.2:
                pitch = rng.choice(cands)
            notes.append((plan.time(bar, st), _clip_end(plan, plan.time(bar, bounds[i + 1]) - 0.03 * plan.beat_s),
                          pitch, _vel(base, energy)))
            prev = pitch
    notes = _humanize(notes, rng, plan.style.humanize_s, 6, plan.final_s if plan.body_bars else plan.duration_s)
    third = chord_pcs(plan.final_tonic, plan.mode, 0)[1]
    notes.append((plan.final_s, plan.duration_s, nearest_pitch_with_pc(third, prev), base + 10))
    return notes


# -- melody ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Motif:
    rhythm: tuple[tuple[int, int], ...]  # (step, length) in 16ths within one bar
    contour: tuple[int, ...]  # scale-step offsets, one per note, relative to the anchor


def _make_motif(rng: random.Random, density: float, steps: int = 16, beat: int = 4) -> Motif:
    scale = steps / 16
    n = max(2, min(int(8 * scale) + 1, round((2.5 + 3.5 * density) * scale + rng.uniform(-0.7, 0.7))))
    weights = {s: (3.0 if s % beat == 0 else 1.8 if s % 2 == 0 else 0.5 * density) for s in range(steps - 1)}
    steps_set = {0 if rng.random() < 0.75 else 2}
    while len(steps_set) < n:
        cands = [s for s in weights if s not in steps_set]
        steps_set.add(rng.choices(cands, [weights[c] for c in cands])[0])
    ordered = sorted(steps_set)
    rhythm = tuple((s, max(1, min(6, (ordered[i + 1] if i + 1 < len(ordered) else steps) - s)))
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


def _answer(m: Motif) -> Motif:
    """The response to a call: the same rhythm with the contour turned over, so it falls where the call rose."""
    return Motif(m.rhythm, tuple(max(-5, min(6, -c)) for c in m.contour))


def _sequence(m: Motif, by: int) -> Motif:
    """The call moved by ``by`` scale steps (a sequence)."""
    return Motif(m.rhythm, tuple(max(-5, min(6, c + by)) for c in m.contour))


def _lead_part(plan: Plan, rng: random.Random, opts: dict[str, Any]) -> list[Note]:
    """A melody built from one motif per section family, developed phrase by phrase.

    In each 4-bar phrase: bar 1 states the motif (the call), bar 2 answers it (same rhythm, contour
    turned over), bar 3 moves it by a step (sequence) or varies it in the second phrase of a pair,
    bar 4 cadences on a long chord tone. Sections of the same family reuse their motif, so a chorus
    comes back recognisably.
    """
    steps = SCALE_STEPS[plan.mode]
    octave = int(opts.get("octave", 0))
    register = plan.style.lead_register + 12 * octave
    density = float(opts.get("density", 1.0)) * plan.style.density
    motifs = {fam: _make_motif(rng, density * (0.8, 1.1, 0.7)[fam], plan.steps, plan.beat) for fam in range(3)}
    seq_by = {fam: rng.choice([1, 2, -1]) for fam in range(3)}

    def pitch_of(idx: int, bar: int) -> int:
        tonic = plan.tonic_at(bar)
        anchor = register - ((register - tonic) % 12)  # scale index 0 = this pitch
        o, d = divmod(idx, 7)
        return anchor + 12 * o + steps[d]

    def chord_idx(pcs: tuple[int, ...], near: int, bar: int) -> int:
        """Scale index of the chord tone nearest ``near`` (chord tones outside the scale snap to it)."""
        best = None
        for i in range(near - 4, near + 5):
            if pitch_of(i, bar) % 12 in pcs[:3] and (best is None or abs(i - near) < abs(best - near)):
                best = i
        return best if best is not None else near

    base = plan.style.velocity + 2
    notes: list[Note] = []
    skip_intro = len(plan.sections) > 1
    prev_idx = 2
    cadence_at = plan.half if plan.half < plan.steps else plan.beat * 2
    for name, first, nbars, energy in plan.sections:
        if name == "intro" and skip_intro:
            continue
        fam = _family(name)
        motif = motifs[fam]
        lift = 2 if fam == 1 else 0
        for b in range(first, first + nbars):
            pos = (b - first) % PHRASE_BARS
            second_phrase = ((b - first) // PHRASE_BARS) % 2 == 1
            pcs = plan.chords[b][1]
            m = (motif, _answer(motif), _vary(motif, rng) if second_phrase else _sequence(motif, seq_by[fam]),
                 motif)[pos]
            rhythm = list(m.rhythm)
            is_last = b == first + nbars - 1
            cadence_bar = pos == PHRASE_BARS - 1 or is_last
            if cadence_bar:
                rhythm = [r for r in rhythm if r[0] < cadence_at][:3] + [(cadence_at, plan.steps - cadence_at)]
            anchor = chord_idx(pcs, prev_idx if pos else 2 + lift, b)
            for i, (step, length) in enumerate(rhythm):
                if energy < 0.5 and step % plan.beat and rng.random() < 0.5:
                    continue
                c = m.contour[min(i, len(m.contour) - 1)]
                idx = anchor + c
                if step % plan.beat == 0:
                    idx = chord_idx(pcs, idx, b)
                if cadence_bar and step == cadence_at:
                    idx = chord_idx(pcs, idx, b)
                while idx > 9:
                    idx -= 7
                while idx < -3:
                    idx += 7
                start = plan.time(b, step)
                end = _clip_end(plan, plan.time(b, step + length) - 0.06 * plan.beat_s)
                accent = 8 if step % plan.half == 0 else 0
                notes.append((start, end, pitch_of(idx, b), _vel(base, energy, accent)))
                prev_idx = idx
    notes = _humanize(notes, rng, plan.style.humanize_s, 7, plan.final_s if plan.body_bars else plan.duration_s)
    final_idx = 7 if prev_idx >= 4 else 0
    notes.append((plan.final_s, plan.duration_s, pitch_of(final_idx, plan.body_bars), base + 6))
    return notes


# -- stems: roles, programs, generation --------------------------------------------------------------------
_DEFAULT_VOLUME = {"drums": 112, "percussion": 84, "bass": 94, "chords": 100, "lead": 94, "pad": 84,
                   "arpeggio": 72, "texture": 72, "counter": 80}
_DEFAULT_PAN = {"chords": 52, "pad": 76, "arpeggio": 80, "texture": 78, "counter": 44, "percussion": 84}


def _part(plan: Plan, role: str, program: int, seed: int, stem: str, opts: dict[str, Any]) -> list[Note]:
    rng = _rng(seed, stem, str(opts.get("variant", "")))
    plan = _plan_for_options(plan, role, opts)
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
    notes = _edit_notes(plan, role, writers[role](), opts, _rng(seed, stem, "edit"))
    if role not in ("drums", "percussion"):  # octave edits must not leave the audible, playable range
        notes = [(st, en, _fold(p), v) for st, en, p, v in notes]
    return _finish(_apply_gain(notes, int(opts.get("velocity_delta", 0))))


def _plan_for_options(plan: Plan, role: str, opts: dict[str, Any]) -> Plan:
    """The plan one part is written on: the piece's, with this part's own swing and named pattern.

    Swing lives in ``Plan.time``, so a part given its own swing is simply written on a plan whose style
    swings differently; the other stems keep the piece's feel. Compound meters never swing.
    """
    kw: dict[str, Any] = {}
    if "swing" in opts and plan.beat == 4:
        kw.update(swing=float(opts["swing"]), swing_eighths=True)
    pat, meter = opts.get("pattern"), plan.meter
    if pat and role == "drums" and pat in DRUM_PATTERNS.get(meter, {}):
        kw["groove"] = DRUM_PATTERNS[meter][pat]
    elif pat and role == "bass" and pat in BASS_PATTERNS.get(meter, {}):
        kw["bass"] = BASS_PATTERNS[meter][pat]
    elif pat and role == "chords" and pat in CHORD_PATTERNS.get(meter, {}):
        kw["chord_rhythm"] = tuple((float(a), float(b)) for a, b in CHORD_PATTERNS[meter][pat])
    return replace(plan, style=replace(plan.style, **kw)) if kw else plan


_REGISTER_DEFAULT = 62


def _edit_notes(plan: Plan, role: str, notes: list[Note], opts: dict[str, Any], rng: random.Random) -> list[Note]:
    """Edits that act on a written part: half/double time, articulation, extra humanizing, register.

    Only the body (before the final downbeat) is re-timed or re-articulated; the final ringing chord
    or hit is the piece's ending and stays where every other stem has it.
    """
    time_feel, art = opts.get("time_feel"), opts.get("articulation")
    human, register = float(opts.get("humanize") or 0.0), opts.get("register")
    if not (time_feel or art or human or register is not None):
        return notes
    limit = plan.final_s if plan.body_bars else plan.duration_s
    body = [n for n in notes if n[0] < limit - 1e-6]
    tail = [n for n in notes if n[0] >= limit - 1e-6]
    bar_s = plan.bar_s
    if time_feel in ("half-time", "double-time"):
        out: list[Note] = []
        for s, e, p, v in body:
            b = math.floor(s / bar_s + 1e-9)
            off, length = s - b * bar_s, e - s
            if time_feel == "half-time":  # the first half of each bar, played across the whole bar
                if off >= bar_s / 2 - 1e-6:
                    continue
                ns = b * bar_s + 2 * off
                out.append((ns, min(limit, ns + 2 * length), p, v))
            else:  # each bar's pattern twice, at twice the speed
                for k in (0, 1):
                    ns = b * bar_s + off / 2 + k * bar_s / 2
                    out.append((ns, min(limit, ns + length / 2), p, v))
        body = [n for n in out if n[0] < limit - 1e-6]
    if art in ("legato", "staccato") and role not in ("drums", "percussion"):
        starts = sorted({round(n[0], 4) for n in body})
        edited: list[Note] = []
        for s, e, p, v in body:
            if art == "staccato":
                edited.append((s, s + max(0.03, 0.4 * (e - s)), p, v))
                continue
            nxt = next((t for t in starts if t > s + 0.01), None)
            end = e if nxt is None else max(e, min(nxt - 0.003, s + 4 * plan.beat_s))  # joined, never overlapping
            edited.append((s, min(limit, end), p, v))
        body = edited
    if human > 0:
        body = _humanize(body, rng, 0.03 * human, int(round(12 * human)), limit)
    notes = body + tail
    if register is not None and role not in ("drums", "percussion") and notes:
        mean = sum(n[2] for n in notes) / len(notes) - 12 * int(opts.get("octave", 0))
        shift = 12 * round((int(register) - mean) / 12)
        notes = [(s, e, p + shift, v) for s, e, p, v in notes]
    return notes


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


def _stem_layout(params: ResolvedParams, style: PieceStyle) -> list[tuple[str, str, int, bool]]:
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
    harmony = [{"bar": b, "start_s": round(b * bar, _ROUND), "label": c.label, "pcs": list(c.pcs),
                "degree": c.degree, "function": c.function} for b, c in enumerate(plan.chords)]
    key_changes = []
    if plan.modulation:
        at, _ = plan.modulation
        key_changes.append({"at_s": round(at * bar, _ROUND), "bar": at,
                            "key": key_display_name(plan.tonic_at(at), plan.mode)})
    return Arrangement(bpm=params.bpm, key=Key(params.key_tonic, params.key_mode, params.key),
                       time_signature=METERS[plan.meter], duration_s=params.duration_s, sections=sections,
                       tracks=tracks, seed=params.seed, genre=params.genre, mood=params.mood,
                       feel=params.feel, harmony=harmony, key_changes=key_changes)


def plan_for_arrangement(arr: Arrangement, params: ResolvedParams) -> Plan:
    """The plan a stored arrangement was written on, for editing one of its stems.

    The meter comes from the arrangement; the harmony and sections too (stored per bar since format 2;
    for format-1 arrangements the chords are read back from the chord and bass tracks), so a new or
    regenerated stem plays over the chords the other stems already play, even if the composer's
    progressions have changed since the piece was made.
    """
    meter = arr.meter if arr.meter in METERS else "4/4"
    p = replace(params, meter=meter, feel=arr.feel if arr.version >= 2 else "straight")
    plan = make_plan(p)
    if arr.harmony:
        chords = tuple(Chord(int(h["degree"]), tuple(int(x) for x in h["pcs"]), str(h["label"]),
                             str(h["function"])) for h in arr.harmony)
    else:
        chords = _chords_from_tracks(arr, plan)
    bar = plan.bar_s
    sections = []
    for i, s in enumerate(arr.sections):
        first = int(round(s.start_s / bar))
        end = plan.body_bars if i == len(arr.sections) - 1 else int(round(s.end_s / bar))
        if end > first:
            sections.append((s.name, first, end - first, s.energy))
    modulation = None
    if arr.key_changes:
        kc = arr.key_changes[0]
        at = int(kc.get("bar", round(float(kc["at_s"]) / bar)))
        tonic = next((c.pcs[0] for c in chords[at:at + 1]), plan.tonic)
        new_tonic = (tonic - SCALE_STEPS[plan.mode][chords[at].degree]) % 12 if at < len(chords) else plan.tonic
        modulation = (at, (new_tonic - plan.tonic) % 12)
    chords = tuple(chords[:plan.body_bars])
    if len(chords) < plan.body_bars:  # never expected; keep every bar covered
        chords = chords + plan.chords[len(chords):]
    return replace(plan, chords=chords, sections=tuple(sections) or plan.sections, modulation=modulation)


def _chords_from_tracks(arr: Arrangement, plan: Plan) -> tuple[Chord, ...]:
    """Per bar: the pitch classes the chord track sounds, rooted on the bass (format-1 arrangements)."""
    chords_t = next((t for t in arr.tracks if t.role == "chords"), None)
    bass_t = next((t for t in arr.tracks if t.role == "bass"), None)
    if chords_t is None:
        return plan.chords
    bar = plan.bar_s
    out: list[Chord] = []
    for b in range(plan.body_bars):
        t0, t1 = b * bar - 0.03, (b + 1) * bar - 0.03
        pcs = sorted({n[2] % 12 for n in chords_t.notes if t0 <= n[0] < t1})
        if not pcs:
            out.append(out[-1] if out else plan.chords[b])
            continue
        root = None
        if bass_t is not None:
            first = [n for n in bass_t.notes if t0 <= n[0] < t1]
            if first and first[0][2] % 12 in pcs:
                root = first[0][2] % 12
        if root is None:
            low = min((n for n in chords_t.notes if t0 <= n[0] < t1), key=lambda n: n[2])
            root = low[2] % 12
        ordered = tuple(sorted(pcs, key=lambda pc: ((pc - root) % 12)))
        degree = next((d for d, st in enumerate(SCALE_STEPS[plan.mode]) if (plan.tonic + st) % 12 == root), 0)
        out.append(Chord(degree, ordered, "?", "T"))
    return tuple(out)


# -- editing one stem -----------------------------------------------------------------------------------------
# Typed changes and the free-text phrase table live in ``stem_changes.py``; here they become part options.


def explain_instruction(instruction: str | None, role: str = "bass", meter: str = "4/4",
                        ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, str]]]:
    """(option changes, understood parts, ignored parts) for an instruction such as
    'busier drums, an octave lower and more cowbell'.

    The text is split at commas, 'and', 'but', 'then'; each part either maps to changes the composer
    knows (``stem_changes.parse_text``) or is reported as ignored with the reason (unknown words, or a
    change an earlier part already set, as in 'louder ... softer').
    """
    found, ignored = _parse_change_text(instruction, role, meter)
    understood: dict[str, dict[str, Any]] = {}
    changes: dict[str, Any] = {}
    for h in found:
        fld = "velocity" if h["field"] == "dynamic" else h["field"]
        opt = _change_options({}, {fld: h["value"]}, role)
        entry = understood.setdefault(h["clause"], {"text": h["clause"], "changes": {}})
        entry["changes"].update(opt)
        changes.update(opt)
    return changes, list(understood.values()), ignored


def parse_instruction(instruction: str | None) -> dict[str, Any]:
    """Instruction text → option changes; parts it does not know leave the options alone."""
    return explain_instruction(instruction)[0]


def edit_stem(arr: Arrangement, params: ResolvedParams, stem: str, instruction: str | None, seed: int,
              changes: StemChanges | dict[str, Any] | None = None,
              ) -> tuple[Arrangement, list[dict[str, Any]], list[dict[str, Any]]]:
    """Re-compose one stem with a new seed and the requested changes: (arrangement, applied, ignored).

    Explicit ``changes`` override the instruction's text on the same field (reported in ``ignored``);
    every other track is reused as is. Raises ``ControlError`` (field ``changes.pattern``) for a
    pattern the stem's role does not know, before anything is composed.
    """
    old = arr.track(stem)
    req, applied, ignored = _resolve_changes(changes, instruction, old.role, arr.meter)
    plan = plan_for_arrangement(arr, params)
    opts = _change_options(old.options, req, old.role)
    new = _make_track(plan, old.name, old.role, old.program, old.is_drum, int(seed), opts)
    if new.notes == old.notes:  # a seed that happens to reproduce the old part would be a no-op edit
        opts["variant"] = int(opts.get("variant", 0)) + 1
        new = _make_track(plan, old.name, old.role, old.program, old.is_drum, int(seed), opts)
    return (replace(arr, tracks=[new if t.name == stem else t for t in arr.tracks], sections=list(arr.sections)),
            applied, ignored)


_ROLE_WORDS = {"pad": "pad", "arpeggio": "arpeggio", "arp": "arpeggio", "lead": "lead", "melody": "lead",
               "bass": "bass", "percussion": "percussion", "texture": "texture", "counter": "counter",
               "countermelody": "counter", "chords": "chords", "comping": "chords", "drums": "drums"}


def add_stem(arr: Arrangement, params: ResolvedParams, instrument: str, role: str | None, seed: int,
             changes: StemChanges | dict[str, Any] | None = None, instruction: str | None = None,
             ) -> tuple[Arrangement, list[dict[str, Any]], list[dict[str, Any]]]:
    """Add one new part (e.g. 'strings' as a pad, 'arpeggio synth', 'percussion') under a unique stem name,
    with the requested changes applied to it: (arrangement, applied, ignored)."""
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
    plan = plan_for_arrangement(arr, params)
    name = _unique_name(inst.replace(" ", "_") if not is_drum else r, {t.name for t in arr.tracks})
    req, applied, ignored = _resolve_changes(changes, instruction, r, arr.meter)
    track = _make_track(plan, name, r, program, is_drum, int(seed), _change_options({}, req, r))
    return replace(arr, tracks=[*arr.tracks, track], sections=list(arr.sections)), applied, ignored
