"""Every style the composer knows, as data: one ``Style`` record per style holds all of it.

A style decides tempo range, meters, feel, harmonic language, grooves per meter, bass and chord
rhythms, instrumentation, registers, loudness, form and default mood. Keeping all of it in one
record (instead of seven tables keyed by genre) is what lets a style be added or tuned in one place,
and what the prompt interpreter reads (``aliases`` to recognise a style, ``traits`` to find the
nearest style for a genre it does not know).

Time grid: every pattern is written in 16th-note steps of one bar; a bar of 4/4 has 16 steps, 3/4
and 6/8 have 12, 12/8 has 24. ``bpm`` is always quarter notes per minute, as in every DAW and in MIDI
(in 6/8 and 12/8 the felt dotted-quarter beat is 2/3 of it).
"""

from __future__ import annotations

from typing import Any, NamedTuple

METERS: dict[str, tuple[int, int]] = {"4/4": (4, 4), "3/4": (3, 4), "6/8": (6, 8), "12/8": (12, 8)}
FEELS = ("straight", "swing", "shuffle")


def steps_per_bar(meter: str) -> int:
    """16th-note steps in one bar of ``meter``."""
    num, den = METERS[meter]
    return num * 16 // den


def beat_steps(meter: str) -> int:
    """16th steps per felt beat: a quarter (4) in simple meters, a dotted quarter (6) in compound ones."""
    return 6 if meter in ("6/8", "12/8") else 4


# -- building blocks ---------------------------------------------------------------------------------
# General MIDI percussion keys
KICK, RIM, SNARE, CLAP, HAT_CLOSED, HAT_PEDAL, HAT_OPEN, CRASH, RIDE = 36, 37, 38, 39, 42, 44, 46, 49, 51
TOM_LOW, TOM_MID, TOM_HIGH, TOM_FLOOR, TAMBOURINE, SHAKER, CONGA_HI, CONGA_LO = 45, 47, 50, 41, 54, 70, 63, 64
COWBELL, CLAVES, SIDE_STICK, RIDE_BELL, TIMBALE_HI, AGOGO = 56, 75, 37, 53, 65, 67


class Groove(NamedTuple):
    """A drum groove for one meter.

    layers: (GM key, pattern, minimum section energy); a pattern has one character per 16th step
    ('X' accent, 'x' hit, 'o' soft, 'g' ghost, '.' rest) and is exactly one bar long.
    kicks: alternative kick lines (seeded variety and "different rhythm"), all keeping beat 1.
    toms: whether section-end fills use toms (else snare).
    """

    layers: tuple[tuple[int, str, float], ...]
    kicks: tuple[str, ...] = ()
    toms: bool = True


class Harmony(NamedTuple):
    """A style's harmonic language: what the per-seed progression generator may use.

    kind: "functional" (tonic/predominant/dominant grammar), "loop" (a short modal loop repeated,
    as in trap, EDM, reggaeton), "blues" (12-bar form), "jazz" (ii-V-I chains), "modal" (slow drift
    around the tonic, ambient), "vamp" (one or two chords, funk/reggae).
    sevenths: chords carry 7ths. secondary: chance of a secondary dominant before a chord.
    borrowed: chance of a chord borrowed from the parallel mode. cadences: weights of the cadence
    that ends a phrase ("authentic" V-I, "half" ends on V, "plagal" IV-I, "deceptive" V-vi).
    key_change: semitones the last chorus moves up (0 = never). bars_per_chord: harmonic rhythm.
    harmonic_minor: the minor-key V is always major (else only at cadences).
    """

    kind: str = "functional"
    sevenths: bool = False
    secondary: float = 0.0
    borrowed: float = 0.0
    cadences: tuple[tuple[str, float], ...] = (("authentic", 0.6), ("half", 0.25), ("plagal", 0.15))
    key_change: int = 0
    bars_per_chord: int = 1
    harmonic_minor: bool = False


BassPattern = tuple[tuple[float, float, str], ...]  # (step, length in 16ths, tone: R 3 5 7 8 A)
ChordPattern = tuple[tuple[float, float], ...]  # (step, length in 16ths)


class Style(NamedTuple):
    """All a style decides; see the module docstring. Patterns are keyed by meter."""

    name: str
    aliases: tuple[str, ...]
    tempo: tuple[float, float]
    meters: tuple[str, ...]  # allowed meters, the default first
    feel: str  # default feel: "straight" | "swing" | "shuffle"
    swing: float  # 0..1 amount of swing in the default feel (16th swing when straight, 8th otherwise)
    mode: str  # default mode: "major" | "minor"
    harmony: Harmony
    grooves: dict[str, Groove]  # meter -> groove
    bass: dict[str, BassPattern]  # meter -> bass line over one chord
    chord_rhythm: dict[str, ChordPattern]  # meter -> comping rhythm
    programs: dict[str, int]  # role -> GM program (bass, chords, lead, texture)
    texture: str  # "pad", "arpeggio" or "none"
    lead_register: int
    velocity: int
    structure: tuple[str, ...]
    default_mood: str
    humanize_ms: float
    electronic: bool  # synth voices stay even for soft moods
    traits: dict[str, Any]  # for the nearest-style search: see TRAIT_KEYS


TRAIT_KEYS = ("tempo", "energy", "electronic", "acoustic", "swing", "tags")


def _traits(tempo: float, energy: float, electronic: float, acoustic: float, swing: float,
            *tags: str) -> dict[str, Any]:
    return {"tempo": tempo, "energy": energy, "electronic": electronic, "acoustic": acoustic,
            "swing": swing, "tags": tuple(tags)}


def _g(*layers: tuple[int, str, float], kicks: tuple[str, ...] = (), toms: bool = True) -> Groove:
    return Groove(tuple(layers), kicks, toms)


def _bass(*notes: tuple[float, float, str]) -> BassPattern:
    return tuple(notes)


# -- grooves ---------------------------------------------------------------------------------------------
# 4/4 (16 steps)
G_FOUR_FLOOR = _g((KICK, "x...x...x...x...", 0), (CLAP, "....x.......x...", 0.5), (HAT_OPEN, "..o...o...o...o.", 0.45),
                  (SHAKER, "gggggggggggggggg", 0.75),
                  kicks=("x...x...x...x...", "x...x...x...x.x.", "x...x...x..xx..."), toms=False)
