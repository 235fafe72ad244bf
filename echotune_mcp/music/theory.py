"""Pitch classes, key names and scales: the small amount of music theory everything else shares.

Kept separate so the parser (params), the composer, the MIDI writer and the key estimator agree
on one spelling of every key and one definition of "in the scale".
"""

from __future__ import annotations

import re
from typing import Any

_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}

MODES = ("major", "minor")
# Scale steps (semitones above the tonic). Minor is natural minor; the harmonic-minor leading tone
# is added by ``key_scale_pcs(..., leading_tone=True)`` because minor-key cadences use it.
SCALE_STEPS = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}

# Conventional spelling (the one with the fewest accidentals; mido accepts exactly these).
_MAJOR_SPELLING = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_SPELLING = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "G#", "A", "Bb", "B")

_KEY_RE = re.compile(
    r"^\s*([A-Ga-g])\s*(#|♯|b|♭|-?sharp|-?flat)?\s*(major|minor|maj|min|m|dur|moll)?\s*$", re.IGNORECASE)


def pitch_class_of(letter: str, accidental: str | None) -> int:
    """Pitch class of a note letter plus an optional accidental spelled any common way."""
    pc = _LETTER_PC[letter.upper()]
    acc = (accidental or "").lower().lstrip("-")
    if acc in ("#", "♯", "sharp"):
        pc += 1
    elif acc in ("b", "♭", "flat"):
        pc -= 1
    return pc % 12


def parse_key(text: str) -> tuple[int, str, str] | None:
    """'F# major', 'Bb minor', 'Am', 'c' → (tonic pitch class, mode, tonic as written); None if unparseable.

    A bare letter means major. The spelling the user wrote is kept for display ("A#" stays "A#").
    """
    m = _KEY_RE.match(text)
    if not m:
        return None
    letter, acc, mode_word = m.group(1), m.group(2), (m.group(3) or "")
    # "b" after a letter is a flat, but "Bb"/"bb" both mean B-flat; a lone "b" is the letter B.
    pc = pitch_class_of(letter, acc)
    mw = mode_word.lower()
    if mode_word == "M" or mw in ("major", "maj", "dur", ""):
        mode = "major"
    else:
        mode = "minor"
    written = letter.upper() + {"#": "#", "♯": "#", "sharp": "#", "b": "b", "♭": "b", "flat": "b"}.get(
        (acc or "").lower().lstrip("-"), "")
    return pc, mode, written


def key_display_name(tonic_pc: int, mode: str, written: str | None = None) -> str:
    """Human key name, e.g. 'A minor'; keeps the user's spelling when it names the same pitch class."""
    if written:
        parsed = parse_key(written)
        if parsed and parsed[0] == tonic_pc % 12:
            return f"{written} {mode}"
    return f"{conventional_tonic_name(tonic_pc, mode)} {mode}"


def conventional_tonic_name(tonic_pc: int, mode: str) -> str:
    """Tonic spelled as in the key signature with the fewest accidentals."""
    return (_MAJOR_SPELLING if mode == "major" else _MINOR_SPELLING)[tonic_pc % 12]


def midi_key_signature(tonic_pc: int, mode: str) -> str:
    """The key string mido's key_signature meta message accepts ('Bbm', 'F#', ...)."""
    name = conventional_tonic_name(tonic_pc, mode)
    return name + ("m" if mode == "minor" else "")


def key_scale_pcs(tonic_pc: int, mode: str, *, leading_tone: bool = False) -> frozenset[int]:
    """Pitch classes of the key's scale; with ``leading_tone`` a minor key also includes the raised 7th."""
    pcs = {(tonic_pc + s) % 12 for s in SCALE_STEPS[mode]}
    if leading_tone and mode == "minor":
        pcs.add((tonic_pc + 11) % 12)
    return frozenset(pcs)


def nearest_pitch_with_pc(pc: int, target: int) -> int:
    """The MIDI pitch with pitch class ``pc`` closest to ``target`` (ties go down)."""
    below = target - ((target - pc) % 12)
    above = below + 12
    return below if target - below <= above - target else above


