"""Musical controls: what a prompt plus explicit arguments resolve to, and the style tables behind them.

``resolve_params`` is the single place where free text ("warm lofi hip hop with piano, 84 bpm in
D minor") and explicit tool arguments become one fully specified, reproducible set of controls.
Explicit arguments always win over the text; every field taken from the text is listed in
``from_text`` so a client can see what was understood. Impossible controls raise ``ControlError``
naming the field and what is allowed, before any work starts.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from .styles import STYLES, Style

BPM_MIN, BPM_MAX = 40.0, 240.0


class ControlError(ValueError):
    """A control that cannot be honoured; ``field`` names the argument, the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- style tables -----------------------------------------------------------------------------------
# Every genre's data lives in one Style record in styles.py; GENRES is that table under its old name.
GENRES: dict[str, Style] = STYLES


class MoodStyle(NamedTuple):
    """How a mood bends a genre: tempo factor, preferred mode, loudness, busyness and register."""

    tempo_factor: float
    mode: str | None
    velocity_delta: int
    density: float  # multiplies note density of lead/arp/drum ghost notes
    register_shift: int
    aliases: tuple[str, ...]


MOODS: dict[str, MoodStyle] = {
    "happy": MoodStyle(1.04, "major", 4, 1.1, 2, ("joyful", "uplifting", "cheerful", "bright", "sunny", "upbeat",
                                                   "playful", "fun")),
    "sad": MoodStyle(0.9, "minor", -10, 0.75, -2, ("melancholic", "melancholy", "sorrowful", "gloomy", "somber",
                                                    "nostalgic", "lonely", "heartbroken")),
    "dark": MoodStyle(0.97, "minor", 2, 0.9, -5, ("sinister", "ominous", "moody", "brooding", "eerie", "spooky",
                                                   "menacing")),
    "calm": MoodStyle(0.9, None, -12, 0.7, 0, ("relaxed", "relaxing", "chill", "chilled", "peaceful", "mellow",
                                                "soft", "gentle", "warm", "dreamy", "laid back", "laid-back",
                                                "serene")),
    "energetic": MoodStyle(1.06, None, 10, 1.3, 2, ("energetic", "driving", "powerful", "intense", "aggressive",
                                                     "hype", "pumping", "excited")),
    "epic": MoodStyle(1.0, "minor", 12, 1.15, 0, ("heroic", "grand", "majestic", "triumphant", "huge", "anthemic")),
    "tense": MoodStyle(1.02, "minor", 4, 1.0, -3, ("suspenseful", "anxious", "nervous", "thriller", "urgent",
                                                    "uneasy")),
    "romantic": MoodStyle(0.94, "major", -6, 0.85, 0, ("love", "tender", "sweet", "lush", "intimate")),
}


class InstrumentSpec(NamedTuple):
    """A General MIDI program and the part it plays by default."""

    program: int
    role: str  # one of ROLES
    is_drum: bool = False


ROLES = ("drums", "bass", "chords", "lead", "pad", "arpeggio", "percussion", "texture", "counter")

