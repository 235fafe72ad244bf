"""Musical controls: what a prompt plus explicit arguments resolve to, and the style tables behind them.

``resolve_params`` is the single place where free text ("warm lofi hip hop with piano, 84 bpm in
D minor") and explicit tool arguments become one fully specified, reproducible set of controls.
Explicit arguments always win over the text; every field taken from the text is listed in
``from_text`` so a client can see what was understood. Impossible controls raise ``ControlError``
naming the field and what is allowed, before any work starts.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from .styles import FEELS, METERS, STYLES, Style
from .theory import MODES, key_display_name, parse_key

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

_SPEED_WORDS = (("very fast", 1.0), ("very slow", 0.0), ("fast", 0.9), ("quick", 0.85), ("uptempo", 0.85),
                ("up-tempo", 0.85), ("slow", 0.1), ("downtempo", 0.15), ("mid-tempo", 0.5), ("midtempo", 0.5))


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

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["instruments"] = list(self.instruments)
        d["structure"] = list(self.structure)
        d["from_text"] = list(self.from_text)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResolvedParams:
        known = {f for f in cls.__dataclass_fields__}
        d = {k: v for k, v in data.items() if k in known}
        for name in ("instruments", "structure", "from_text"):
            d[name] = tuple(d.get(name) or ())
        return cls(**d)


# -- parsing ----------------------------------------------------------------------------------------
def _phrase_re(phrase: str) -> re.Pattern[str]:
    return re.compile(r"(?<![\w&'-])" + re.escape(phrase) + r"(?![\w&'-])", re.IGNORECASE)


def _alias_table(table: dict[str, Any]) -> list[tuple[str, str]]:
    """(phrase, canonical name), longest phrase first so 'deep house' beats 'house'."""
    pairs = [(name, name) for name in table]
    for name, style in table.items():
        pairs += [(alias, name) for alias in style.aliases]
    return sorted(pairs, key=lambda p: -len(p[0]))


_GENRE_PHRASES = _alias_table(GENRES)
_MOOD_PHRASES = _alias_table(MOODS)
_INSTRUMENT_PHRASES = sorted(INSTRUMENTS, key=len, reverse=True)
_PLURALS = {"pianos": "piano", "guitars": "guitar", "violins": "violin", "flutes": "flute", "synths": "synth",
            "pads": "pad", "horns": "french horn", "keys": "electric piano", "saxophones": "saxophone",
            "string": "strings", "ep": "electric piano", "808": "synth bass", "vocals": "choir", "voices": "choir"}
_BPM_RE = re.compile(r"(\d{1,4}(?:\.\d+)?)\s*(?:bpm|beats per minute|beats/min)\b", re.IGNORECASE)
_KEY_IN_TEXT_RE = re.compile(
    r"(?:\bin(?: the key of)?|\bkey(?: of)?:?)\s+([A-Ga-g](?:#|♯|b|♭|-sharp|-flat| sharp| flat)?"
    r"(?:\s*(?:major|minor|maj|min|m))?)(?![\w#♯])"
    r"|\b((?-i:[A-G])(?:#|♯|b|♭)?\s*(?:major|minor))\b", re.IGNORECASE)


def _consume(text: str, phrases: list[tuple[str, str]]) -> tuple[list[str], str]:
    """Find phrases (longest first), blanking each match so shorter phrases cannot reuse it."""
    found: list[tuple[int, str]] = []
    for phrase, name in phrases:
        pat = _phrase_re(phrase)
        for m in pat.finditer(text):
            found.append((m.start(), name))
            text = text[:m.start()] + " " * (m.end() - m.start()) + text[m.end():]
    names: list[str] = []
    for _, name in sorted(found):
        if name not in names:
            names.append(name)
    return names, text


def parse_prompt(prompt: str) -> dict[str, Any]:
    """What the free text says, field by field (only the fields it mentions)."""
    out: dict[str, Any] = {}
    text = prompt
    m = _BPM_RE.search(text)
    if m:
        out["bpm"] = float(m.group(1))
        text = text[:m.start()] + " " * (m.end() - m.start()) + text[m.end():]
    # prefer "in X"/"key of X" over a bare "X minor" anywhere (the first alternative)
    km = next((m for m in _KEY_IN_TEXT_RE.finditer(text) if m.group(1)), None) or _KEY_IN_TEXT_RE.search(text)
    if km:
        key_text = km.group(1) or km.group(2)
        if parse_key(key_text):
            out["key"] = key_text
            text = text[:km.start()] + " " * (km.end() - km.start()) + text[km.end():]
    genres, text = _consume(text, _GENRE_PHRASES)
    if genres:
        out["genre"] = genres[0]
    moods, text = _consume(text, _MOOD_PHRASES)
    if moods:
        out["mood"] = moods[0]
    for phrase, frac in _SPEED_WORDS:
        if _phrase_re(phrase).search(text):
            out["tempo_word"] = phrase
            out["tempo_frac"] = frac
            text = _phrase_re(phrase).sub(" ", text)
            break
    inst_pairs = [(p, p) for p in _INSTRUMENT_PHRASES] + list(_PLURALS.items())
    instruments, _ = _consume(text, sorted(inst_pairs, key=lambda p: -len(p[0])))
    # generic words that only make sense as instruments when nothing more specific was named
    instruments = [i for i in instruments if i not in ("drums", "percussion")] or \
        [i for i in instruments if i == "percussion"]
    if instruments:
        out["instruments"] = instruments
    return out


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
    if not isinstance(duration_s, (int, float)) or not duration_s > 0 or duration_s > max_duration_s:
        raise ControlError("duration_s", f"must be > 0 and <= {max_duration_s:g} seconds, got {duration_s!r}")
    parsed = parse_prompt(prompt or "")
    from_text: list[str] = []

    if genre is not None:
        g = _check_choice("genre", genre, GENRES)
    elif "genre" in parsed:
        g, _ = parsed["genre"], from_text.append("genre")
    else:
        g = "pop"
    gstyle = GENRES[g]

    if mood is not None:
        md = _check_choice("mood", mood, MOODS)
    elif "mood" in parsed:
        md, _ = parsed["mood"], from_text.append("mood")
    else:
        md = gstyle.default_mood
    mstyle = MOODS[md]

    tempo_word = None
    if bpm is not None:
        tempo = float(bpm)
        if not BPM_MIN <= tempo <= BPM_MAX:
            raise ControlError("bpm", f"must be between {BPM_MIN:g} and {BPM_MAX:g} beats per minute, got {bpm:g}")
    elif "bpm" in parsed:
        tempo = parsed["bpm"]
        if not BPM_MIN <= tempo <= BPM_MAX:
            raise ControlError("bpm", f"the prompt asks for {tempo:g} bpm; the tempo must be between "
                                      f"{BPM_MIN:g} and {BPM_MAX:g}")
        from_text.append("bpm")
    else:
        lo, hi = gstyle.tempo
        frac = parsed.get("tempo_frac", 0.5)
        if "tempo_frac" in parsed:
            tempo_word = parsed["tempo_word"]
            from_text.append("bpm")
        tempo = float(round(min(BPM_MAX, max(BPM_MIN, (lo + (hi - lo) * frac) * mstyle.tempo_factor))))

    if key is not None:
        pk = parse_key(key)
        if pk is None:
            raise ControlError("key", f"cannot read key {key!r}; use a note A-G with optional # or b and "
                                      "'major' or 'minor', e.g. 'A minor', 'F# major', 'Bb minor'")
        tonic, mode, written = pk
    elif "key" in parsed:
        tonic, mode, written = parse_key(parsed["key"])  # type: ignore[misc]
        from_text.append("key")
    else:
        mode = mstyle.mode or gstyle.mode
        h = hashlib.sha256(f"{prompt}|{g}|{md}".encode()).digest()
        tonic = (0, 2, 4, 5, 7, 9, 10, 11)[h[0] % 8] if mode == "major" else (9, 2, 4, 7, 0, 5, 11, 6)[h[0] % 8]
        written = None
    assert mode in MODES
    key_name = key_display_name(tonic, mode, written)

    if instruments is not None:
        insts = tuple(dict.fromkeys(normalise_instrument(i) for i in instruments))
    elif "instruments" in parsed:
        insts = tuple(parsed["instruments"])
        from_text.append("instruments")
    else:
        insts = ()

    if structure is not None:
        if not structure:
            raise ControlError("structure", f"needs at least one section; allowed: {', '.join(SECTIONS)}")
        struct = tuple(normalise_section(s) for s in structure)
    else:
        struct = gstyle.structure

    # meter and feel: the argument, else the style's default (its first meter, its own feel)
    if meter is not None:
        mt = str(meter).strip()
        if mt not in METERS:
            raise ControlError("meter", f"unknown meter {meter!r}; allowed: {', '.join(METERS)}")
    else:
        mt = gstyle.meters[0]
    if feel is not None:
        fl = str(feel).strip().lower()
        if fl not in FEELS:
            raise ControlError("feel", f"unknown feel {feel!r}; allowed: {', '.join(FEELS)}")
    else:
        fl = gstyle.feel

    if seed is None:
        seed = _prompt_seed(prompt or "", float(duration_s), g, md, tempo, key_name)
    elif not 0 <= int(seed) <= 2**31 - 1:
        raise ControlError("seed", f"must be between 0 and {2**31 - 1}, got {seed}")
    return ResolvedParams(prompt=prompt or "", duration_s=float(duration_s), genre=g, mood=md, bpm=tempo,
                          key_tonic=tonic, key_mode=mode, key=key_name, instruments=insts, structure=struct,
                          seed=int(seed), from_text=tuple(from_text), tempo_word=tempo_word, meter=mt, feel=fl)
