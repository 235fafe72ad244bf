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


_DEFAULT_GROOVE = Groove(((KICK, "x.......x.......", 0.0), (SNARE, "....x.......x...", 0.4),
                          (HAT_CLOSED, "x.o.x.o.x.o.x.o.", 0.3)))
_DEFAULT_BASS: BassPattern = tuple((s, 2, "R") for s in range(0, 16, 2))
_DEFAULT_CHORDS: ChordPattern = ((0, 16),)


def _style(name: str, aliases: tuple[str, ...], tempo: tuple[float, float], meters: tuple[str, ...],
           traits: dict[str, Any], **kw: Any) -> Style:
    base: dict[str, Any] = dict(
        feel="straight", swing=0.0, mode="major", harmony=Harmony(), grooves={"4/4": _DEFAULT_GROOVE},
        bass={"4/4": _DEFAULT_BASS}, chord_rhythm={"4/4": _DEFAULT_CHORDS},
        programs={"bass": 33, "chords": 0, "lead": 80, "texture": 48}, texture="pad", lead_register=74,
        velocity=94, structure=("intro", "verse", "chorus", "verse", "chorus", "outro"), default_mood="happy",
        humanize_ms=5.0, electronic=False)
    base.update(kw)
    return Style(name=name, aliases=aliases, tempo=tempo, meters=meters, traits=traits, **base)


_POP = ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro")
_EDM = ("intro", "build", "drop", "breakdown", "build", "drop", "outro")

