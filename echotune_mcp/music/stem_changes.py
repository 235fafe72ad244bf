"""Editing one stem: typed changes, free text mapped onto them, and an account of what was applied.

``regenerate_stem`` and ``add_stem`` take a ``StemChanges`` (every field optional and bounded) and/or a
free-text instruction. The text is read clause by clause (split at commas, "and", "but", "then") by a
phrase table, most specific phrase first, and a matched phrase is blanked so a later, looser phrase
cannot read it again: "lower the volume" is a velocity change and never reaches the octave rule.
Negation ("not so busy", "don't swing it", "less legato") turns a change into its opposite where a
musician would hear one, and is reported as not understood where there is none.

Both end as *composer options* (the keys the part writers in ``composer.py`` read: density, octave,
velocity_delta, volume_delta, swing, feel, time_feel, articulation, pattern, humanize, register,
variant). Explicit ``changes`` win over the text on the same field; the loser is reported in
``ignored`` with why, as is anything the stem's role or the piece's meter cannot take (swing in 6/8,
an octave on drums, a pattern the role does not know). Named patterns are listed here per role and
meter, from the style data, so an agent can be told exactly what it may ask for.

This module imports only ``styles``; ``composer`` imports the pattern tables from here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from . import styles as S
from .params import ControlError

Dynamic = Literal["pp", "p", "mp", "mf", "f", "ff"]
TimeFeel = Literal["straight", "swing", "shuffle", "half-time", "double-time"]
Articulation = Literal["legato", "staccato", "normal"]
RegisterName = Literal["low", "mid", "high"]

# A dynamic mark sets the part's velocity offset outright (mf = as written); a number moves it.
DYNAMICS: dict[str, int] = {"pp": -40, "p": -24, "mp": -10, "mf": 0, "f": 14, "ff": 28}
DENSITY_WORDS = {"sparser": 0.6, "busier": 1.6}
SWING_FOR_FEEL = {"straight": 0.0, "swing": 0.66, "shuffle": 1.0}
# centre MIDI pitch of each register per role (a bass "high register" is still a bass)
REGISTERS: dict[str, dict[str, int]] = {
    "bass": {"low": 33, "mid": 43, "high": 55},
    "default": {"low": 48, "mid": 62, "high": 76},
}
UNPITCHED = ("drums", "percussion")


class StemChanges(BaseModel):
    """Structured changes to one stem. Every field is optional; only given fields change anything."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    octave: Annotated[int | None, Field(ge=-2, le=2, description="octaves to move the part (pitched stems only)")] = None
    density: Annotated[float, Field(ge=0.25, le=2.0)] | Literal["sparser", "busier"] | None = Field(
        None, description="note density multiplier 0.25..2, or 'sparser' (x0.6) / 'busier' (x1.6)")
    velocity: Annotated[int, Field(ge=-40, le=40)] | Dynamic | None = Field(
        None, description="dynamics: a velocity change -40..40, or a mark pp, p, mp, mf, f, ff (sets it outright)")
    swing: Annotated[float | None, Field(ge=0.0, le=1.0, description=(
        "off-beat eighth delay: 0 straight, 0.66 swing, 1 triplet shuffle (simple meters only)"))] = None
    feel: Annotated[TimeFeel | None, Field(description=(
        "rhythmic feel: straight, swing, shuffle, half-time, double-time"))] = None
    articulation: Annotated[Articulation | None, Field(description="legato (notes joined), staccato (short), normal")] = None
    pattern: Annotated[str | None, Field(min_length=1, max_length=40, description=(
        "a named pattern the stem's role knows in this meter (see the tool description); e.g. bass: walking, "
        "root_fifth, octave, offbeat; drums: a style's groove such as rock, funk, trap, bossa"))] = None
    humanize: Annotated[float | None, Field(ge=0.0, le=1.0, description=(
        "played-timing spread: 0 on the grid, 1 about 30 ms of timing and 12 of velocity variation"))] = None
    register_: Annotated[int, Field(ge=24, le=108)] | RegisterName | None = Field(
        None, alias="register", description="where the part sits: low, mid, high, or a MIDI centre pitch 24..108 (pitched stems)")

    def given(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump(by_alias=True).items() if v is not None}