G_TECHNO = _g((KICK, "X...X...X...X...", 0), (CLAP, "....o.......o...", 0.6), (HAT_CLOSED, "gg.ggg.ggg.ggg.g", 0.5),
              (HAT_OPEN, "..o...o...o...o.", 0.4), (RIM, "......o.....o..o", 0.8),
              kicks=("X...X...X...X...", "X...X...X...X..x", "X..xX...X...X..."), toms=False)
G_BOOMBAP = _g((KICK, "x......x..x.....", 0), (SNARE, "....x.......x...", 0.4), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3),
               (HAT_OPEN, "..............g.", 0.8),
               kicks=("x......x..x.....", "x.........x..x..", "x..x......x....."), toms=False)
G_ROCK = _g((KICK, "x.......x.x.....", 0), (SNARE, "....X.......X...", 0.45), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3),
            kicks=("x.......x.x.....", "x.....x.x.......", "x.......x...x..."))
G_POP = _g((KICK, "x.....x...x.....", 0), (SNARE, "....x.......x...", 0.45), (CLAP, "....o.......o...", 0.8),
           (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3), (SHAKER, ".g.g.g.g.g.g.g.g", 0.75),
           kicks=("x.....x...x.....", "x.......x.......", "x..x....x.x....."))
G_SWING = _g((RIDE, "x...x.o.x...x.o.", 0), (HAT_PEDAL, "....x.......x...", 0), (KICK, "o...g...o...g...", 0),
             (SNARE, "..........g.....", 0.6), toms=False)
G_AMBIENT = _g((KICK, "x.......x.......", 0), (RIM, "....o.......o...", 0.3), (SHAKER, "g.g.g.g.g.g.g.g.", 0.5),
               toms=False)
G_CINEMATIC = _g((KICK, "x.......x.x.....", 0), (TOM_FLOOR, "....x.......x...", 0.3), (SNARE, "....o.......o...", 0.7),
                 (HAT_CLOSED, "g.g.g.g.g.g.g.g.", 0.85),
                 kicks=("x.......x.x.....", "x..x....x.......", "x.......x..x...."))
G_FUNK = _g((KICK, "x.....x...x..x..", 0), (SNARE, "....x..g.g..x..g", 0.4), (HAT_CLOSED, "xgxgxgxgxgxgxg.g", 0.3),
            (HAT_OPEN, "..............o.", 0.7),
            kicks=("x.....x...x..x..", "x..x......x.....", "x.x.......x..x.."))
G_DNB = _g((KICK, "x.........x.....", 0), (SNARE, "....X.......X...", 0.35), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.4),
           (RIDE, "x...x...x...x...", 0.5), (SNARE, ".......g.g....g.", 0.85), (SHAKER, "gggggggggggggggg", 0.7),
           kicks=("x.........x.....", "x.x.......x.....", "x.........x..x.."), toms=False)
G_ONE_DROP = _g((KICK, "........x.......", 0), (RIM, "........x.......", 0), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3),
                (HAT_OPEN, "......g.......g.", 0.8))
G_SYNTHWAVE = _g((KICK, "x.......x.......", 0), (SNARE, "....X.......X...", 0.4), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.35),
                 (CLAP, "....o.......o...", 0.85),
                 kicks=("x.......x.......", "x.......x.x.....", "x.....x.x......."))
G_METAL = _g((KICK, "x.x.....x.x.....", 0), (SNARE, "....X.......X...", 0.4), (HAT_CLOSED, "x.x.x.x.x.x.x.x.", 0.3),
             (RIDE, "x.x.x.x.x.x.x.x.", 0.8), (KICK, "xxxxxxxxxxxxxxxx", 0.9),
             kicks=("x.x.....x.x.....", "xx..x...xx..x...", "x.x.x.x.x.x.x.x."))
G_TRAP = _g((KICK, "x......x..x.....", 0), (CLAP, "........x.......", 0.35), (HAT_CLOSED, "x.x.x.x.x.xxx.x.", 0.3),
            (HAT_CLOSED, ".x.x.x.x.x...x.x", 0.75), (HAT_OPEN, "..............o.", 0.7),
            kicks=("x......x..x.....", "x.....x....x..x.", "x..x......x....."), toms=False)
G_DRILL = _g((KICK, "x.....x.....x...", 0), (SNARE, "........X.......", 0.3), (SNARE, "...g..........g.", 0.7),
             (HAT_CLOSED, "x..x..x.x..x..x.", 0.3), (RIM, "......o.......o.", 0.6),
             kicks=("x.....x.....x...", "x......x..x.....", "x.....x...x..x.."), toms=False)
G_COUNTRY = _g((KICK, "x.......x.......", 0), (SIDE_STICK, "....x.......x...", 0.3), (SNARE, "....x.......x...", 0.65),
               (HAT_CLOSED, "x.x.x.x.x.x.x.x.", 0.3),
               kicks=("x.......x.......", "x.....x.x.......", "x.......x...x..."))
G_DEMBOW = _g((KICK, "x...x...x...x...", 0), (SNARE, "...x..x....x..x.", 0.3), (HAT_CLOSED, "x.x.x.x.x.x.x.x.", 0.5),
              (TIMBALE_HI, "..............o.", 0.8), toms=False)
G_DUBSTEP = _g((KICK, "x.........x.....", 0), (SNARE, "........X.......", 0.3), (HAT_CLOSED, "x.x.x.x.x.x.x.x.", 0.4),
               (HAT_OPEN, "......o.......o.", 0.8),
               kicks=("x.........x.....", "x.....x...x.....", "x..x......x..x.."), toms=False)
G_AFRO = _g((KICK, "x.....x.x.......", 0), (RIM, "...x..x....x..x.", 0.3), (SHAKER, "gogogogogogogogo", 0.3),
            (CONGA_HI, "..o...o...o.o...", 0.6), (HAT_OPEN, "..o.......o.....", 0.75),
            kicks=("x.....x.x.......", "x..x..x.........", "x.....x...x....."), toms=False)
G_BOSSA = _g((KICK, "x..xx..xx..xx..x", 0), (SIDE_STICK, "x..x..x...x..x..", 0), (HAT_CLOSED, "o.o.o.o.o.o.o.o.", 0.4),
             toms=False)
G_GOSPEL = _g((KICK, "x.....x.x.......", 0), (SNARE, "....X.......X...", 0.4), (HAT_CLOSED, "x.x.x.x.x.x.x.x.", 0.3),
              (TAMBOURINE, "....x.......x...", 0.6),
              kicks=("x.....x.x.......", "x.......x..x....", "x..x..x........."))