INSTRUMENTS: dict[str, InstrumentSpec] = {
    "piano": InstrumentSpec(0, "chords"),
    "bright piano": InstrumentSpec(1, "chords"),
    "electric piano": InstrumentSpec(4, "chords"),
    "rhodes": InstrumentSpec(4, "chords"),
    "harpsichord": InstrumentSpec(6, "arpeggio"),
    "celesta": InstrumentSpec(8, "arpeggio"),
    "glockenspiel": InstrumentSpec(9, "arpeggio"),
    "music box": InstrumentSpec(10, "arpeggio"),
    "vibraphone": InstrumentSpec(11, "lead"),
    "marimba": InstrumentSpec(12, "arpeggio"),
    "organ": InstrumentSpec(16, "chords"),
    "accordion": InstrumentSpec(21, "lead"),
    "acoustic guitar": InstrumentSpec(25, "chords"),
    "nylon guitar": InstrumentSpec(24, "chords"),
    "guitar": InstrumentSpec(25, "chords"),
    "electric guitar": InstrumentSpec(27, "chords"),
    "muted guitar": InstrumentSpec(28, "chords"),
    "distorted guitar": InstrumentSpec(30, "chords"),
    "acoustic bass": InstrumentSpec(32, "bass"),
    "upright bass": InstrumentSpec(32, "bass"),
    "bass": InstrumentSpec(33, "bass"),
    "bass guitar": InstrumentSpec(33, "bass"),
    "fretless bass": InstrumentSpec(35, "bass"),
    "slap bass": InstrumentSpec(36, "bass"),
    "synth bass": InstrumentSpec(38, "bass"),
    "violin": InstrumentSpec(40, "lead"),
    "cello": InstrumentSpec(42, "counter"),
    "contrabass": InstrumentSpec(43, "bass"),
    "pizzicato strings": InstrumentSpec(45, "arpeggio"),
    "harp": InstrumentSpec(46, "arpeggio"),
    "timpani": InstrumentSpec(47, "percussion"),
    "strings": InstrumentSpec(48, "pad"),
    "choir": InstrumentSpec(52, "pad"),
    "trumpet": InstrumentSpec(56, "lead"),
    "trombone": InstrumentSpec(57, "counter"),
    "french horn": InstrumentSpec(60, "counter"),
    "brass": InstrumentSpec(61, "pad"),
    "saxophone": InstrumentSpec(65, "lead"),
    "sax": InstrumentSpec(65, "lead"),
    "oboe": InstrumentSpec(68, "lead"),
    "clarinet": InstrumentSpec(71, "lead"),
    "flute": InstrumentSpec(73, "lead"),
    "pan flute": InstrumentSpec(75, "lead"),
    "synth lead": InstrumentSpec(81, "lead"),
    "synth": InstrumentSpec(81, "lead"),
    "synth pad": InstrumentSpec(89, "pad"),
    "pad": InstrumentSpec(89, "pad"),
    "arpeggio synth": InstrumentSpec(81, "arpeggio"),
    "sitar": InstrumentSpec(104, "lead"),
    "kalimba": InstrumentSpec(108, "arpeggio"),
    "steel drums": InstrumentSpec(114, "arpeggio"),
    "drums": InstrumentSpec(0, "drums", True),
    "percussion": InstrumentSpec(0, "percussion", True),
}

# Section names the composer knows, with their energy (0..1) and nominal length in bars.
SECTIONS: dict[str, tuple[float, int]] = {
    "intro": (0.35, 4), "verse": (0.6, 8), "prechorus": (0.7, 4), "chorus": (0.9, 8), "hook": (0.9, 8),
    "bridge": (0.55, 4), "breakdown": (0.4, 8), "build": (0.7, 4), "drop": (1.0, 8), "solo": (0.8, 8),
    "head": (0.75, 8), "interlude": (0.45, 4), "outro": (0.4, 4),
}
_SECTION_ALIASES = {"pre-chorus": "prechorus", "pre chorus": "prechorus", "refrain": "chorus", "buildup": "build",
                    "build-up": "build", "ending": "outro", "coda": "outro", "a": "verse", "b": "chorus"}

@dataclass(frozen=True)
class ResolvedParams:
    """Fully resolved controls for one piece; reproducible from ``to_dict()`` alone."""

    prompt: str
    duration_s: float
    genre: str
    mood: str
    bpm: float
    key_tonic: int  # pitch class 0..11
    key_mode: str  # "major" | "minor"
    key: str  # display name, e.g. "Bb minor"
    instruments: tuple[str, ...]
    structure: tuple[str, ...]
    seed: int
    from_text: tuple[str, ...] = field(default=())
    tempo_word: str | None = None
    # meter and feel arrived with format 2 of the arrangement; records made before load as 4/4 straight
    meter: str = "4/4"  # one of styles.METERS: "4/4", "3/4", "6/8", "12/8"
    feel: str = "straight"  # one of styles.FEELS: "straight", "swing", "shuffle"
    # parts the prompt ruled out ("no drums", "without piano") or limited to ("solo piano"); applied to the
    # composed arrangement by interpret.limit_parts; older records have neither
    without: tuple[str, ...] = ()
    only: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["instruments"] = list(self.instruments)
        d["structure"] = list(self.structure)
        d["from_text"] = list(self.from_text)
        d["without"], d["only"] = list(self.without), list(self.only)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedParams:
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in data.items() if k in known}
        for name in ("instruments", "structure", "from_text", "without", "only"):
            d[name] = tuple(d.get(name) or ())
        return cls(**d)