# -- named patterns per role and meter ------------------------------------------------------------------
def _bass_table() -> dict[str, dict[str, S.BassPattern]]:
    r = lambda *p: tuple((float(a), float(b), t) for a, b, t in p)  # noqa: E731
    return {
        "4/4": {"root": r((0, 8, "R"), (8, 8, "R")), "root_fifth": S.B_COUNTRY, "walking": S.B_WALKING,
                "octave": S.B_OCTAVES, "offbeat": S.B_OFFBEAT, "eighths": S.B_EIGHTHS, "sixteenths": S.B_METAL,
                "drone": S.B_DRONE, "funk": S.B_FUNK, "reggae": S.B_REGGAE, "bossa": S.B_BOSSA,
                "dembow": S.B_DEMBOW, "boogie": S.B_BOOGIE_44, "808": S.B_808},
        "3/4": {"root": S.B_34, "root_fifth": S.B_34_OOMPAH, "walking": S.B_34_WALK,
                "octave": r((0, 4, "R"), (4, 4, "8"), (8, 4, "R")),
                "eighths": tuple((float(s), 2.0, "R") for s in range(0, 12, 2))},
        "6/8": {"root": r((0, 12, "R")), "root_fifth": S.B_68, "octave": r((0, 5, "R"), (6, 5, "8")),
                "eighths": tuple((float(s), 2.0, "R") for s in range(0, 12, 2))},
        "12/8": {"root": r((0, 12, "R"), (12, 12, "R")), "root_fifth": S.B_128, "boogie": S.B_128_BOOGIE,
                 "octave": r((0, 5, "R"), (6, 5, "8"), (12, 5, "R"), (18, 5, "8")), "eighths": S.B_128_METAL},
    }


def _chord_table() -> dict[str, dict[str, S.ChordPattern]]:
    return {
        "4/4": {"sustain": S.C_SUSTAIN, "halves": S.C_HALVES, "quarters": S.C_QUARTERS, "stabs": S.C_STABS,
                "eighths": S.C_POWER, "charleston": S.C_CHARLESTON, "funk": S.C_FUNK, "skank": S.C_SKANK,
                "bossa": S.C_BOSSA, "afro": S.C_AFRO, "dembow": S.C_DEMBOW, "country": S.C_COUNTRY,
                "gospel": S.C_GOSPEL},
        "3/4": {"sustain": S.C_34, "waltz": S.C_34_WALTZ, "quarters": ((0, 4), (4, 4), (8, 4))},
        "6/8": {"sustain": ((0, 12),), "halves": S.C_68, "eighths": S.C_68_ARP},
        "12/8": {"sustain": ((0, 24),), "halves": ((0, 12), (12, 12)), "beats": S.C_128,
                 "triplets": S.C_128_TRIPLETS},
    }


def _drum_table() -> dict[str, dict[str, S.Groove]]:
    out: dict[str, dict[str, S.Groove]] = {m: {} for m in S.METERS}
    for name, style in S.STYLES.items():
        for meter, groove in style.grooves.items():
            out[meter].setdefault(name.replace(" ", "_").replace("&", "and"), groove)
    return out


BASS_PATTERNS = _bass_table()
CHORD_PATTERNS = _chord_table()
DRUM_PATTERNS = _drum_table()
ARP_SHAPES = ("up", "down", "updown", "pendulum")


def patterns_for(role: str, meter: str) -> list[str]:
    """The pattern names ``role`` knows in ``meter`` (empty: this role has no named patterns)."""
    meter = meter if meter in S.METERS else "4/4"
    if role == "bass":
        return list(BASS_PATTERNS[meter])
    if role == "chords":
        return list(CHORD_PATTERNS[meter])
    if role == "drums":
        return list(DRUM_PATTERNS[meter])
    if role == "arpeggio":
        return list(ARP_SHAPES)
    return []


def _norm_pattern(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower()).replace("&", "and")