# -- chords ---------------------------------------------------------------------------------------
def chord_pcs(tonic_pc: int, mode: str, degree: int, *, seventh: bool = False,
              raise_leading_tone: bool = False) -> tuple[int, ...]:
    """Diatonic chord on a scale degree as pitch classes (root first).

    ``raise_leading_tone`` turns the minor-key v into a major V (harmonic minor), which is what
    makes a minor-key cadence sound like one and what key finders listen for.
    """
    steps = SCALE_STEPS[mode]
    pcs = [(tonic_pc + steps[(degree + k) % 7]) % 12 for k in ((0, 2, 4, 6) if seventh else (0, 2, 4))]
    if raise_leading_tone and mode == "minor" and degree % 7 == 4:
        pcs[1] = (pcs[1] + 1) % 12  # the 3rd of V is the leading tone
    return tuple(pcs)


def voice_chord(pcs: tuple[int, ...], previous: tuple[int, ...] | None, center: int,
                low: int, high: int) -> tuple[int, ...]:
    """Close-position voicing of ``pcs`` in [low, high] that moves least from ``previous``.

    Smooth voice leading (common tones held, other voices moving by step) is what keeps chord
    changes from sounding like block jumps; without a previous chord the voicing nearest
    ``center`` is chosen. Deterministic: ties resolve to the lower voicing.
    """
    n = len(pcs)
    best: tuple[float, tuple[int, ...]] | None = None
    for inversion in range(n):
        order = pcs[inversion:] + pcs[:inversion]
        for base in range(low - 12, high + 1):
            if base % 12 != order[0]:
                continue
            voicing = [base]
            for pc in order[1:]:
                nxt = voicing[-1] + ((pc - voicing[-1]) % 12 or 12)
                voicing.append(nxt)
            if voicing[0] < low or voicing[-1] > high:
                continue
            v = tuple(voicing)
            mean = sum(v) / n
            if previous and len(previous) == n:
                cost = sum(abs(a - b) for a, b in zip(sorted(previous), v)) + 0.25 * abs(mean - center)
            elif previous:
                cost = abs(mean - sum(previous) / len(previous)) * n + 0.25 * abs(mean - center)
            else:
                cost = abs(mean - center)
            if best is None or cost < best[0]:
                best = (cost, v)
    if best is None:  # range too narrow for this chord: stack from the root near the center
        root = nearest_pitch_with_pc(pcs[0], center - 4)
        out = [root]
        for pc in pcs[1:]:
            out.append(out[-1] + ((pc - out[-1]) % 12 or 12))
        return tuple(out)
    return best[1]


# -- harmony: chords beyond the diatonic triad, and per-seed progressions ---------------------------------
_QUALITY = {"maj": (0, 4, 7), "min": (0, 3, 7), "dim": (0, 3, 6), "dom7": (0, 4, 7, 10), "maj7": (0, 4, 7, 11),
            "min7": (0, 3, 7, 10), "hdim7": (0, 3, 6, 10)}
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


class Chord(tuple):  # type: ignore[type-arg]
    """(degree, pitch classes root first, label, function): one bar's harmony.

    A tuple so code that reads ``chord[0]`` (degree) and ``chord[1]`` (pitch classes) keeps working.
    ``degree`` is the scale degree of the root (0-6) for diatonic and borrowed chords and the degree
    of the chord it resolves to for secondary dominants; ``label`` is a roman numeral ("V/ii", "bVII");
    ``function`` is "T", "PD", "D", "sec" or "bor".
    """

    def __new__(cls, degree: int, pcs: tuple[int, ...], label: str, function: str) -> Chord:
        return super().__new__(cls, (degree, tuple(pcs), label, function))

    @property
    def degree(self) -> int:
        return self[0]

    @property
    def pcs(self) -> tuple[int, ...]:
        return self[1]

    @property
    def label(self) -> str:
        return self[2]

    @property
    def function(self) -> str:
        return self[3]


def chord_on(root_pc: int, quality: str) -> tuple[int, ...]:
    """Pitch classes of a chord of ``quality`` (see _QUALITY) on ``root_pc``."""
    return tuple((root_pc + i) % 12 for i in _QUALITY[quality])


def _diatonic(tonic: int, mode: str, degree: int, seventh: bool, raise_lt: bool) -> Chord:
    pcs = chord_pcs(tonic, mode, degree, seventh=seventh, raise_leading_tone=raise_lt)
    third = (pcs[1] - pcs[0]) % 12
    fifth = (pcs[2] - pcs[0]) % 12
    label = _ROMAN[degree % 7] if third == 4 else _ROMAN[degree % 7].lower()
    if fifth == 6:
        label += "°"
    if mode == "minor" and degree % 7 in (2, 5, 6) and third == 4:
        label = "b" + label
    fn = "T" if degree % 7 in (0, 2, 5) else ("PD" if degree % 7 in (1, 3) else "D")
    return Chord(degree % 7, pcs, label + ("7" if seventh else ""), fn)