G_SHUFFLE_44 = _g((KICK, "x.......x.......", 0), (SNARE, "....x.......x...", 0.35), (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3),
                  kicks=("x.......x.......", "x.....x.x.......", "x.......x.....x."))
G_KPOP = _g((KICK, "x...x...x...x...", 0), (CLAP, "....x.......x...", 0.4), (SNARE, "....x.......x...", 0.7),
            (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3), (HAT_OPEN, "..o...o...o...o.", 0.85),
            kicks=("x...x...x...x...", "x.....x...x.....", "x...x...x...x.x."))
G_ORCH = _g((KICK, "x.......x.......", 0.5), (SNARE, "............o...", 0.8), toms=True)
G_DISCO = _g((KICK, "x...x...x...x...", 0), (SNARE, "....x.......x...", 0.35), (HAT_CLOSED, "x...x...x...x...", 0.3),
             (HAT_OPEN, "..x...x...x...x.", 0.45), kicks=("x...x...x...x...", "x...x...x...x.x."))
G_RNB = _g((KICK, "x......x..x.....", 0), (SNARE, "....x.......x...", 0.35), (CLAP, "....o.......o...", 0.6),
           (HAT_CLOSED, "x.x.x.x.x.x.x.x.", 0.3), kicks=("x......x..x.....", "x..x.....x......", "x.......x.x....."))
G_FOLK = _g((KICK, "x.......x.......", 0), (SIDE_STICK, "....o.......o...", 0.3), (SHAKER, "g.g.g.g.g.g.g.g.", 0.4),
            toms=False)
# 3/4 (12 steps: beats at 0, 4, 8)
G_WALTZ = _g((KICK, "x...........", 0), (SNARE, "....o...o...", 0.35), (HAT_CLOSED, "x...x...x...", 0.3), toms=False)
G_JAZZ_WALTZ = _g((RIDE, "x...x.o.x.o.", 0), (HAT_PEDAL, "....x...x...", 0), (KICK, "o...........", 0), toms=False)
G_FOLK_34 = _g((KICK, "x...........", 0), (SIDE_STICK, "....o...o...", 0.3), (SHAKER, "g.g.g.g.g.g.", 0.4), toms=False)
G_ORCH_34 = _g((KICK, "x...........", 0.5), (SNARE, "........o...", 0.8))
G_AMBIENT_34 = _g((KICK, "x...........", 0), (RIM, "........o...", 0.3), (SHAKER, "g.g.g.g.g.g.", 0.5), toms=False)
# 6/8 (12 steps: felt beats at 0 and 6, eighths every 2 steps)
G_68 = _g((KICK, "x.....x.....", 0), (SNARE, "......x.....", 0.4), (HAT_CLOSED, "x.o.o.x.o.o.", 0.3),
          kicks=("x.....x.....", "x...x.x.....", "x.........x."))
G_FOLK_68 = _g((KICK, "x.....x.....", 0), (SIDE_STICK, "......o.....", 0.3), (SHAKER, "g.g.g.g.g.g.", 0.4), toms=False)
G_ORCH_68 = _g((KICK, "x.....x.....", 0.5), (SNARE, "......o.....", 0.8))
# 12/8 (24 steps: felt beats at 0, 6, 12, 18)
G_128 = _g((KICK, "x...........x.....x.....", 0), (SNARE, "......X...........X.....", 0.35),
           (HAT_CLOSED, "x.o.o.x.o.o.x.o.o.x.o.o.", 0.3),
           kicks=("x...........x.....x.....", "x.........x.x...........", "x.....x.....x.....x....."))
G_SHUFFLE_128 = _g((KICK, "x...........x...........", 0), (SNARE, "......x...........x.....", 0.35),
                   (RIDE, "x...o.x...o.x...o.x...o.", 0.3),
                   kicks=("x...........x...........", "x.........x.x...........", "x...........x.......x..."))
G_METAL_128 = _g((KICK, "x...x.x...x.x...x.x...x.", 0), (SNARE, "......X...........X.....", 0.35),
                 (HAT_CLOSED, "x.x.x.x.x.x.x.x.x.x.x.x.", 0.3))