# -- free text --------------------------------------------------------------------------------------------
# (regex, field, value, value when negated or None). Order matters: specific phrases first; a match is
# blanked out of the clause before the next rule runs.
_W = r"(?:it|this|that|the part|the stem|the notes)"
_RULES: list[tuple[str, str, Any, Any]] = [
    # dynamics (before octave and register: "lower the volume" is about loudness)
    (r"\b(pianissimo)\b", "dynamic", "pp", None),
    (r"\b(fortissimo)\b", "dynamic", "ff", None),
    (r"\b(?:lower|turn down|reduce|decrease|drop|bring down)(?: " + _W + r")?(?: the)? (?:volume|level|dynamics|velocity)\b"
     r"|\b(?:volume|level) (?:down|lower)\b|\bturn (?:it )?down\b", "velocity", -14, None),
    (r"\b(?:raise|turn up|increase|boost|bring up)(?: " + _W + r")?(?: the)? (?:volume|level|dynamics|velocity)\b"
     r"|\b(?:volume|level) (?:up|higher)\b|\bturn (?:it )?up\b", "velocity", 14, None),
    (r"\b(?:quieter|softer|gentler|more subtle|in the background|more delicate)\b", "velocity", -14, 14),
    (r"\b(?:louder|stronger|more prominent|up front|harder|more forceful)\b", "velocity", 14, -14),
    (r"\bloud\b", "velocity", 14, -14),
    (r"\b(?:quiet|soft)\b", "velocity", -14, 14),
    # octaves
    (r"\btwo octaves (?:lower|down|below)\b|\bdown two octaves\b", "octave", -2, None),
    (r"\btwo octaves (?:higher|up|above)\b|\bup two octaves\b", "octave", 2, None),
    (r"\b(?:an |one |1 )?(?:octave|8va|8vb) (?:lower|down|below)\b|\bdown an octave\b|\bdrop (?:it )?an octave\b",
     "octave", -1, None),
    (r"\b(?:an |one |1 )?(?:octave|8va) (?:higher|up|above)\b|\bup an octave\b|\braise (?:it )?an octave\b",
     "octave", 1, None),
    # register
    (r"\b(?:low|lower|bottom|deep|deeper) (?:register|range|end)\b|\bdown low\b|\blow and deep\b", "register", "low",
     None),
    (r"\b(?:high|higher|upper|top) (?:register|range|end)\b|\bup high\b", "register", "high", None),
    (r"\b(?:mid|middle|mid-range|midrange) (?:register|range)\b", "register", "mid", None),
    # bare pitch words, once volume and register phrases are gone: "make it lower" is an octave down
    (r"\b(?:lower|lower pitched)\b", "octave", -1, None),
    (r"\b(?:higher|higher pitched)\b", "octave", 1, None),
    # feel
    (r"\bhalf[- ]?time\b", "feel", "half-time", "straight"),
    (r"\bdouble[- ]?time\b", "feel", "double-time", "straight"),
    (r"\bshuffle\w*\b", "feel", "shuffle", "straight"),
    (r"\bstraighten\w*(?: (?:it|this|that))?(?: out)?\b|\bstraight(?:er)?\b|\bno swing\b|\bunswung\b",
     "feel", "straight", None),
    (r"\bswing\w*\b|\bswung\b", "feel", "swing", "straight"),
    # articulation
    (r"\b(?:legato|smoother|smooth|connected|tied|longer notes|more sustained|sustained)\b",
     "articulation", "legato", "staccato"),
    (r"\b(?:staccato|choppier|choppy|chopped|shorter notes|detached|clipped|plucky|punchier)\b",
     "articulation", "staccato", "legato"),
    # humanize
    (r"\b(?:more human|humani[sz]e\w*|looser|loose|less robotic|less mechanical|sloppier|more natural|played)\b",
     "humanize", 0.6, 0.0),
    (r"\b(?:tighter|tight|quantized?|on the grid|robotic|mechanical)\b", "humanize", 0.0, 0.6),
    # density
    (r"\b(?:busier|busy|more notes|denser|dense|more active|fuller|more complex)\b", "density", "busier", "sparser"),
    (r"\b(?:sparser|sparse|simpler|simple|fewer notes|thinner|minimal|less active|emptier)\b",
     "density", "sparser", "busier"),
    # rhythm variant
    (r"\b(?:different|new|another|change the) (?:rhythm|groove|pattern)\b", "variant", 1, None),
]
_PATTERN_RULES: list[tuple[str, str]] = [  # (regex, pattern): only when the stem's role knows the pattern
    (r"\bwalking\b|\bwalk\b", "walking"),
    (r"\broot[- ](?:and[- ])?fifths?\b|\broot[- ]five\b", "root_fifth"),
    (r"\boctave (?:bass|pattern|jumps)\b|\boctaves\b", "octave"),
    (r"\boff[- ]?beats?\b", "offbeat"),
    (r"\b(?:just|only|plain|play the) roots?\b|\broot notes\b", "root"),
    (r"\bfour on the floor\b", "house"),
    (r"\barpeggiat\w* up\b|\bupward\b|\bascending\b", "up"),
    (r"\barpeggiat\w* down\b|\bdownward\b|\bdescending\b", "down"),
]
_NEG = re.compile(r"\b(?:not|no|don'?t|do not|never|less|without|stop|nothing)\b(?:\s+\w+){0,2}\s*$")
_SOFTEN = {"density": {"less busy": "sparser", "less sparse": "busier"}}
_SPLIT = re.compile(r"\s*(?:[,;.!]|\band\b|\bbut\b|\bthen\b|&)\s*", re.IGNORECASE)
_FILLER = re.compile(r"\b(?:please|make|it|this|that|the|a|an|bit|little|lot|much|more|so|too|very|can|you|"
                     r"could|would|should|just|play|sound|give|me|some|part|stem|drums?|bass|lead|chords?|"
                     r"pad|melody|keys|with|on|in|of|to|be|let's|lets|go|way|feel|i|want|take|bring|put|move|keep|now|up|"
                     r"down|again|instead|here)\b")