def _secondary(tonic: int, mode: str, target_degree: int, seventh: bool) -> Chord:
    target_root = (tonic + SCALE_STEPS[mode][target_degree % 7]) % 12
    pcs = chord_on((target_root + 7) % 12, "dom7" if seventh else "maj")
    target = _diatonic(tonic, mode, target_degree, False, False).label.lstrip("b").rstrip("°")
    return Chord(target_degree % 7, pcs, f"V{'7' if seventh else ''}/{target}", "sec")


def _borrowed(tonic: int, mode: str, degree: int, seventh: bool) -> Chord | None:
    """A chord from the parallel mode on ``degree`` (modal mixture), or None if it adds nothing."""
    if mode == "major":
        table = {3: (5, "min", "iv"), 5: (8, "maj", "bVI"), 6: (10, "maj", "bVII"), 2: (3, "maj", "bIII"),
                 1: (2, "hdim7", "ii°7")}
    else:
        table = {3: (5, "maj", "IV"), 1: (1, "maj", "bII"), 4: (7, "maj", "V")}
    if degree % 7 not in table:
        return None
    interval, quality, label = table[degree % 7]
    if seventh and quality in ("maj", "min"):
        quality = {"maj": "maj7", "min": "min7"}[quality]
        label += "7"
    return Chord(degree % 7, chord_on((tonic + interval) % 12, quality), label, "bor")


# Grammar of functional harmony: which degree may follow which (weights), by mode.
_NEXT = {
    0: {5: 3, 3: 3, 1: 2, 4: 2, 2: 1},       # I -> vi, IV, ii, V, iii
    1: {4: 5, 6: 1, 3: 1},                    # ii -> V (vii°, IV)
    2: {5: 3, 3: 2},                          # iii -> vi, IV
    3: {4: 4, 1: 2, 0: 2, 6: 1},              # IV -> V, ii, I (plagal), vii°
    4: {0: 5, 5: 2, 3: 1},                    # V -> I, vi (deceptive), IV (rock)
    5: {1: 3, 3: 3, 4: 1, 2: 1},              # vi -> ii, IV, V, iii
    6: {0: 4, 5: 1},                          # vii° -> I
}
# Loops (modal, non-cadential) and vamps, as degree sequences starting on the tonic.
_LOOPS = {
    "minor": ((0, 5, 2, 6), (0, 5, 3, 4), (0, 3, 5, 4), (0, 6, 5, 6), (0, 3, 0, 4), (0, 0, 5, 6), (0, 5, 6, 4),
              (0, 2, 6, 3), (0, 3, 6, 2)),
    "major": ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4), (0, 3, 5, 4), (0, 4, 3, 4), (0, 2, 3, 4), (0, 5, 1, 4)),
}
_VAMPS = {"minor": ((0, 3), (0, 6), (0, 5), (0, 0, 3, 3)), "major": ((0, 3), (0, 4), (0, 6), (0, 0, 3, 3))}
CADENCES = ("authentic", "half", "plagal", "deceptive")


def _weighted(rng: Any, table: dict[int, float] | list[tuple[Any, float]]) -> Any:
    items = list(table.items()) if isinstance(table, dict) else list(table)
    total = sum(w for _, w in items)
    x = rng.random() * total
    for value, w in items:
        x -= w
        if x <= 0:
            return value
    return items[-1][0]


def choose_cadence(rng: Any, weights: tuple[tuple[str, float], ...], *, conclusive: bool = False) -> str:
    """A cadence type by the style's weights; ``conclusive`` (a section's end) rules out the half cadence
    when the style has another."""
    table = [(c, w) for c, w in weights if not (conclusive and c == "half")] or list(weights)
    return str(_weighted(rng, table))