# -- parsing ----------------------------------------------------------------------------------------
# The reading of song-request English lives in interpret.py (negation, scenes, blends, unknown genres,
# keys vs "in a <place>"); these two functions are its stable entry points.
def _alias_table(table: dict[str, Any]) -> list[tuple[str, str]]:
    """(phrase, canonical name), longest phrase first so 'deep house' beats 'house'."""
    pairs = [(name, name) for name in table]
    for name, style in table.items():
        pairs += [(alias, name) for alias in style.aliases]
    return sorted(pairs, key=lambda p: -len(p[0]))


_PLURALS = {"pianos": "piano", "guitars": "guitar", "violins": "violin", "flutes": "flute", "synths": "synth",
            "pads": "pad", "horns": "french horn", "keys": "electric piano", "saxophones": "saxophone",
            "string": "strings", "ep": "electric piano", "808": "synth bass", "vocals": "choir", "voices": "choir"}


def parse_prompt(prompt: str) -> dict[str, Any]:
    """What the free text itself says, field by field (only the fields it states): genre, mood, bpm or
    tempo_word, key (display name), instruments, meter, feel. See interpret.py for how it is read."""
    from .interpret import parse_prompt_compat

    return parse_prompt_compat(prompt)


# -- validation -------------------------------------------------------------------------------------
def _check_choice(field_name: str, value: str, table: dict[str, Any], aliases: bool = True) -> str:
    v = value.strip().lower()
    if v in table:
        return v
    if aliases:
        for phrase, name in _alias_table(table):
            if phrase == v:
                return name
    raise ControlError(field_name, f"unknown {field_name} {value!r}; allowed: {', '.join(table)}")


def normalise_instrument(value: str) -> str:
    """Canonical instrument name for a user's word, or ControlError listing the valid ones."""
    v = " ".join(value.strip().lower().replace("_", " ").split())
    if v in INSTRUMENTS:
        return v
    if v in _PLURALS:
        return _PLURALS[v]
    if v.endswith("s") and v[:-1] in INSTRUMENTS:
        return v[:-1]
    raise ControlError("instruments", f"unknown instrument {value!r}; allowed: {', '.join(INSTRUMENTS)}")


def normalise_section(value: str) -> str:
    v = value.strip().lower().replace("_", " ")
    v = _SECTION_ALIASES.get(v, v)
    if v not in SECTIONS:
        raise ControlError("structure", f"unknown section {value!r}; allowed: {', '.join(SECTIONS)}")
    return v


def _prompt_seed(prompt: str, duration_s: float, genre: str, mood: str, bpm: float, key: str) -> int:
    """Seed derived from the request, so an unseeded call is still reproducible."""
    h = hashlib.sha256(f"{prompt.strip().lower()}|{duration_s}|{genre}|{mood}|{bpm}|{key}".encode()).digest()
    return int.from_bytes(h[:4], "big") & 0x7FFFFFFF


def resolve_params(prompt: str, *, duration_s: float, genre: str | None = None, mood: str | None = None,
                   bpm: float | None = None, key: str | None = None, instruments: list[str] | None = None,
                   structure: list[str] | None = None, seed: int | None = None,
                   max_duration_s: float = 300.0, meter: str | None = None,
                   feel: str | None = None) -> ResolvedParams:
    """Merge the prompt's words with explicit arguments (which win) into complete, validated controls."""
    from .interpret import interpret_request

    return interpret_request(prompt, duration_s=duration_s, genre=genre, mood=mood, bpm=bpm, key=key,
                             instruments=instruments, structure=structure, seed=seed,
                             max_duration_s=max_duration_s, meter=meter, feel=feel)[0]