def _blank(text: str, m: re.Match[str]) -> str:
    return text[:m.start()] + " " * (m.end() - m.start()) + text[m.end():]


_NOT_PATTERN_ALIASES = {"swing", "minimal", "groove", "dance", "electronic", "acoustic"}


def _named_phrases(role: str, meter: str) -> list[tuple[str, str]]:
    """(phrase, pattern) for the role's named patterns, longest first; drums also by a style's aliases."""
    out = [(n.replace("_", " "), n) for n in patterns_for(role, meter)]
    if role == "drums":
        known = set(DRUM_PATTERNS[meter if meter in S.METERS else "4/4"])
        for name, style in S.STYLES.items():
            key = name.replace(" ", "_").replace("&", "and")
            if key in known:
                out += [(a.lower(), key) for a in style.aliases
                        if a.lower() not in _NOT_PATTERN_ALIASES and " and " not in a]
    return sorted(out, key=lambda x: len(x[0]), reverse=True)


def parse_text(text: str | None, role: str, meter: str) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """Free text -> ([{field, value, words}], [{text, reason}]) in the order said; later clauses do not
    overwrite earlier ones on the same field (the clash is reported)."""
    found: list[dict[str, Any]] = []
    ignored: list[dict[str, str]] = []
    seen: dict[str, str] = {}
    known = patterns_for(role, meter)
    text = re.sub(r"\broot and fifths?\b", "root-fifth", text or "", flags=re.IGNORECASE)
    text = re.sub(r"\bdrum and bass\b", "drum_and_bass", text, flags=re.IGNORECASE)
    for clause in (c.strip() for c in _SPLIT.split(text)):
        if not clause:
            continue
        low = " " + clause.lower() + " "
        hits: list[dict[str, Any]] = []
        rule_names = {p for _, p in _PATTERN_RULES}
        for phrase, name in _named_phrases(role, meter):
            if name in rule_names:
                continue
            m = re.search(rf"\b{re.escape(phrase).replace(chr(92) + chr(32), '[ _-]')}(?: (?:bass|line|groove|beat|pattern|rhythm|drums|comping|chords))\b",
                          low)
            if m:
                hits.append({"field": "pattern", "value": name, "words": m.group(0).strip()})
                low = _blank(low, m)
        for rx, fld, value, negated in _RULES:
            m = re.search(rx, low)
            if not m:
                continue
            neg = _NEG.search(low[:m.start()])
            words = (low[neg.start():m.end()] if neg else m.group(0)).strip()
            if neg:
                if negated is None:
                    ignored.append({"text": words, "reason": "a negated change with no clear opposite"})
                    low = _blank(low, m)
                    continue
                value = negated
                low = low[:neg.start()] + " " * (m.end() - neg.start()) + low[m.end():]
            else:
                low = _blank(low, m)
            hits.append({"field": fld, "value": value, "words": words})
        for rx, name in _PATTERN_RULES:
            m = re.search(rx, low)
            if m:
                if name in known:
                    hits.append({"field": "pattern", "value": name, "words": m.group(0).strip()})
                else:
                    ignored.append({"text": m.group(0).strip(), "reason": (
                        f"pattern {name!r} is not one the {role} role knows in {meter}; allowed: "
                        + (", ".join(known) or "none (this role has no named patterns)"))})
                low = _blank(low, m)
        left = _FILLER.sub(" ", re.sub(r"[^a-z0-9' ]", " ", low)).split()
        if not hits:
            ignored.append({"text": clause, "reason": (
                "not a change the composer knows (dynamics, octave, register, density, swing/shuffle/half-time/"
                "double-time, legato/staccato, humanize, a named pattern, a different rhythm)")})
            continue
        if left:
            ignored.append({"text": " ".join(left), "reason": f"words in {clause!r} that were not understood"})
        for h in hits:
            key = "dynamics" if h["field"] in ("velocity", "dynamic") else h["field"]
            if key in seen:
                ignored.append({"text": h["words"], "reason": f"conflicts with an earlier part of the instruction "
                                                              f"({seen[key]!r})"})
                continue
            seen[key] = h["words"]
            found.append({**h, "clause": clause})
    return found, ignored