def phrase_progression(rng: Any, harmony: Any, tonic: int, mode: str, slots: int, cadence: str,
                       *, loop: tuple[int, ...] | None = None) -> list[Chord]:
    """Chords for one phrase of ``slots`` harmonic slots, ending in ``cadence``.

    Functional styles walk the tonic -> predominant -> dominant grammar from the tonic; loop and vamp
    styles repeat ``loop``; both then get the cadence written into the last one or two slots and, by
    the style's odds, secondary dominants (V/x before x) and chords borrowed from the parallel mode.
    """
    sev = bool(harmony.sevenths)
    hm = bool(harmony.harmonic_minor)
    if harmony.kind in ("loop", "vamp") and loop:
        degrees = [loop[i % len(loop)] for i in range(slots)]
    else:
        degrees = [0]
        for i in range(1, slots):
            cur = degrees[-1]
            nxt = dict(_NEXT[cur])
            if i == slots - 2:  # lead into the cadence: predominant before V, tonic before IV (plagal)
                nxt = {k: w * (3 if k in (1, 3, 5) else 1) for k, w in nxt.items()}
            degrees.append(int(_weighted(rng, nxt)))
    if slots >= 2:
        if cadence == "authentic":
            degrees[-2:] = [4, 0]
        elif cadence == "half":
            degrees[-1] = 4
            if degrees[-2] == 4:
                degrees[-2] = 3 if mode == "major" else 5
        elif cadence == "plagal":
            degrees[-2:] = [3, 0]
        elif cadence == "deceptive":
            degrees[-2:] = [4, 5]
        elif cadence == "final":  # the piece's last phrase: predominant then V; the final tonic rings after it
            degrees[-2:] = [3 if rng.random() < 0.7 else 1, 4]
    elif slots == 1:
        degrees = [4 if cadence in ("half", "final") else 0]
    if slots >= 3 and degrees[-3] == degrees[-2] and cadence != "none":  # no chord repeated into the cadence
        degrees[-3] = rng.choice((1, 3) if degrees[-2] == 4 else (0, 5) if degrees[-2] == 3 else (3, 5))
    if slots >= 4 and degrees[-4] == degrees[-3] and degrees[-3] != 0:
        degrees[-4] = 0 if slots == 4 else rng.choice((0, 5))
    chords: list[Chord] = []
    for i, d in enumerate(degrees):
        at_cadence = i >= slots - 2
        raise_lt = hm or (at_cadence and d == 4) or (d == 4 and cadence in ("authentic", "deceptive"))
        chords.append(_diatonic(tonic, mode, d, sev and (d != 0 or harmony.kind in ("blues",)), raise_lt))
    # colour: never on the first slot (the phrase opens on the tonic) nor on the cadence's own chords
    free = range(1, max(1, slots - 2))
    for i in free:
        if rng.random() < harmony.secondary and i + 1 < slots and degrees[i + 1] in (1, 3, 4, 5):
            chords[i] = _secondary(tonic, mode, degrees[i + 1], sev)
        elif rng.random() < harmony.borrowed:
            b = _borrowed(tonic, mode, degrees[i], sev)
            if b is not None:
                chords[i] = b
    return chords


def pick_loop(rng: Any, kind: str, mode: str) -> tuple[int, ...]:
    """A loop (4 chords) or vamp (2 chords) shape for a loop-based style."""
    table = _VAMPS if kind == "vamp" else _LOOPS
    return tuple(rng.choice(table[mode]))


def blues_progression(rng: Any, tonic: int, mode: str, bars: int, start: int = 0) -> list[Chord]:
    """The 12-bar blues, dominant sevenths throughout, per seed with or without the quick change (IV in
    bar 2) and with a V or IV in bar 10; bar 12 is the turnaround V (a half cadence into the next chorus)."""
    quick = rng.random() < 0.5
    ten = 4 if rng.random() < 0.6 else 3
    form = [0, 3 if quick else 0, 0, 0, 3, 3, 0, 0, 4, ten, 0, 4]
    out: list[Chord] = []
    for b in range(start, start + bars):
        d = form[b % 12]
        root = (tonic + SCALE_STEPS["major"][d]) % 12
        quality = "dom7" if mode == "major" or d != 0 else "min7"
        if mode == "minor" and d == 3:
            quality = "min7"
        out.append(Chord(d, chord_on(root, quality), {0: "I7", 3: "IV7", 4: "V7"}[d] if quality == "dom7"
                         else {0: "i7", 3: "iv7"}[d], "D" if d == 4 else ("PD" if d == 3 else "T")))
    return out


def modulation_pivot(new_tonic: int, mode: str, seventh: bool = True) -> Chord:
    """The dominant of the new key, played in the bar before a key change."""
    return Chord(4, chord_on((new_tonic + 7) % 12, "dom7" if seventh else "maj"), "V7/new key", "D")