# -- bass lines (one bar over one chord) ---------------------------------------------------------------
B_EIGHTHS = tuple((float(s), 2.0, "R") for s in range(0, 16, 2))
B_OFFBEAT = _bass((2, 2, "R"), (6, 2, "R"), (10, 2, "R"), (14, 2, "8"))
B_ROLLING = tuple((float(s), 1.0, "R") for s in range(16) if s % 4)
B_POP = _bass((0, 6, "R"), (6, 2, "R"), (8, 4, "5"), (12, 4, "R"))
B_WALKING = _bass((0, 4, "R"), (4, 4, "3"), (8, 4, "5"), (12, 4, "A"))
B_DRONE = _bass((0, 16, "R"))
B_FUNK = _bass((0, 3, "R"), (3, 1, "8"), (6, 2, "R"), (8, 1, "5"), (10, 2, "7"), (11, 1, "8"), (14, 2, "5"))
B_DNB = _bass((0, 10, "R"), (10, 6, "R"))
B_REGGAE = _bass((0, 3, "R"), (3, 1, "3"), (4, 4, "5"), (10, 2, "R"), (12, 4, "3"))
B_OCTAVES = tuple((float(s), 2.0, "R" if (s // 2) % 2 == 0 else "8") for s in range(0, 16, 2))
B_LOFI = _bass((0, 6, "R"), (7, 3, "R"), (10, 4, "5"), (14, 2, "8"))
B_808 = _bass((0, 7, "R"), (7, 3, "R"), (10, 6, "5"))
B_DRILL = _bass((0, 6, "R"), (6, 4, "R"), (12, 4, "b3"))
B_COUNTRY = _bass((0, 4, "R"), (4, 4, "5"), (8, 4, "R"), (12, 4, "5"))
B_DEMBOW = _bass((0, 3, "R"), (3, 3, "R"), (6, 2, "5"), (8, 3, "R"), (11, 3, "R"), (14, 2, "5"))
B_WOBBLE = _bass((0, 3, "R"), (3, 3, "R"), (6, 4, "R"), (10, 2, "8"), (12, 4, "R"))
B_AFRO = _bass((0, 3, "R"), (3, 3, "R"), (6, 4, "5"), (10, 2, "R"), (12, 4, "8"))
B_BOSSA = _bass((0, 6, "R"), (6, 2, "5"), (8, 6, "5"), (14, 2, "R"))
B_GOSPEL = _bass((0, 6, "R"), (6, 2, "8"), (8, 4, "5"), (12, 2, "3"), (14, 2, "A"))
B_BOOGIE_44 = _bass((0, 4, "R"), (4, 4, "3"), (8, 4, "5"), (12, 4, "6"))
B_DISCO = tuple((float(s), 2.0, "R" if (s // 2) % 2 == 0 else "8") for s in range(0, 16, 2))
B_RNB = _bass((0, 6, "R"), (6, 2, "5"), (8, 3, "R"), (11, 3, "7"), (14, 2, "A"))
B_FOLK = _bass((0, 8, "R"), (8, 8, "5"))
B_METAL = tuple((float(s), 1.0, "R") for s in range(16))
B_34 = _bass((0, 12, "R"))
B_34_OOMPAH = _bass((0, 4, "R"), (4, 4, "5"), (8, 4, "5"))
B_34_WALK = _bass((0, 4, "R"), (4, 4, "5"), (8, 4, "A"))
B_68 = _bass((0, 5, "R"), (6, 5, "5"))
B_128 = _bass((0, 5, "R"), (6, 5, "5"), (12, 5, "R"), (18, 5, "5"))
B_128_BOOGIE = _bass((0, 4, "R"), (4, 2, "R"), (6, 4, "3"), (10, 2, "3"), (12, 4, "5"), (16, 2, "5"), (18, 4, "6"),
                     (22, 2, "5"))
B_128_METAL = tuple((float(s), 2.0, "R") for s in range(0, 24, 2))

# -- comping rhythms (step, length) ------------------------------------------------------------------
C_SUSTAIN = ((0, 16),)
C_HALVES = ((0, 8), (8, 8))
C_QUARTERS = ((0, 4), (4, 4), (8, 4), (12, 4))
C_STABS = ((0, 2), (3, 2), (6, 3), (10, 2), (13, 3))
C_STABS_SPARSE = ((0, 1.5), (6, 2), (10, 1.5))
C_POWER = tuple((float(s), 2.0) for s in range(0, 16, 2))
C_CHARLESTON = ((0, 3), (6, 6))
C_FUNK = ((2, 1), (6, 1), (9, 1), (11, 1), (14, 2))
C_SKANK = ((4, 2), (12, 2))
C_BOSSA = ((0, 3), (3, 3), (6, 4), (10, 3), (13, 3))
C_AFRO = ((2, 2), (6, 2), (10, 2), (14, 2))
C_DEMBOW = ((0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2))
C_COUNTRY = ((0, 4), (4, 2), (6, 2), (8, 4), (12, 2), (14, 2))
C_GOSPEL = ((0, 6), (6, 2), (8, 6), (14, 2))
C_34 = ((0, 12),)
C_34_WALTZ = ((4, 4), (8, 4))
C_68 = ((0, 6), (6, 6))
C_68_ARP = ((0, 2), (2, 2), (4, 2), (6, 2), (8, 2), (10, 2))
C_128 = ((0, 6), (6, 6), (12, 6), (18, 6))
C_128_TRIPLETS = tuple((float(s), 2.0) for s in range(0, 24, 2))

# Generic patterns per meter: used when a style is asked for a meter it has no pattern of its own for.
GENERIC_GROOVES: dict[str, Groove] = {"4/4": G_ROCK, "3/4": G_WALTZ, "6/8": G_68, "12/8": G_128}
GENERIC_BASS: dict[str, BassPattern] = {"4/4": B_EIGHTHS, "3/4": B_34_OOMPAH, "6/8": B_68, "12/8": B_128}
GENERIC_CHORDS: dict[str, ChordPattern] = {"4/4": C_SUSTAIN, "3/4": C_34, "6/8": C_68, "12/8": C_128}
SUSTAIN: dict[str, ChordPattern] = {"4/4": C_SUSTAIN, "3/4": C_34, "6/8": ((0, 12),), "12/8": ((0, 24),)}

# -- harmonic languages ---------------------------------------------------------------------------------
H_POP = Harmony("functional", secondary=0.12, borrowed=0.1, key_change=2,
                cadences=(("authentic", 0.45), ("half", 0.3), ("plagal", 0.1), ("deceptive", 0.15)))
H_LOOP_MINOR = Harmony("loop", cadences=(("half", 0.6), ("authentic", 0.4)))
H_LOOP_MINOR7 = Harmony("loop", sevenths=True, cadences=(("half", 0.6), ("authentic", 0.4)))
H_JAZZ = Harmony("functional", sevenths=True, secondary=0.45, borrowed=0.15,
                 cadences=(("authentic", 0.7), ("half", 0.2), ("deceptive", 0.1)))

_POP = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro")
_EDM = ("intro", "build", "drop", "breakdown", "build", "drop", "outro")
_SONG = ("intro", "verse", "chorus", "verse", "chorus", "outro")

def _style(name: str, aliases: tuple[str, ...], tempo: tuple[float, float], meters: tuple[str, ...],
           traits: dict[str, Any], **kw: Any) -> Style:
    base: dict[str, Any] = dict(
        feel="straight", swing=0.0, mode="major", harmony=Harmony(), grooves={"4/4": G_ROCK},
        bass={"4/4": B_EIGHTHS}, chord_rhythm={"4/4": C_SUSTAIN},
        programs={"bass": 33, "chords": 0, "lead": 80, "texture": 48}, texture="pad", lead_register=74,
        velocity=94, structure=_SONG, default_mood="happy", humanize_ms=5.0, electronic=False)
    base.update(kw)
    return Style(name=name, aliases=aliases, tempo=tempo, meters=meters, traits=traits, **base)


_STYLE_LIST: list[Style] = [
    _style("lofi hip hop", ("lofi", "lo-fi", "lo fi", "hip hop", "hip-hop", "hiphop", "chillhop", "boom bap",
                            "boombap", "jazzhop"),
           (70, 92), ("4/4",), _traits(80, 0.3, 0.5, 0.5, 0.5, "hip hop", "chill", "urban"), mode="minor",
           swing=0.55, default_mood="calm",
           harmony=Harmony("functional", sevenths=True, secondary=0.15, borrowed=0.2,
                           cadences=(("authentic", 0.4), ("half", 0.3), ("plagal", 0.3))),
           grooves={"4/4": G_BOOMBAP}, bass={"4/4": B_LOFI}, chord_rhythm={"4/4": C_SUSTAIN},
           programs={"bass": 33, "chords": 4, "lead": 11, "texture": 89}, lead_register=72, velocity=78,
           texture="pad", structure=_SONG, humanize_ms=9.0),
    _style("house", ("deep house", "disco house", "funky house", "tech house", "edm", "dance", "club",
                     "dance music", "garage", "uk garage"),
           (118, 128), ("4/4",), _traits(123, 0.75, 0.95, 0.05, 0.1, "electronic", "dance", "club"), mode="minor",
           swing=0.1, harmony=H_LOOP_MINOR7, grooves={"4/4": G_FOUR_FLOOR}, bass={"4/4": B_OFFBEAT},
           chord_rhythm={"4/4": C_STABS}, programs={"bass": 38, "chords": 4, "lead": 81, "texture": 89},
           texture="arpeggio", velocity=96, structure=_EDM, humanize_ms=0.0, electronic=True),
    _style("techno", ("minimal", "minimal techno", "industrial", "rave", "acid", "hard techno"),
           (125, 138), ("4/4",), _traits(130, 0.8, 1.0, 0.0, 0.0, "electronic", "dance", "club", "dark"),
           mode="minor", default_mood="dark", harmony=Harmony("loop", bars_per_chord=2, cadences=(("half", 1.0),)),
           grooves={"4/4": G_TECHNO}, bass={"4/4": B_ROLLING}, chord_rhythm={"4/4": C_STABS_SPARSE},
           programs={"bass": 39, "chords": 90, "lead": 84, "texture": 81}, texture="arpeggio", lead_register=72,
           velocity=100, structure=_EDM, humanize_ms=0.0, electronic=True),
    _style("rock", ("rock and roll", "rock n roll", "rock'n'roll", "indie rock", "punk", "punk rock", "grunge",
                    "alt rock", "alternative rock", "hard rock", "classic rock", "garage rock", "pop punk"),
           (100, 150), ("4/4", "6/8", "12/8"), _traits(124, 0.8, 0.1, 0.7, 0.0, "band", "guitar"),
           default_mood="energetic",
           harmony=Harmony("functional", secondary=0.08, borrowed=0.3,
                           cadences=(("authentic", 0.4), ("plagal", 0.35), ("half", 0.25))),
           grooves={"4/4": G_ROCK, "6/8": G_68, "12/8": G_128}, bass={"4/4": B_EIGHTHS, "6/8": B_68, "12/8": B_128},
           chord_rhythm={"4/4": C_POWER, "6/8": C_68_ARP, "12/8": C_128_TRIPLETS},
           programs={"bass": 34, "chords": 29, "lead": 30, "texture": 48}, lead_register=72, velocity=104,
           texture="pad", structure=_POP, humanize_ms=6.0),
    _style("pop", ("synthpop", "synth pop", "synth-pop", "indie pop", "dance pop", "dance-pop", "pop song",
                   "electropop", "teen pop"),
           (96, 124), ("4/4", "6/8"), _traits(110, 0.65, 0.5, 0.4, 0.0, "pop", "vocal"), harmony=H_POP,
           grooves={"4/4": G_POP, "6/8": G_68}, bass={"4/4": B_POP, "6/8": B_68},
           chord_rhythm={"4/4": C_QUARTERS, "6/8": C_68}, programs={"bass": 33, "chords": 0, "lead": 80, "texture": 48},
           texture="arpeggio", velocity=94, structure=_POP, humanize_ms=4.0),
    _style("jazz", ("swing", "bebop", "jazzy", "big band", "cool jazz", "jazz trio", "smooth jazz", "hard bop"),
           (90, 160), ("4/4", "3/4"), _traits(125, 0.5, 0.0, 1.0, 0.9, "jazz", "acoustic", "improvised"),
           feel="swing", swing=0.66, default_mood="calm", harmony=H_JAZZ,
           grooves={"4/4": G_SWING, "3/4": G_JAZZ_WALTZ}, bass={"4/4": B_WALKING, "3/4": B_34_WALK},
           chord_rhythm={"4/4": C_CHARLESTON, "3/4": ((0, 3), (8, 4))},
           programs={"bass": 32, "chords": 0, "lead": 65, "texture": 11}, texture="none", lead_register=72,
           velocity=84, structure=("intro", "head", "solo", "head", "outro"), humanize_ms=10.0),
    _style("ambient", ("drone", "atmospheric", "new age", "meditation", "soundscape", "chillout", "downtempo",
                       "space music"),
           (64, 90), ("4/4", "3/4"), _traits(76, 0.15, 0.7, 0.3, 0.0, "ambient", "chill", "texture"),
           default_mood="calm",
           harmony=Harmony("functional", sevenths=True, borrowed=0.25, bars_per_chord=2,
                           cadences=(("plagal", 0.6), ("authentic", 0.4))),
           grooves={"4/4": G_AMBIENT, "3/4": G_AMBIENT_34}, bass={"4/4": B_DRONE, "3/4": B_34},
           chord_rhythm={"4/4": C_SUSTAIN, "3/4": C_34},
           programs={"bass": 89, "chords": 89, "lead": 98, "texture": 88}, texture="arpeggio", lead_register=76,
           velocity=70, structure=("intro", "verse", "chorus", "outro"), humanize_ms=4.0),
    _style("cinematic", ("film score", "soundtrack", "trailer", "score", "epic music", "film music", "movie",
                         "game music", "video game"),
           (70, 110), ("4/4", "3/4", "6/8"), _traits(90, 0.6, 0.2, 0.8, 0.0, "orchestral", "film", "epic"),
           mode="minor", default_mood="epic",
           harmony=Harmony("functional", borrowed=0.3, secondary=0.15, harmonic_minor=True,
                           cadences=(("authentic", 0.5), ("half", 0.3), ("deceptive", 0.2))),
           grooves={"4/4": G_CINEMATIC, "3/4": G_ORCH_34, "6/8": G_ORCH_68},
           bass={"4/4": B_EIGHTHS, "3/4": B_34, "6/8": B_68}, chord_rhythm=dict(SUSTAIN),
           programs={"bass": 43, "chords": 48, "lead": 60, "texture": 48}, texture="arpeggio", lead_register=70,
           velocity=92, structure=("intro", "verse", "build", "chorus", "outro"), humanize_ms=5.0),
    _style("funk", ("funky", "groove", "p-funk", "jazz funk", "go-go"),
           (96, 118), ("4/4",), _traits(107, 0.75, 0.2, 0.7, 0.2, "funk", "groove", "band", "soul"),
           mode="minor", swing=0.2, default_mood="energetic",
           harmony=Harmony("vamp", sevenths=True, harmonic_minor=True, cadences=(("half", 0.6), ("authentic", 0.4))),
           grooves={"4/4": G_FUNK}, bass={"4/4": B_FUNK}, chord_rhythm={"4/4": C_FUNK},
           programs={"bass": 36, "chords": 28, "lead": 61, "texture": 4}, texture="none", lead_register=72,
           velocity=98, structure=_SONG, humanize_ms=7.0),
    _style("drum and bass", ("drum & bass", "drum n bass", "drum'n'bass", "drum 'n' bass", "dnb", "d&b",
                             "jungle", "liquid", "liquid dnb", "neurofunk"),
           (165, 178), ("4/4",), _traits(172, 0.9, 0.95, 0.05, 0.0, "electronic", "dance", "breakbeat", "uk"),
           mode="minor", default_mood="energetic",
           harmony=Harmony("loop", sevenths=True, bars_per_chord=2, cadences=(("half", 0.6), ("authentic", 0.4))),
           grooves={"4/4": G_DNB}, bass={"4/4": B_DNB}, chord_rhythm={"4/4": C_SUSTAIN},
           programs={"bass": 38, "chords": 89, "lead": 81, "texture": 91}, texture="pad", velocity=102,
           structure=_EDM, humanize_ms=0.0, electronic=True),
    _style("reggae", ("dub", "ska", "roots", "roots reggae", "rocksteady", "dancehall"),
           (70, 95), ("4/4",), _traits(82, 0.5, 0.2, 0.7, 0.3, "caribbean", "jamaican", "offbeat"),
           swing=0.3, harmony=Harmony("vamp", cadences=(("half", 0.5), ("authentic", 0.5))),
           grooves={"4/4": G_ONE_DROP}, bass={"4/4": B_REGGAE}, chord_rhythm={"4/4": C_SKANK},
           programs={"bass": 33, "chords": 16, "lead": 26, "texture": 0}, texture="none", lead_register=72,
           velocity=90, structure=_SONG, humanize_ms=6.0),
    _style("synthwave", ("retrowave", "outrun", "80s", "eighties", "vaporwave", "darksynth", "chillwave"),
           (84, 118), ("4/4",), _traits(100, 0.65, 1.0, 0.0, 0.0, "electronic", "retro", "80s"), mode="minor",
           default_mood="energetic", harmony=H_LOOP_MINOR,
           grooves={"4/4": G_SYNTHWAVE}, bass={"4/4": B_OCTAVES}, chord_rhythm={"4/4": C_HALVES},
           programs={"bass": 38, "chords": 89, "lead": 81, "texture": 81}, texture="arpeggio", velocity=96,
           structure=_POP, humanize_ms=0.0, electronic=True),
    _style("metal", ("heavy metal", "thrash", "thrash metal", "death metal", "metalcore", "doom", "doom metal",
                     "black metal", "nu metal", "djent", "power metal", "hardcore"),
           (100, 190), ("4/4", "12/8"), _traits(150, 1.0, 0.1, 0.6, 0.0, "band", "guitar", "heavy", "dark"),
           mode="minor", default_mood="energetic",
           harmony=Harmony("loop", harmonic_minor=True, cadences=(("half", 0.5), ("authentic", 0.5))),
           grooves={"4/4": G_METAL, "12/8": G_METAL_128}, bass={"4/4": B_METAL, "12/8": B_128_METAL},
           chord_rhythm={"4/4": C_POWER, "12/8": C_128_TRIPLETS},
           programs={"bass": 34, "chords": 30, "lead": 30, "texture": 48}, texture="none", lead_register=74,
           velocity=108, structure=("intro", "verse", "chorus", "verse", "chorus", "solo", "chorus", "outro"),
           humanize_ms=3.0),
    _style("trap", ("trap beat", "hip hop trap", "rap", "phonk", "808s", "type beat", "mumble rap"),
           (130, 160), ("4/4",), _traits(140, 0.7, 0.9, 0.1, 0.0, "hip hop", "urban", "808"), mode="minor",
           default_mood="dark", harmony=H_LOOP_MINOR, grooves={"4/4": G_TRAP}, bass={"4/4": B_808},
           chord_rhythm={"4/4": C_SUSTAIN}, programs={"bass": 38, "chords": 0, "lead": 10, "texture": 89},
           texture="pad", lead_register=76, velocity=98,
           structure=("intro", "hook", "verse", "hook", "verse", "hook", "outro"), humanize_ms=0.0, electronic=True),
    _style("drill", ("uk drill", "ny drill", "brooklyn drill", "chicago drill"),
           (138, 146), ("4/4",), _traits(142, 0.75, 0.9, 0.1, 0.1, "hip hop", "urban", "808", "dark", "uk"),
           mode="minor", default_mood="dark",
           harmony=Harmony("loop", harmonic_minor=True, cadences=(("half", 0.7), ("authentic", 0.3))),
           grooves={"4/4": G_DRILL}, bass={"4/4": B_DRILL}, chord_rhythm={"4/4": C_HALVES},
           programs={"bass": 38, "chords": 48, "lead": 8, "texture": 0}, texture="none", lead_register=76,
           velocity=98, structure=("intro", "hook", "verse", "hook", "verse", "hook", "outro"), humanize_ms=0.0,
           electronic=True),
    _style("country", ("country music", "americana", "bluegrass", "honky tonk", "country rock", "nashville",
                       "western", "cowboy"),
           (80, 130), ("4/4", "3/4"), _traits(105, 0.55, 0.0, 0.95, 0.2, "acoustic", "guitar", "american"),
           harmony=Harmony("functional", secondary=0.2, key_change=1,
                           cadences=(("authentic", 0.55), ("plagal", 0.25), ("half", 0.2))),
           grooves={"4/4": G_COUNTRY, "3/4": G_WALTZ}, bass={"4/4": B_COUNTRY, "3/4": B_34_OOMPAH},
           chord_rhythm={"4/4": C_COUNTRY, "3/4": C_34_WALTZ},
           programs={"bass": 32, "chords": 25, "lead": 110, "texture": 21}, texture="none", lead_register=74,
           velocity=92, structure=_POP, humanize_ms=6.0),
    _style("reggaeton", ("latin", "latin pop", "dembow", "urbano", "perreo", "moombahton"),
           (88, 100), ("4/4",), _traits(94, 0.75, 0.8, 0.2, 0.0, "latin", "dance", "caribbean", "urban"),
           mode="minor", default_mood="energetic", harmony=H_LOOP_MINOR, grooves={"4/4": G_DEMBOW},
           bass={"4/4": B_DEMBOW}, chord_rhythm={"4/4": C_DEMBOW},
           programs={"bass": 38, "chords": 27, "lead": 80, "texture": 89}, texture="pad", velocity=98,
           structure=("intro", "verse", "prechorus", "chorus", "verse", "chorus", "outro"), humanize_ms=2.0,
           electronic=True),
    _style("dubstep", ("brostep", "riddim", "wobble", "bass music", "future bass"),
           (138, 150), ("4/4",), _traits(140, 0.9, 1.0, 0.0, 0.0, "electronic", "bass", "uk", "heavy"),
           mode="minor", default_mood="dark",
           harmony=Harmony("loop", bars_per_chord=2, cadences=(("half", 0.7), ("authentic", 0.3))),
           grooves={"4/4": G_DUBSTEP}, bass={"4/4": B_WOBBLE}, chord_rhythm={"4/4": C_SUSTAIN},
           programs={"bass": 39, "chords": 90, "lead": 87, "texture": 81}, texture="arpeggio", velocity=104,
           structure=_EDM, humanize_ms=0.0, electronic=True),
    _style("afrobeats", ("afrobeat", "afro beats", "afropop", "afro pop", "amapiano", "afro house", "highlife",
                         "naija"),
           (98, 116), ("4/4",), _traits(106, 0.7, 0.5, 0.5, 0.2, "african", "dance", "percussion"),
           swing=0.25, harmony=Harmony("loop", sevenths=True, cadences=(("half", 0.5), ("authentic", 0.5))),
           grooves={"4/4": G_AFRO}, bass={"4/4": B_AFRO}, chord_rhythm={"4/4": C_AFRO},
           programs={"bass": 33, "chords": 27, "lead": 12, "texture": 4}, texture="pad", lead_register=76,
           velocity=94, structure=("intro", "verse", "chorus", "verse", "chorus", "outro"), humanize_ms=5.0),
    _style("bossa nova", ("bossa", "samba", "brazilian", "mpb", "tropicalia"),
           (110, 140), ("4/4",), _traits(126, 0.35, 0.0, 1.0, 0.1, "latin", "brazilian", "acoustic", "jazz"),
           default_mood="romantic", harmony=Harmony("functional", sevenths=True, secondary=0.4, borrowed=0.2,
                                                    cadences=(("authentic", 0.6), ("half", 0.25),
                                                              ("deceptive", 0.15))),
           grooves={"4/4": G_BOSSA}, bass={"4/4": B_BOSSA}, chord_rhythm={"4/4": C_BOSSA},
           programs={"bass": 32, "chords": 24, "lead": 73, "texture": 48}, texture="none", lead_register=74,
           velocity=80, structure=("intro", "verse", "chorus", "verse", "chorus", "outro"), humanize_ms=7.0),
    _style("waltz", ("valse", "vals", "viennese waltz", "ballroom", "minuet"),
           (84, 180), ("3/4",), _traits(140, 0.4, 0.0, 0.9, 0.0, "classical", "dance", "acoustic", "triple"),
           default_mood="romantic",
           harmony=Harmony("functional", secondary=0.25, borrowed=0.1,
                           cadences=(("authentic", 0.6), ("half", 0.3), ("plagal", 0.1))),
           grooves={"3/4": G_WALTZ}, bass={"3/4": B_34}, chord_rhythm={"3/4": C_34_WALTZ},
           programs={"bass": 32, "chords": 0, "lead": 40, "texture": 48}, texture="pad", lead_register=76,
           velocity=86, structure=("intro", "verse", "chorus", "verse", "chorus", "outro"), humanize_ms=8.0),
    _style("gospel", ("church", "praise", "worship", "spiritual", "choir music", "hymn"),
           (66, 120), ("4/4", "12/8", "6/8"), _traits(90, 0.6, 0.1, 0.8, 0.4, "soul", "church", "vocal"),
           swing=0.3,
           harmony=Harmony("functional", sevenths=True, secondary=0.4, borrowed=0.25, key_change=2,
                           cadences=(("authentic", 0.45), ("plagal", 0.4), ("half", 0.15))),
           grooves={"4/4": G_GOSPEL, "12/8": G_128, "6/8": G_68}, bass={"4/4": B_GOSPEL, "12/8": B_128, "6/8": B_68},
           chord_rhythm={"4/4": C_GOSPEL, "12/8": C_128_TRIPLETS, "6/8": C_68},
           programs={"bass": 33, "chords": 16, "lead": 0, "texture": 52}, texture="pad", lead_register=74,
           velocity=94, structure=_POP, humanize_ms=7.0),
    _style("blues", ("delta blues", "chicago blues", "blues rock", "12 bar blues", "twelve bar blues",
                     "boogie", "boogie woogie"),
           (60, 130), ("12/8", "4/4"), _traits(90, 0.55, 0.0, 0.9, 0.8, "blues", "guitar", "american", "band"),
           feel="shuffle", swing=1.0, default_mood="calm",
           harmony=Harmony("blues", sevenths=True, cadences=(("half", 1.0),)),
           grooves={"12/8": G_SHUFFLE_128, "4/4": G_SHUFFLE_44}, bass={"12/8": B_128_BOOGIE, "4/4": B_BOOGIE_44},
           chord_rhythm={"12/8": C_128, "4/4": C_QUARTERS},
           programs={"bass": 33, "chords": 0, "lead": 26, "texture": 16}, texture="none", lead_register=72,
           velocity=92, structure=("intro", "verse", "verse", "solo", "verse", "outro"), humanize_ms=8.0),
    _style("k-pop", ("kpop", "k pop", "korean pop", "j-pop", "jpop", "j pop", "idol pop", "c-pop"),
           (100, 130), ("4/4",), _traits(118, 0.8, 0.7, 0.2, 0.0, "pop", "dance", "asian", "vocal"),
           default_mood="energetic",
           harmony=Harmony("functional", sevenths=True, secondary=0.15, borrowed=0.15, key_change=1,
                           cadences=(("authentic", 0.4), ("half", 0.4), ("deceptive", 0.2))),
           grooves={"4/4": G_KPOP}, bass={"4/4": B_OCTAVES}, chord_rhythm={"4/4": C_STABS},
           programs={"bass": 38, "chords": 90, "lead": 81, "texture": 80}, texture="arpeggio", velocity=100,
           structure=("intro", "verse", "prechorus", "chorus", "verse", "prechorus", "chorus", "bridge", "chorus",
                      "outro"), humanize_ms=2.0, electronic=True),
    _style("orchestral", ("orchestra", "symphonic", "symphony", "classical", "string quartet", "chamber music",
                          "baroque", "romantic era", "concerto"),
           (60, 140), ("4/4", "3/4", "6/8"), _traits(96, 0.45, 0.0, 1.0, 0.0, "classical", "orchestral",
                                                    "acoustic"),
           default_mood="epic",
           harmony=Harmony("functional", secondary=0.3, borrowed=0.2, harmonic_minor=True,
                           cadences=(("authentic", 0.55), ("half", 0.3), ("deceptive", 0.15))),
           grooves={"4/4": G_ORCH, "3/4": G_ORCH_34, "6/8": G_ORCH_68},
           bass={"4/4": B_FOLK, "3/4": B_34_OOMPAH, "6/8": B_68},
           chord_rhythm={"4/4": C_HALVES, "3/4": C_34, "6/8": C_68},
           programs={"bass": 42, "chords": 48, "lead": 40, "texture": 46}, texture="arpeggio", lead_register=76,
           velocity=88, structure=("intro", "verse", "chorus", "bridge", "chorus", "outro"), humanize_ms=8.0),
    _style("disco", ("nu disco", "nu-disco", "seventies", "70s", "boogie funk", "italo disco"),
           (110, 128), ("4/4",), _traits(120, 0.8, 0.4, 0.6, 0.1, "dance", "funk", "retro", "soul"),
           harmony=Harmony("vamp", sevenths=True, secondary=0.1, cadences=(("half", 0.5), ("authentic", 0.5))),
           grooves={"4/4": G_DISCO}, bass={"4/4": B_DISCO}, chord_rhythm={"4/4": C_FUNK},
           programs={"bass": 33, "chords": 27, "lead": 48, "texture": 50}, texture="pad", lead_register=76,
           velocity=98, structure=_POP, humanize_ms=3.0),
    _style("r&b", ("rnb", "r and b", "rhythm and blues", "soul", "neo soul", "neo-soul", "motown",
                   "contemporary r&b", "slow jam", "quiet storm"),
           (60, 100), ("4/4", "12/8"), _traits(80, 0.45, 0.4, 0.6, 0.4, "soul", "urban", "vocal", "groove"),
           mode="minor", swing=0.35, default_mood="romantic",
           harmony=Harmony("functional", sevenths=True, secondary=0.25, borrowed=0.2,
                           cadences=(("authentic", 0.4), ("half", 0.3), ("plagal", 0.3))),
           grooves={"4/4": G_RNB, "12/8": G_128}, bass={"4/4": B_RNB, "12/8": B_128},
           chord_rhythm={"4/4": C_HALVES, "12/8": C_128_TRIPLETS},
           programs={"bass": 38, "chords": 4, "lead": 66, "texture": 89}, texture="pad", lead_register=72,
           velocity=88, structure=_POP, humanize_ms=8.0),
    _style("folk", ("folk music", "indie folk", "singer songwriter", "singer-songwriter", "celtic",
                    "irish", "folk rock", "sea shanty", "shanty"),
           (80, 130), ("4/4", "3/4", "6/8"), _traits(104, 0.4, 0.0, 1.0, 0.1, "acoustic", "guitar", "traditional"),
           default_mood="calm",
           harmony=Harmony("functional", borrowed=0.1, cadences=(("authentic", 0.45), ("plagal", 0.35), ("half", 0.2))),
           grooves={"4/4": G_FOLK, "3/4": G_FOLK_34, "6/8": G_FOLK_68}, bass={"4/4": B_FOLK, "3/4": B_34_OOMPAH,
                                                                          "6/8": B_68},
           chord_rhythm={"4/4": C_COUNTRY, "3/4": C_34_WALTZ, "6/8": C_68_ARP},
           programs={"bass": 32, "chords": 25, "lead": 73, "texture": 21}, texture="none", lead_register=76,
           velocity=84, structure=_SONG, humanize_ms=8.0),
]

STYLES: dict[str, Style] = {s.name: s for s in _STYLE_LIST}
STYLE_NAMES: tuple[str, ...] = tuple(STYLES)


def style_aliases() -> list[tuple[str, str]]:
    """(phrase, style id) pairs, longest phrase first, so 'deep house' is matched before 'house'."""
    pairs = [(name, name) for name in STYLES]
    for name, style in STYLES.items():
        pairs += [(alias, name) for alias in style.aliases]
    return sorted(pairs, key=lambda p: -len(p[0]))


def _check() -> None:
    seen: dict[str, str] = {}
    for name, style in STYLES.items():
        for phrase in (name, *style.aliases):
            if phrase in seen and seen[phrase] != name:
                raise AssertionError(f"alias {phrase!r} claimed by {seen[phrase]!r} and {name!r}")
            seen[phrase] = name
        if not set(style.meters) <= set(METERS) or style.feel not in FEELS:
            raise AssertionError(f"{name}: bad meter/feel")
        for meter, groove in style.grooves.items():
            for _, pat, _ in groove.layers:
                if len(pat) != steps_per_bar(meter):
                    raise AssertionError(f"{name}: a {meter} groove layer has {len(pat)} steps")
            for kick in groove.kicks:
                if len(kick) != steps_per_bar(meter):
                    raise AssertionError(f"{name}: a {meter} kick variant has {len(kick)} steps")
        for table in (style.bass, style.chord_rhythm):
            for meter, pat in table.items():
                if any(st + ln > steps_per_bar(meter) + 1e-9 for st, ln, *_ in pat):
                    raise AssertionError(f"{name}: a {meter} pattern runs past the bar")
        if set(style.traits) != set(TRAIT_KEYS):
            raise AssertionError(f"{name}: traits must have exactly {TRAIT_KEYS}")


_check()