# -- merge: changes + text -> composer options --------------------------------------------------------------
def resolve(changes: StemChanges | dict[str, Any] | None, text: str | None, role: str, meter: str,
            ) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """(requested changes keyed by field, applied, ignored).

    Raises ``ControlError`` naming ``changes.pattern`` when an explicit pattern is not one the role knows.
    """
    if isinstance(changes, dict):
        changes = StemChanges(**changes)
    given = changes.given() if changes else {}
    text_found, ignored = parse_text(text, role, meter)
    ignored = [dict(i) for i in ignored]
    req: dict[str, tuple[Any, str]] = {}
    for fld, value in given.items():
        req[fld] = (value, "changes")
    for h in text_found:
        fld = "velocity" if h["field"] == "dynamic" else h["field"]
        if fld in req and req[fld][1] == "changes":
            ignored.append({"text": h["words"], "field": fld, "reason": (
                f"changes.{fld}={req[fld][0]!r} was given explicitly and overrides the text")})
            continue
        if fld == "variant":
            req["variant"] = (1, f"text: {h['words']}")
            continue
        req[fld] = (h["value"], f"text: {h['words']}")
    if "pattern" in req and req["pattern"][1] == "changes":
        allowed = patterns_for(role, meter)
        name = _norm_pattern(req["pattern"][0])
        if name not in allowed:
            raise ControlError("changes.pattern", (
                f"{req['pattern'][0]!r} is not a pattern the {role} role knows in {meter}; allowed: "
                + (", ".join(allowed) or "none (this role has no named patterns)")))
        req["pattern"] = (name, "changes")
    applied: list[dict[str, Any]] = []
    compound = S.beat_steps(meter if meter in S.METERS else "4/4") == 6
    for fld, (value, source) in req.items():
        why = None
        if role in UNPITCHED and fld in ("octave", "register", "articulation"):
            why = f"{fld} has no meaning for the unpitched {role} stem"
        elif role == "percussion" and fld == "pattern":
            why = "the percussion role has no named patterns"
        elif compound and (fld == "swing" or (fld == "feel" and value in ("swing", "shuffle"))):
            why = f"{meter} already divides the beat in three; there is nothing to swing"
        if why:
            ignored.append({"field": fld, "value": value, "from": source, "reason": why})
        else:
            applied.append({"change": fld, "value": value, "from": source})
    return {a["change"]: a["value"] for a in applied}, applied, ignored


def to_options(old: dict[str, Any], req: dict[str, Any], role: str) -> dict[str, Any]:
    """New composer options for a stem from its old ones and the applied changes (relative fields add up)."""
    opts = {k: v for k, v in old.items() if k != "seed"}
    if "density" in req:
        d = req["density"]
        mult = DENSITY_WORDS[d] if isinstance(d, str) else float(d)
        opts["density"] = round(max(0.25, min(2.5, float(opts.get("density", 1.0)) * mult)), 4)
    if "octave" in req:
        opts["octave"] = max(-2, min(2, int(opts.get("octave", 0)) + int(req["octave"])))
    if "velocity" in req:
        v = req["velocity"]
        if isinstance(v, str):
            opts["velocity_delta"] = DYNAMICS[v]
        else:
            opts["velocity_delta"] = max(-60, min(40, int(opts.get("velocity_delta", 0)) + int(v)))
            if abs(int(v)) >= 10:  # a musician's "louder" also moves the fader a little
                opts["volume_delta"] = max(-60, min(40, int(opts.get("volume_delta", 0)) + int(v)))
    if "feel" in req:
        f = req["feel"]
        if f in ("half-time", "double-time"):
            opts["time_feel"] = f
        else:
            opts.pop("time_feel", None)
            opts["swing"] = SWING_FOR_FEEL[f]
    if "swing" in req:
        opts["swing"] = float(req["swing"])
    for k in ("articulation", "pattern", "humanize"):
        if k in req:
            opts[k] = req[k]
    if opts.get("articulation") == "normal":
        opts.pop("articulation")
    if "register" in req:
        r = req["register"]
        opts["register"] = REGISTERS.get(role, REGISTERS["default"])[r] if isinstance(r, str) else int(r)
    if "variant" in req:
        opts["variant"] = int(opts.get("variant", 0)) + 1
    return opts


def describe_patterns() -> str:
    """One line per role for tool descriptions."""
    parts = []
    for role in ("bass", "chords", "arpeggio"):
        parts.append(f"{role}: " + ", ".join(patterns_for(role, "4/4")))
    parts.append("drums: the groove of a style in this meter, e.g. " + ", ".join(list(DRUM_PATTERNS["4/4"])[:10]))
    return "; ".join(parts)