# Skeleton: ids, aliases, tempo ranges, meters and traits are final; grooves/harmony refined below.
_STYLE_LIST: list[Style] = [
    _style("lofi hip hop", ("lofi", "lo-fi", "lo fi", "hip hop", "hip-hop", "hiphop", "chillhop", "boom bap",
                            "boombap", "jazzhop"),
           (70, 92), ("4/4",), _traits(80, 0.3, 0.5, 0.5, 0.5, "hip hop", "chill", "urban"), mode="minor",
           swing=0.55, default_mood="calm"),
    _style("house", ("deep house", "disco house", "funky house", "tech house", "edm", "dance", "club",
                     "dance music", "garage", "uk garage"),
           (118, 128), ("4/4",), _traits(123, 0.75, 0.95, 0.05, 0.1, "electronic", "dance", "club"), mode="minor"),
    _style("techno", ("minimal", "minimal techno", "industrial", "rave", "acid", "hard techno"),
           (125, 138), ("4/4",), _traits(130, 0.8, 1.0, 0.0, 0.0, "electronic", "dance", "club", "dark"),
           mode="minor", default_mood="dark"),
    _style("rock", ("rock and roll", "rock n roll", "rock'n'roll", "indie rock", "punk", "punk rock", "grunge",
                    "alt rock", "alternative rock", "hard rock", "classic rock", "garage rock", "pop punk"),
           (100, 150), ("4/4", "6/8", "12/8"), _traits(124, 0.8, 0.1, 0.7, 0.0, "band", "guitar"),
           default_mood="energetic"),
    _style("pop", ("synthpop", "synth pop", "synth-pop", "indie pop", "dance pop", "dance-pop", "pop song",
                   "electropop", "teen pop"),
           (96, 124), ("4/4", "6/8"), _traits(110, 0.65, 0.5, 0.4, 0.0, "pop", "vocal")),
    _style("jazz", ("swing", "bebop", "jazzy", "big band", "cool jazz", "jazz trio", "smooth jazz", "hard bop"),
           (90, 160), ("4/4", "3/4"), _traits(125, 0.5, 0.0, 1.0, 0.9, "jazz", "acoustic", "improvised"),
           feel="swing", swing=0.66, default_mood="calm"),
    _style("ambient", ("drone", "atmospheric", "new age", "meditation", "soundscape", "chillout", "downtempo",
                       "space music"),
           (64, 90), ("4/4", "3/4"), _traits(76, 0.15, 0.7, 0.3, 0.0, "ambient", "chill", "texture"),
           default_mood="calm"),
    _style("cinematic", ("film score", "soundtrack", "trailer", "score", "epic music", "film music", "movie",
                         "game music", "video game"),
           (70, 110), ("4/4", "3/4", "6/8"), _traits(90, 0.6, 0.2, 0.8, 0.0, "orchestral", "film", "epic"),
           mode="minor", default_mood="epic"),
    _style("funk", ("funky", "groove", "p-funk", "jazz funk", "go-go"),
           (96, 118), ("4/4",), _traits(107, 0.75, 0.2, 0.7, 0.2, "funk", "groove", "band", "soul"),
           mode="minor", swing=0.2, default_mood="energetic"),
    _style("drum and bass", ("drum & bass", "drum n bass", "drum'n'bass", "drum 'n' bass", "dnb", "d&b",
                             "jungle", "liquid", "liquid dnb", "neurofunk"),
           (165, 178), ("4/4",), _traits(172, 0.9, 0.95, 0.05, 0.0, "electronic", "dance", "breakbeat", "uk"),
           mode="minor", default_mood="energetic"),
    _style("reggae", ("dub", "ska", "roots", "roots reggae", "rocksteady", "dancehall"),
           (70, 95), ("4/4",), _traits(82, 0.5, 0.2, 0.7, 0.3, "caribbean", "jamaican", "offbeat"),
           swing=0.3),
    _style("synthwave", ("retrowave", "outrun", "80s", "eighties", "vaporwave", "darksynth", "chillwave"),
           (84, 118), ("4/4",), _traits(100, 0.65, 1.0, 0.0, 0.0, "electronic", "retro", "80s"), mode="minor",
           default_mood="energetic"),
    _style("metal", ("heavy metal", "thrash", "thrash metal", "death metal", "metalcore", "doom", "doom metal",
                     "black metal", "nu metal", "djent", "power metal", "hardcore"),
           (100, 190), ("4/4", "12/8"), _traits(150, 1.0, 0.1, 0.6, 0.0, "band", "guitar", "heavy", "dark"),
           mode="minor", default_mood="energetic"),
    _style("trap", ("trap beat", "hip hop trap", "rap", "phonk", "808s", "type beat", "mumble rap"),
           (130, 160), ("4/4",), _traits(140, 0.7, 0.9, 0.1, 0.0, "hip hop", "urban", "808"), mode="minor",
           default_mood="dark"),
    _style("drill", ("uk drill", "ny drill", "brooklyn drill", "chicago drill"),
           (138, 146), ("4/4",), _traits(142, 0.75, 0.9, 0.1, 0.1, "hip hop", "urban", "808", "dark", "uk"),
           mode="minor", default_mood="dark"),
    _style("country", ("country music", "americana", "bluegrass", "honky tonk", "country rock", "nashville",
                       "western", "cowboy"),
           (80, 130), ("4/4", "3/4"), _traits(105, 0.55, 0.0, 0.95, 0.2, "acoustic", "guitar", "american"),
           default_mood="happy"),
    _style("reggaeton", ("latin", "latin pop", "dembow", "urbano", "perreo", "moombahton"),
           (88, 100), ("4/4",), _traits(94, 0.75, 0.8, 0.2, 0.0, "latin", "dance", "caribbean", "urban"),
           mode="minor", default_mood="energetic"),
    _style("dubstep", ("brostep", "riddim", "wobble", "bass music", "future bass"),
           (138, 150), ("4/4",), _traits(140, 0.9, 1.0, 0.0, 0.0, "electronic", "bass", "uk", "heavy"),
           mode="minor", default_mood="dark"),
    _style("afrobeats", ("afrobeat", "afro beats", "afropop", "afro pop", "amapiano", "afro house", "highlife",
                         "naija"),
           (98, 116), ("4/4",), _traits(106, 0.7, 0.5, 0.5, 0.2, "african", "dance", "percussion"),
           default_mood="happy"),
    _style("bossa nova", ("bossa", "samba", "brazilian", "mpb", "tropicalia"),
           (110, 140), ("4/4",), _traits(126, 0.35, 0.0, 1.0, 0.1, "latin", "brazilian", "acoustic", "jazz"),
           default_mood="romantic"),
    _style("waltz", ("valse", "vals", "viennese waltz", "ballroom", "minuet"),
           (84, 180), ("3/4",), _traits(140, 0.4, 0.0, 0.9, 0.0, "classical", "dance", "acoustic", "triple"),
           default_mood="romantic"),
    _style("gospel", ("church", "praise", "worship", "spiritual", "choir music", "hymn"),
           (66, 120), ("4/4", "12/8", "6/8"), _traits(90, 0.6, 0.1, 0.8, 0.4, "soul", "church", "vocal"),
           default_mood="happy"),
    _style("blues", ("delta blues", "chicago blues", "blues rock", "12 bar blues", "twelve bar blues",
                     "boogie", "boogie woogie"),
           (60, 130), ("12/8", "4/4"), _traits(90, 0.55, 0.0, 0.9, 0.8, "blues", "guitar", "american", "band"),
           feel="shuffle", swing=1.0, default_mood="sad"),
    _style("k-pop", ("kpop", "k pop", "korean pop", "j-pop", "jpop", "j pop", "idol pop", "c-pop"),
           (100, 130), ("4/4",), _traits(118, 0.8, 0.7, 0.2, 0.0, "pop", "dance", "asian", "vocal"),
           default_mood="energetic"),
    _style("orchestral", ("orchestra", "symphonic", "symphony", "classical", "string quartet", "chamber music",
                          "baroque", "romantic era", "concerto"),
           (60, 140), ("4/4", "3/4", "6/8"), _traits(96, 0.45, 0.0, 1.0, 0.0, "classical", "orchestral",
                                                    "acoustic"),
           default_mood="epic"),
    _style("disco", ("nu disco", "nu-disco", "seventies", "70s", "boogie funk", "italo disco"),
           (110, 128), ("4/4",), _traits(120, 0.8, 0.4, 0.6, 0.1, "dance", "funk", "retro", "soul"),
           default_mood="happy"),
    _style("r&b", ("rnb", "r and b", "rhythm and blues", "soul", "neo soul", "neo-soul", "motown",
                   "contemporary r&b", "slow jam", "quiet storm"),
           (60, 100), ("4/4", "12/8"), _traits(80, 0.45, 0.4, 0.6, 0.4, "soul", "urban", "vocal", "groove"),
           mode="minor", swing=0.35, default_mood="romantic"),
    _style("folk", ("folk music", "indie folk", "singer songwriter", "singer-songwriter", "celtic",
                    "irish", "folk rock", "sea shanty", "shanty"),
           (80, 130), ("4/4", "3/4", "6/8"), _traits(104, 0.4, 0.0, 1.0, 0.1, "acoustic", "guitar", "traditional"),
           default_mood="calm"),
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
        if set(style.traits) != set(TRAIT_KEYS):
            raise AssertionError(f"{name}: traits must have exactly {TRAIT_KEYS}")


_check()
